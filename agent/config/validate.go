package config

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/tokenagent/tokenagent/agent/idp/spec"
	"github.com/tokenagent/tokenagent/ipc"
)

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
	if c.AuditLog != "" && !filepath.IsAbs(c.AuditLog) {
		errs = append(errs, fmt.Errorf("config %s: audit_log %q: use an absolute path to a file (such as /var/log/tokenagent/audit.log)", c.path, c.AuditLog))
	}
	if err := c.Timing.validate(); err != nil {
		errs = append(errs, fmt.Errorf("config %s: %w", c.path, err))
	}
	if c.SocketMode != "" {
		if _, err := c.SocketFileMode(); err != nil {
			errs = append(errs, fmt.Errorf("config %s: socket_mode: %w", c.path, err))
		}
	}
	if c.MetricsToken != "" && !IsReference(c.MetricsToken) {
		errs = append(errs, fmt.Errorf("config %s: metrics_token: use file:PATH, env:NAME or systemd-credential:NAME, never the token itself", c.path))
	}
	if (c.MetricsToken != "" || c.MetricsProfiles) && c.MetricsListen == "" {
		errs = append(errs, fmt.Errorf("config %s: metrics_token and metrics_profiles apply to metrics_listen, which is not set", c.path))
	}
	if c.TokenEndpoint != "" {
		if err := CheckLoopbackAddress(c.TokenEndpoint); err != nil {
			errs = append(errs, fmt.Errorf("config %s: token_endpoint: %w", c.path, err))
		}
	}
	if c.TokenEndpointHTTPS != "" {
		if err := CheckLoopbackAddress(c.TokenEndpointHTTPS); err != nil {
			errs = append(errs, fmt.Errorf("config %s: token_endpoint_https: %w", c.path, err))
		}
		if c.TokenEndpointHTTPS == c.TokenEndpoint && !strings.HasSuffix(c.TokenEndpoint, ":0") { // port 0: each its own
			errs = append(errs, fmt.Errorf("config %s: token_endpoint_https and token_endpoint are both %s; give each a port of its own", c.path, c.TokenEndpoint))
		}
	}
	if c.AzureIdentityEndpoint != "" {
		if err := CheckLoopbackAddress(c.AzureIdentityEndpoint); err != nil {
			errs = append(errs, fmt.Errorf("config %s: azure_identity_endpoint: %w", c.path, err))
		}
		for _, other := range []string{c.TokenEndpoint, c.TokenEndpointHTTPS} {
			if c.AzureIdentityEndpoint == other && !strings.HasSuffix(other, ":0") {
				errs = append(errs, fmt.Errorf("config %s: azure_identity_endpoint and a token endpoint are both %s; give each a port of its own", c.path, other))
			}
		}
	}
	if c.LocalCACert != "" && c.TokenEndpointHTTPS == "" {
		errs = append(errs, fmt.Errorf("config %s: local_ca_cert applies to token_endpoint_https, which is not set", c.path))
	}
	switch c.TokenEndpointUnidentified {
	case "", UnidentifiedRefuse, UnidentifiedLocalSecret:
	default:
		errs = append(errs, fmt.Errorf("config %s: token_endpoint_unidentified %q: use %q (the default) or %q (callers from another network namespace, by local_secret)",
			c.path, c.TokenEndpointUnidentified, UnidentifiedRefuse, UnidentifiedLocalSecret))
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
		if ref != "" && !IsReference(ref) {
			errs = append(errs, fmt.Errorf("config %s: store_key %s: use file:PATH, env:NAME or systemd-credential:NAME, never the key itself", c.path, RefName(ref)))
		}
	}
	for _, name := range c.ProfileNames() {
		if err := c.validateProfile(name, c.Profiles[name]); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.validateGCPPorts()...)
	errs = append(errs, c.validateBudgets()...)
	return errors.Join(errs...)
}

// validateGCPPorts refuses two doors on one address: a gcp_metadata port
// serves one profile, and no other door.
func (c *Config) validateGCPPorts() []error {
	var errs []error
	taken := map[string]string{}
	for setting, addr := range map[string]string{"token_endpoint": c.TokenEndpoint, "token_endpoint_https": c.TokenEndpointHTTPS, "metrics_listen": c.MetricsListen} {
		taken[addr] = setting
	}
	for _, name := range c.ProfileNames() {
		addr := c.Profiles[name].GCPMetadata
		if addr == "" || strings.HasSuffix(addr, ":0") { // port 0: each its own
			continue
		}
		if other, ok := taken[addr]; ok {
			errs = append(errs, fmt.Errorf("config %s: profile %q: gcp_metadata %s is also %s; give each a port of its own", c.path, name, addr, other))
			continue
		}
		taken[addr] = fmt.Sprintf("profile %q's gcp_metadata", name)
	}
	return errs
}

func (c *Config) validateProfile(name string, p *ProfileConfig) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config %s: profile %q: %s: %s", c.path, name, key, fmt.Sprintf(format, args...)))
	}
	if !ipc.ValidProfileName(name) { // the socket protocol's rule: every profile is reachable
		bad("name", "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	bearer := p.AuthMethod() == spec.AuthJWTBearer // client and token URL may come from the key
	if p.ClientID == "" && !bearer {
		bad("client_id", "missing; set the client (application) id registered at the IdP")
	}
	switch {
	case p.TokenURL == "" && p.Issuer == "" && bearer:
	case p.TokenURL == "" && p.Issuer == "":
		bad("token_url", "missing; set token_url, or issuer to discover it")
	case p.TokenURL != "" && p.Issuer != "":
		bad("issuer", "set either token_url or issuer, not both")
	case p.TokenURL != "":
		if err := spec.CheckEndpointURL(p.TokenURL); err != nil {
			bad("token_url", "%v", err)
		}
	default:
		if err := spec.CheckEndpointURL(p.Issuer); err != nil {
			bad("issuer", "%v", err)
		}
	}
	hasKey := p.PrivateKey != "" || p.PKCS12 != ""
	switch p.AuthMethod() {
	case spec.AuthClientSecretBasic, spec.AuthClientSecretPost:
		if p.ClientSecret == "" {
			bad("client_secret", "missing for auth = %q; set it to env:NAME, file:PATH or systemd-credential:NAME", p.AuthMethod())
		}
		if hasKey {
			bad("auth", "%q does not use private_key or pkcs12; set auth = \"private_key_jwt\"", p.AuthMethod())
		}
	case spec.AuthPrivateKeyJWT:
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
		case "", spec.ThumbprintNone, spec.ThumbprintSHA1, spec.ThumbprintSHA256:
		default:
			bad("assertion_x5t", "%q: use x5t, x5t#S256 or none", p.AssertionX5t)
		}
		if p.AssertionX5t != "" && p.AssertionX5t != spec.ThumbprintNone && p.PrivateKey != "" && p.Certificate == "" {
			bad("certificate", "assertion_x5t = %q needs the certificate (or use pkcs12)", p.AssertionX5t)
		}
	case spec.AuthJWTBearer:
		switch {
		case p.Credentials == "":
			bad("credentials", `auth = "jwt_bearer" needs credentials = "file:sa.json", the service account's JSON key`)
		case !IsReference(p.Credentials):
			bad("credentials", "use file:PATH, env:NAME or systemd-credential:NAME, never the key itself")
		}
		for key, v := range map[string]string{"client_secret": p.ClientSecret, "private_key": p.PrivateKey, "pkcs12": p.PKCS12} {
			if v != "" {
				bad(key, "not used with jwt_bearer (the key is in credentials); remove it")
			}
		}
	case spec.AuthClientAssertion:
		switch {
		case p.ClientAssertion == "":
			bad("client_assertion", `auth = "client_assertion" needs client_assertion = "file:PATH", the file the platform keeps its token in`)
		case !strings.HasPrefix(p.ClientAssertion, RefFile):
			bad("client_assertion", "use file:PATH: the platform rotates the token in a file, and env: or systemd-credential: would hold one that expires")
		}
		for key, v := range map[string]string{"client_secret": p.ClientSecret, "private_key": p.PrivateKey, "pkcs12": p.PKCS12, "credentials": p.Credentials} {
			if v != "" {
				bad(key, "not used with client_assertion (the platform's token authenticates the client); remove it")
			}
		}
	default:
		bad("auth", "%q: use client_secret_basic, client_secret_post, private_key_jwt, jwt_bearer or client_assertion", p.Auth)
	}
	if p.Credentials != "" && !bearer {
		bad("credentials", `a service-account key is used with auth = "jwt_bearer"; remove auth = %q`, p.Auth)
	}
	if p.ClientAssertion != "" && p.AuthMethod() != spec.AuthClientAssertion {
		bad("client_assertion", `a platform's token is sent with auth = "client_assertion", not %s; keep one of them`, p.AuthMethod())
	}
	if p.GCPMetadata != "" {
		if err := CheckLoopbackAddress(p.GCPMetadata); err != nil {
			bad("gcp_metadata", "%v", err)
		}
	}
	if p.GCPProject != "" {
		if p.GCPMetadata == "" {
			bad("gcp_project", "applies to gcp_metadata, which is not set")
		}
		if !validProjectID(p.GCPProject) {
			bad("gcp_project", "%q: a Google Cloud project id is 6-30 lowercase letters, digits and hyphens", ipc.SafeText(p.GCPProject))
		}
	}
	for _, r := range p.Resource {
		if err := checkResource(r); err != nil {
			bad("resource", "%v", err)
		}
	}
	for i, a := range p.Allow {
		if err := a.validate(); err != nil {
			bad(fmt.Sprintf("allow[%d]", i), "%v", err)
		}
	}
	for i, f := range p.Files {
		if err := f.validate(); err != nil {
			bad(fmt.Sprintf("files[%d]", i), "%v", err)
		}
	}
	for k := range p.Params {
		if spec.ReservedParam(k) {
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

// AuthMethod is the effective client authentication method.
func (p *ProfileConfig) AuthMethod() string {
	switch {
	case p.Auth != "":
		return p.Auth
	case p.PrivateKey != "" || p.PKCS12 != "":
		return spec.AuthPrivateKeyJWT
	case p.Credentials != "":
		return spec.AuthJWTBearer
	case p.ClientAssertion != "":
		return spec.AuthClientAssertion
	default:
		return spec.AuthClientSecretBasic
	}
}

// validProjectID accepts a Google Cloud project id (6-30 characters:
// lowercase letters, digits, hyphens; the organisation-scoped
// "domain:id" form too).
func validProjectID(id string) bool {
	if len(id) < 6 || len(id) > 63 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == ':' || r == '.') {
			return false
		}
	}
	return true
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

// CheckLiteralSecrets refuses literal secrets in a file others can read
// (othersCanRead: what the loader learned from the file's mode).
func (c *Config) CheckLiteralSecrets(othersCanRead bool) error {
	if !othersCanRead {
		return nil
	}
	var errs []error
	for _, name := range c.ProfileNames() {
		p := c.Profiles[name]
		for key, v := range map[string]string{"client_secret": p.ClientSecret, "pkcs12_password": p.PKCS12Password, "local_secret": p.LocalSecret} {
			if v != "" && !IsReference(v) {
				errs = append(errs, fmt.Errorf("config %s: profile %q: %s is a literal secret in a file that group or others can read; "+
					"use env:NAME, file:PATH or systemd-credential:NAME, or chmod 600 the file", c.path, name, key))
			}
		}
	}
	return errors.Join(errs...)
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
	if f.SealKey == "" || !IsReference(f.SealKey) {
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
