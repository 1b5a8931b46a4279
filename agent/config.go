package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/tokenagent/tokenagent/agent/idp"
	"github.com/tokenagent/tokenagent/ipc"
)

// Config is the agent's configuration file (agent.toml). Every field's
// zero value means its default; agent.toml.example documents them all.
type Config struct {
	// LogLevel is debug, info, warn or error; default info.
	LogLevel string `toml:"log_level"`
	// LogFormat is json or console; default json when stderr is not a
	// terminal, console when it is.
	LogFormat string `toml:"log_format"`
	// Socket is the Unix socket path; default /run/tokenagent/agent.sock
	// (root) or $XDG_RUNTIME_DIR/tokenagent/agent.sock. --socket and
	// $TOKENAGENT_SOCKET override it.
	Socket string `toml:"socket"`
	// SocketMode is the socket's permission bits in octal; default "0600",
	// or "0660" as root when socket_group exists. Callers' peer
	// credentials are checked whatever the mode.
	SocketMode string `toml:"socket_mode"`
	// SocketGroup is the socket's group; default "tokenagent" as root when
	// that group exists.
	SocketGroup string `toml:"socket_group"`
	// MaxConnections caps open socket connections; default 2048.
	MaxConnections int `toml:"max_connections"`
	// MaxConnectionsPerUID caps one uid's open socket connections, so
	// that no user can lock the others out; default 128. Root and the
	// agent's own user are never refused for capacity.
	MaxConnectionsPerUID int `toml:"max_connections_per_uid"`
	// MetricsListen, if set, also serves /metrics over TCP at this
	// address (e.g. "127.0.0.1:9464"), without access control.
	MetricsListen string `toml:"metrics_listen"`
	// TokenEndpoint, if set, also serves a loopback OAuth 2.0 token
	// endpoint at this address (a loopback IP and port, such as
	// "127.0.0.1:8731" or "[::1]:8731"), for unmodified OAuth clients;
	// off by default.
	TokenEndpoint string `toml:"token_endpoint"`
	// Store is the token database file, or "memory" to keep tokens in
	// memory only; default /var/lib/tokenagent/tokens.db (root) or
	// $XDG_STATE_HOME/tokenagent/tokens.db.
	Store string `toml:"store"`
	// StoreKey is a reference to the store's key (32 random bytes, base64);
	// default $CREDENTIALS_DIRECTORY/store-key if present, else store.key
	// beside this file, created on first start.
	StoreKey string `toml:"store_key"`
	// StoreKeyPrevious are references to older keys that may still open
	// records; those are re-sealed with the current key at start.
	StoreKeyPrevious []string `toml:"store_key_previous"`
	// StoreRequired refuses to start when the store cannot be opened. By
	// default a store on a read-only, full or failing disk leaves the
	// agent serving from memory (said in the log, status and /metrics)
	// while it keeps trying to open it.
	StoreRequired bool `toml:"store_required"`
	// Fleet shares tokens with the agents of other hosts through etcd
	// ([fleet]); nil keeps every token to this host.
	Fleet *FleetConfig `toml:"fleet"`
	// Timing holds the defaults for every profile.
	Timing
	// Profiles maps a profile name to its settings.
	Profiles map[string]*ProfileConfig `toml:"profiles"`

	// path is the file the config came from ("" when built in memory).
	path string
	// othersCanRead records whether users other than the owner can read
	// the file, which forbids literal secrets in it.
	othersCanRead bool
}

// Timing controls when tokens are fetched and how failures are retried. It
// is settable at top level (defaults for all profiles) and per profile.
type Timing struct {
	// RefreshAt is the fraction of a token's lifetime after which it is
	// refreshed in the background; default 0.75, jittered ±5 %.
	RefreshAt float64 `toml:"refresh_at"`
	// MinValid is the least remaining validity of any token handed out; a
	// refresh always starts at least this long before expiry. Default 30s.
	MinValid Duration `toml:"min_valid"`
	// IdleAfter stops background refresh of a profile nobody asked for in
	// this long; default 1h.
	IdleAfter Duration `toml:"idle_after"`
	// DefaultTTL is the lifetime assumed when the IdP states none and the
	// token is not a JWT with exp; default 5m.
	DefaultTTL Duration `toml:"default_ttl"`
	// MaxTTL caps any stated lifetime; default 24h.
	MaxTTL Duration `toml:"max_ttl"`
	// PermanentBackoff is how long a permanent IdP error (invalid_client,
	// invalid_scope, …) is returned without asking again; default 5m.
	PermanentBackoff Duration `toml:"permanent_backoff"`
	// MaxBackoff caps the wait between retries after transient errors and
	// the honoured Retry-After; default 5m.
	MaxBackoff Duration `toml:"max_backoff"`
	// FetchTimeout bounds one token request, discovery included; default 10s.
	FetchTimeout Duration `toml:"fetch_timeout"`
}

// DefaultTiming returns what an unset Timing field means (a fresh copy:
// the defaults cannot be changed from outside).
func DefaultTiming() Timing { return defaultTiming }

var defaultTiming = Timing{
	RefreshAt:        0.75,
	MinValid:         Duration{30 * time.Second},
	IdleAfter:        Duration{time.Hour},
	DefaultTTL:       Duration{5 * time.Minute},
	MaxTTL:           Duration{24 * time.Hour},
	PermanentBackoff: Duration{5 * time.Minute},
	MaxBackoff:       Duration{5 * time.Minute},
	FetchTimeout:     Duration{10 * time.Second},
}

// ProfileConfig is one [profiles.NAME] table.
type ProfileConfig struct {
	// TokenURL is the token endpoint; or set Issuer to discover it.
	TokenURL string `toml:"token_url"`
	// Issuer is used for OpenID Connect / RFC 8414 discovery.
	Issuer string `toml:"issuer"`
	// ClientID identifies the client at the IdP.
	ClientID string `toml:"client_id"`
	// ClientSecret is a secret reference: env:NAME, file:PATH or
	// systemd-credential:NAME (a literal is allowed only in a file no one
	// else can read).
	ClientSecret string `toml:"client_secret"`
	// Auth is client_secret_basic (default with a secret),
	// client_secret_post or private_key_jwt (default with a key).
	Auth string `toml:"auth"`
	// PrivateKey is a PEM key reference for private_key_jwt.
	PrivateKey string `toml:"private_key"`
	// Certificate is the key's PEM certificate, for x5t headers.
	Certificate string `toml:"certificate"`
	// PKCS12 is a PKCS#12 bundle reference holding key and certificate.
	PKCS12 string `toml:"pkcs12"`
	// PKCS12Password is a secret reference for the bundle's password.
	PKCS12Password string `toml:"pkcs12_password"`
	// AssertionAlg is RS256, PS256 or ES256; default from the key type.
	AssertionAlg string `toml:"assertion_alg"`
	// AssertionX5t is x5t, x5t#S256 or none (default none).
	AssertionX5t string `toml:"assertion_x5t"`
	// Scopes are requested as a space-separated scope.
	Scopes []string `toml:"scopes"`
	// Audience is sent as audience (Auth0, Camunda/Zeebe).
	Audience string `toml:"audience"`
	// Resource values are RFC 8707 resource indicators.
	Resource []string `toml:"resource"`
	// Params are extra form parameters.
	Params map[string]string `toml:"params"`
	// LocalSecret is a secret reference that callers of the loopback
	// token endpoint whom the kernel cannot identify (another network
	// namespace) must present as their client secret. It is not the IdP's
	// secret, which never leaves the agent.
	LocalSecret string `toml:"local_secret"`
	// Files are file sinks: files the agent keeps this profile's current
	// token in ([[profiles.NAME.files]]). A profile with a file sink is
	// never idle.
	Files []FileSink `toml:"files"`
	// AllowUIDs, AllowGIDs, AllowUsers and AllowGroups say who besides
	// root and the agent's own user may use this profile over the socket.
	// A caller matches by uid, or by primary or supplementary group.
	AllowUIDs   []uint32 `toml:"allow_uids"`
	AllowGIDs   []uint32 `toml:"allow_gids"`
	AllowUsers  []string `toml:"allow_users"`
	AllowGroups []string `toml:"allow_groups"`
	// Fleet = false keeps this profile's tokens to this host when [fleet]
	// is configured (default: shared).
	Fleet *bool `toml:"fleet"`
	// Timing overrides the top-level defaults for this profile.
	Timing
}

// FleetConfig is [fleet]: the etcd cluster the agents of many hosts share
// tokens through (see docs/fleet.md).
type FleetConfig struct {
	// Endpoints are etcd client URLs.
	Endpoints []string `toml:"endpoints"`
	// Prefix is the key prefix; default "/tokenagent/".
	Prefix string `toml:"prefix"`
	// SealKey is a secret reference to 32 random bytes, standard base64,
	// the same on every host: records in etcd are sealed with it.
	SealKey string `toml:"seal_key"`
	// TLSCA, TLSCert and TLSKey are references to PEM files for etcd's TLS.
	TLSCA   string `toml:"tls_ca"`
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// Timeout bounds each etcd operation; default 2s.
	Timeout Duration `toml:"timeout"`
	// Host names this agent in the records it writes and in status
	// ("minted by"); default the host name. Set it when one host runs
	// more than one agent.
	Host string `toml:"host"`
}

// FleetHost is the name this agent gives itself in the fleet: [fleet]
// host, else the host name.
func (c *Config) FleetHost() string {
	if c.Fleet != nil && c.Fleet.Host != "" {
		return c.Fleet.Host
	}
	h, _ := os.Hostname()
	return h
}

// LocalProfiles names the profiles that say fleet = false, sorted.
func (c *Config) LocalProfiles() []string {
	var out []string
	for _, name := range c.ProfileNames() {
		if p := c.Profiles[name]; p.Fleet != nil && !*p.Fleet {
			out = append(out, name)
		}
	}
	return out
}

// validate checks [fleet] as far as it can without reading secrets.
func (f *FleetConfig) validate(path string) []error {
	var errs []error
	if len(f.Endpoints) == 0 {
		errs = append(errs, fmt.Errorf("config %s: [fleet] endpoints: name the etcd client URLs (https://etcd-1:2379, …)", path))
	}
	for _, e := range f.Endpoints {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("config %s: [fleet] endpoints: %q is not an http(s) URL", path, e))
		}
	}
	if f.SealKey == "" || !isReference(f.SealKey) {
		errs = append(errs, fmt.Errorf("config %s: [fleet] seal_key: use file:PATH, env:NAME or systemd-credential:NAME (32 random bytes, base64, the same on every host), never the key itself", path))
	}
	if f.Prefix != "" && (!strings.HasPrefix(f.Prefix, "/") || !strings.HasSuffix(f.Prefix, "/")) {
		errs = append(errs, fmt.Errorf("config %s: [fleet] prefix %q: start and end it with /", path, f.Prefix))
	}
	if f.Timeout.Duration < 0 {
		errs = append(errs, fmt.Errorf("config %s: [fleet] timeout must not be negative", path))
	}
	if len(f.Host) > 255 || f.Host != ipc.SafeText(f.Host) {
		errs = append(errs, fmt.Errorf("config %s: [fleet] host: at most 255 printable characters", path))
	}
	return errs
}

// Duration is a time.Duration written as a Go duration string ("30s").
// Bare integers are refused: `min_valid = 30` would otherwise mean 30 ns.
type Duration struct{ time.Duration }

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (write it like \"30s\", \"5m\" or \"1h\")", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// LoadConfig reads and validates the configuration file at path. Secrets
// are not read yet: [New] resolves them.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := ParseConfig(data, path)
	if err != nil {
		return nil, err
	}
	if err := checkConfigOwner(path, fi); err != nil {
		return nil, err
	}
	cfg.othersCanRead = fi.Mode().Perm()&0o077 != 0
	if err := cfg.checkLiteralSecrets(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// ParseConfig decodes and validates TOML; name is used in error messages and
// as the base for relative file: references (its directory).
func ParseConfig(data []byte, name string) (*Config, error) {
	cfg := &Config{path: name}
	md, err := toml.Decode(string(data), cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			if pe.LastKey != "" {
				return nil, fmt.Errorf("config %s:%d: %s: %s", name, pe.Position.Line, pe.LastKey, pe.Message)
			}
			return nil, fmt.Errorf("config %s:%d: %s", name, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	var errs []error
	for _, key := range md.Undecoded() {
		errs = append(errs, unknownKeyError(data, name, key))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// CheckServes reports a configuration that would start an agent serving
// nothing: one without profiles. Start, reload and check-config refuse it.
func (c *Config) CheckServes() error {
	if len(c.Profiles) == 0 {
		return fmt.Errorf("config %s: no profiles: an agent without one serves nothing; add a [profiles.NAME] section (see agent.toml.example)", c.path)
	}
	return nil
}

// Warnings are things a configuration allows but that are probably
// mistakes, for check-config: a literal client_secret that looks like a
// file name (a forgotten "file:"). The secret itself is never repeated.
func (c *Config) Warnings() []string {
	var out []string
	for _, name := range c.ProfileNames() {
		sec := c.Profiles[name].ClientSecret
		if sec == "" || isReference(sec) {
			continue
		}
		ext := strings.ToLower(filepath.Ext(sec))
		_, statErr := os.Stat(filepath.Join(c.dir(), sec))
		if statErr == nil || !strings.ContainsAny(sec, " \t") && slices.Contains([]string{".secret", ".key", ".txt", ".pem", ".json", ".cred", ".token"}, ext) {
			out = append(out, fmt.Sprintf("profile %q: client_secret is literal text that looks like a file name; to read the secret from that file, write client_secret = \"file:...\"", name))
		}
	}
	if c.Fleet != nil {
		for _, e := range c.Fleet.Endpoints {
			u, err := url.Parse(e)
			if err != nil || u.Scheme != "http" {
				continue
			}
			if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
				out = append(out, fmt.Sprintf("[fleet] endpoint %s is plain http to another host: the records are sealed, but etcd's credentials and the lock traffic are not; use https with tls_ca (see docs/fleet.md)", e))
			}
		}
	}
	return out
}

// Path is the file the configuration came from.
func (c *Config) Path() string { return c.path }

// dir is where relative file: references are resolved.
func (c *Config) dir() string {
	if c.path == "" {
		return "."
	}
	return filepath.Dir(c.path)
}

func (c *Config) validate() error {
	var errs []error
	if c.Fleet != nil {
		errs = append(errs, c.Fleet.validate(c.path)...)
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("config %s: log_level %q: use debug, info, warn or error", c.path, c.LogLevel))
	}
	switch c.LogFormat {
	case "", "json", "console":
	default:
		errs = append(errs, fmt.Errorf("config %s: log_format %q: use json or console", c.path, c.LogFormat))
	}
	if err := c.Timing.validate(); err != nil {
		errs = append(errs, fmt.Errorf("config %s: %w", c.path, err))
	}
	if c.SocketMode != "" {
		if _, err := c.SocketFileMode(); err != nil {
			errs = append(errs, fmt.Errorf("config %s: socket_mode: %w", c.path, err))
		}
	}
	if c.TokenEndpoint != "" {
		if err := checkLoopbackAddress(c.TokenEndpoint); err != nil {
			errs = append(errs, fmt.Errorf("config %s: token_endpoint: %w", c.path, err))
		}
	}
	if c.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("config %s: max_connections must not be negative", c.path))
	}
	if c.MaxConnectionsPerUID < 0 {
		errs = append(errs, fmt.Errorf("config %s: max_connections_per_uid must not be negative", c.path))
	}
	if c.Store != "" && c.Store != StoreMemory && !filepath.IsAbs(c.Store) {
		errs = append(errs, fmt.Errorf("config %s: store %q: use an absolute path or \"memory\"", c.path, c.Store))
	}
	for _, ref := range append([]string{c.StoreKey}, c.StoreKeyPrevious...) {
		if ref != "" && !isReference(ref) {
			errs = append(errs, fmt.Errorf("config %s: store_key %s: use file:PATH, env:NAME or systemd-credential:NAME, never the key itself", c.path, refName(ref)))
		}
	}
	for _, name := range c.ProfileNames() {
		if err := c.validateProfile(name, c.Profiles[name]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ProfileNames lists the configured profiles, sorted.
func (c *Config) ProfileNames() []string {
	names := make([]string, 0, len(c.Profiles))
	for name := range c.Profiles {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func (c *Config) validateProfile(name string, p *ProfileConfig) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config %s: profile %q: %s: %s", c.path, name, key, fmt.Sprintf(format, args...)))
	}
	if !ipc.ValidProfileName(name) { // the socket protocol's rule: every profile is reachable
		bad("name", "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if p.ClientID == "" {
		bad("client_id", "missing; set the client (application) id registered at the IdP")
	}
	switch {
	case p.TokenURL == "" && p.Issuer == "":
		bad("token_url", "missing; set token_url, or issuer to discover it")
	case p.TokenURL != "" && p.Issuer != "":
		bad("issuer", "set either token_url or issuer, not both")
	case p.TokenURL != "":
		if err := idp.CheckEndpointURL(p.TokenURL); err != nil {
			bad("token_url", "%v", err)
		}
	default:
		if err := idp.CheckEndpointURL(p.Issuer); err != nil {
			bad("issuer", "%v", err)
		}
	}
	hasKey := p.PrivateKey != "" || p.PKCS12 != ""
	switch p.auth() {
	case idp.AuthClientSecretBasic, idp.AuthClientSecretPost:
		if p.ClientSecret == "" {
			bad("client_secret", "missing for auth = %q; set it to env:NAME, file:PATH or systemd-credential:NAME", p.auth())
		}
		if hasKey {
			bad("auth", "%q does not use private_key or pkcs12; set auth = \"private_key_jwt\"", p.auth())
		}
	case idp.AuthPrivateKeyJWT:
		switch {
		case !hasKey:
			bad("private_key", "private_key_jwt needs private_key (PEM) or pkcs12")
		case p.PrivateKey != "" && p.PKCS12 != "":
			bad("pkcs12", "set either private_key or pkcs12, not both")
		}
		if p.ClientSecret != "" {
			bad("client_secret", "not used with private_key_jwt; remove it")
		}
		switch p.AssertionAlg {
		case "", "RS256", "PS256", "ES256":
		default:
			bad("assertion_alg", "%q: use RS256, PS256 or ES256", p.AssertionAlg)
		}
		switch p.AssertionX5t {
		case "", idp.ThumbprintNone, idp.ThumbprintSHA1, idp.ThumbprintSHA256:
		default:
			bad("assertion_x5t", "%q: use x5t, x5t#S256 or none", p.AssertionX5t)
		}
		if p.AssertionX5t != "" && p.AssertionX5t != idp.ThumbprintNone && p.PrivateKey != "" && p.Certificate == "" {
			bad("certificate", "assertion_x5t = %q needs the certificate (or use pkcs12)", p.AssertionX5t)
		}
	default:
		bad("auth", "%q: use client_secret_basic, client_secret_post or private_key_jwt", p.Auth)
	}
	for _, r := range p.Resource {
		if err := checkResource(r); err != nil {
			bad("resource", "%v", err)
		}
	}
	for i, f := range p.Files {
		if err := f.validate(); err != nil {
			bad(fmt.Sprintf("files[%d]", i), "%v", err)
		}
	}
	for k := range p.Params {
		if idp.ReservedParam(k) {
			bad("params", "%q is set by the agent; use the dedicated key", k)
		}
	}
	if err := p.Timing.validate(); err != nil {
		bad("timing", "%v", err)
	}
	if err := p.timing(c.Timing).validateCombined(); err != nil {
		bad("timing", "%v", err)
	}
	return errors.Join(errs...)
}

// auth is the effective client authentication method.
func (p *ProfileConfig) auth() string {
	switch {
	case p.Auth != "":
		return p.Auth
	case p.PrivateKey != "" || p.PKCS12 != "":
		return idp.AuthPrivateKeyJWT
	default:
		return idp.AuthClientSecretBasic
	}
}

// checkResource applies RFC 8707 §2: an absolute URI without a fragment.
func checkResource(r string) error {
	if !strings.Contains(r, ":") || strings.Contains(r, "#") {
		return fmt.Errorf("%q must be an absolute URI without a fragment (RFC 8707)", r)
	}
	return nil
}

func (t Timing) validate() error {
	var errs []error
	if t.RefreshAt != 0 && (t.RefreshAt < 0.1 || t.RefreshAt > 0.95) {
		errs = append(errs, fmt.Errorf("refresh_at = %v: use a fraction between 0.1 and 0.95", t.RefreshAt))
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"min_valid", t.MinValid}, {"idle_after", t.IdleAfter}, {"default_ttl", t.DefaultTTL}, {"max_ttl", t.MaxTTL},
		{"permanent_backoff", t.PermanentBackoff}, {"max_backoff", t.MaxBackoff}, {"fetch_timeout", t.FetchTimeout},
	} {
		if d.v.Duration < 0 {
			errs = append(errs, fmt.Errorf("%s = %v: must not be negative", d.key, d.v))
		}
	}
	if t.FetchTimeout.Duration > 5*time.Minute {
		errs = append(errs, fmt.Errorf("fetch_timeout = %v: at most 5m", t.FetchTimeout))
	}
	return errors.Join(errs...)
}

// validateCombined checks a fully resolved Timing.
func (t Timing) validateCombined() error {
	if t.DefaultTTL.Duration > t.MaxTTL.Duration {
		return fmt.Errorf("default_ttl (%v) is longer than max_ttl (%v)", t.DefaultTTL, t.MaxTTL)
	}
	if t.MinValid.Duration >= t.MaxTTL.Duration {
		return fmt.Errorf("min_valid (%v) must be shorter than max_ttl (%v)", t.MinValid, t.MaxTTL)
	}
	return nil
}

// timing fills p's unset fields from defaults, then from defaultTiming.
func (t Timing) timing(defaults Timing) Timing {
	merged := t
	for _, src := range []Timing{defaults, defaultTiming} {
		if merged.RefreshAt == 0 {
			merged.RefreshAt = src.RefreshAt
		}
		fill := func(dst *Duration, v Duration) {
			if dst.Duration == 0 {
				*dst = v
			}
		}
		fill(&merged.MinValid, src.MinValid)
		fill(&merged.IdleAfter, src.IdleAfter)
		fill(&merged.DefaultTTL, src.DefaultTTL)
		fill(&merged.MaxTTL, src.MaxTTL)
		fill(&merged.PermanentBackoff, src.PermanentBackoff)
		fill(&merged.MaxBackoff, src.MaxBackoff)
		fill(&merged.FetchTimeout, src.FetchTimeout)
	}
	return merged
}

// checkLiteralSecrets refuses literal secrets in a file others can read.
func (c *Config) checkLiteralSecrets() error {
	if !c.othersCanRead {
		return nil
	}
	var errs []error
	for _, name := range c.ProfileNames() {
		p := c.Profiles[name]
		for key, v := range map[string]string{"client_secret": p.ClientSecret, "pkcs12_password": p.PKCS12Password, "local_secret": p.LocalSecret} {
			if v != "" && !isReference(v) {
				errs = append(errs, fmt.Errorf("config %s: profile %q: %s is a literal secret in a file that group or others can read; "+
					"use env:NAME, file:PATH or systemd-credential:NAME, or chmod 600 the file", c.path, name, key))
			}
		}
	}
	return errors.Join(errs...)
}

// unknownKeyError names an undecoded key and, when it can find it, its line.
func unknownKeyError(data []byte, name string, key toml.Key) error {
	where := name
	if line := keyLine(data, key); line > 0 {
		where = fmt.Sprintf("%s:%d", name, line)
	}
	leaf := key[len(key)-1]
	if len(key) == 1 {
		return fmt.Errorf("config %s: unknown key %q", where, leaf)
	}
	return fmt.Errorf("config %s: unknown key %q in [%s]", where, leaf, key[:len(key)-1].String())
}

// Compiled on first use: only a config with an unknown key needs them.
var (
	tableLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$`) })
	keyValue  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\s*([A-Za-z0-9_\-."' ]+?)\s*=`) })
)

// keyLine finds the line of a (possibly nested) key in a TOML document.
// BurntSushi/toml reports positions only for syntax errors, so strict
// decoding looks the key up itself. It returns 0 when not found.
func keyLine(data []byte, key toml.Key) int {
	want := key.String()
	var table []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := tableLine().FindStringSubmatch(line); m != nil {
			table = splitKey(m[1])
			if strings.Join(table, ".") == want {
				return n
			}
			continue
		}
		if m := keyValue().FindStringSubmatch(line); m != nil {
			full := append(slices.Clone(table), splitKey(m[1])...)
			if strings.Join(full, ".") == want {
				return n
			}
		}
	}
	return 0
}

func splitKey(s string) []string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return parts
}

// ProfileTiming is the effective timing of a profile: its own settings,
// then the top-level ones, then DefaultTiming().
func (c *Config) ProfileTiming(name string) Timing {
	p, ok := c.Profiles[name]
	if !ok {
		return c.Timing.timing(defaultTiming)
	}
	return p.Timing.timing(c.Timing)
}

// checkLoopbackAddress accepts "IP:PORT" where IP is a loopback address:
// the token endpoint must never be reachable from another host.
func checkLoopbackAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: use a loopback address and port such as \"127.0.0.1:8731\" or \"[::1]:8731\"", addr)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: only a loopback IP address (127.0.0.1, ::1) may serve tokens over TCP; names are refused, since they may resolve elsewhere", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}
