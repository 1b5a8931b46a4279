package secretref

import (
	"fmt"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/tokenagent/tokenagent/agent/config"
)

// Files lists the files cfg's file: references name (secrets, keys,
// certificates), resolved against the configuration's directory, each
// with the setting that names it, in order, without duplicates.
func Files(cfg *config.Config) [][2]string { // {setting, path}
	var refs [][2]string
	add := func(setting, ref string) { refs = append(refs, [2]string{setting, ref}) }
	add("store_key", cfg.StoreKey)
	for _, ref := range cfg.StoreKeyPrevious {
		add("store_key_previous", ref)
	}
	add("metrics_token", cfg.MetricsToken)
	if f := cfg.Fleet; f != nil {
		add("[fleet] seal_key", f.SealKey)
		add("[fleet] tls_ca", f.TLSCA)
		add("[fleet] tls_cert", f.TLSCert)
		add("[fleet] tls_key", f.TLSKey)
	}
	for _, name := range cfg.ProfileNames() {
		p := cfg.Profiles[name]
		for _, s := range [][2]string{{"client_secret", p.ClientSecret}, {"private_key", p.PrivateKey},
			{"certificate", p.Certificate}, {"pkcs12", p.PKCS12}, {"pkcs12_password", p.PKCS12Password}, {"local_secret", p.LocalSecret}, {"credentials", p.Credentials}, {"client_assertion", p.ClientAssertion}} {
			add("profile "+name+" "+s[0], s[1])
		}
	}
	var out [][2]string
	seen := map[string]bool{}
	for _, r := range refs {
		path, ok := strings.CutPrefix(r[1], config.RefFile)
		if !ok {
			continue
		}
		if !filepath.IsAbs(path) {
			path = filepath.Join(cfg.Dir(), path)
		}
		if !seen[path] {
			seen[path] = true
			out = append(out, [2]string{r[0], path})
		}
	}
	return out
}

// CheckReadableAs refuses the configuration file or a file: reference of
// cfg that u could not read:
// the service runs as u, and a secret only root can read passes when an
// operator checks the configuration as root. It judges by owners and
// modes (not ACLs), of the file and of every directory above it.
func CheckReadableAs(cfg *config.Config, u *user.User) error {
	groups, err := u.GroupIds()
	if err != nil {
		return fmt.Errorf("user %s: its groups: %w", u.Username, err)
	}
	if p := cfg.Path(); p != "" {
		if err := readableAs(p, u, groups); err != nil {
			return fmt.Errorf("config %s: %v; the service runs as user %s and could not read it: "+
				"chgrp %s %s && chmod 0640 %s (and g+x on the directories above it), or pass --as with the user the service really runs as",
				p, err, u.Username, primaryGroupName(u), p, p)
		}
	}
	for _, f := range Files(cfg) {
		if err := readableAs(f[1], u, groups); err != nil {
			return fmt.Errorf("config %s: %s file:%s: %v; the service runs as user %s and could not read it: "+
				"give that user read access (e.g. chgrp %s %s && chmod 0640 %s, and g+x on the directories above it), "+
				"or pass --as with the user the service really runs as",
				cfg.Path(), f[0], f[1], err, u.Username, primaryGroupName(u), f[1], f[1])
		}
	}
	return nil
}

func primaryGroupName(u *user.User) string {
	if g, err := user.LookupGroupId(u.Gid); err == nil {
		return g.Name
	}
	return u.Gid
}
