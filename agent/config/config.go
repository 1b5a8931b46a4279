// Package config is the agent's configuration: Config and its parts
// (ProfileConfig, Timing, FleetConfig, FileSink), strict TOML decoding with
// line numbers, validation, defaults, the Zeebe/Camunda environment and
// the default paths. It is pure data: it reads no secret, creates no file,
// stats nothing, looks up no user and touches no network; package
// secretref reads what the references point at, and the engine (package
// agent) resolves users, keys and host names at start-up. It is the only
// package that decodes TOML.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/tokenagent/tokenagent/agent/idp/spec"
)

// Config is the agent's configuration file (agent.toml). Every field's
// zero value means its default; agent.toml.example documents them all.
type Config struct {
	// LogLevel is debug, info, warn or error; default info.
	LogLevel string `toml:"log_level"`
	// LogFormat is json or console; default json when stderr is not a
	// terminal, console when it is.
	LogFormat string `toml:"log_format"`
	// AuditLog, if set, is the absolute path of a file that gets one JSON
	// line per token handed out (door, caller uid/gid/pid/exe, profile,
	// token fingerprint; never the token), created 0600 and reopened on
	// SIGHUP (after logrotate renames it); default off.
	AuditLog string `toml:"audit_log"`
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
	// agent's own user have MaxConnections of their own, which the
	// others cannot take.
	MaxConnectionsPerUID int `toml:"max_connections_per_uid"`
	// MemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT):
	// "64MiB" (the default), "1GiB", or "off". A GOMEMLIMIT in the
	// environment wins.
	MemoryLimit MemoryLimit `toml:"memory_limit"`
	// MetricsListen, if set, also serves /metrics over TCP at this
	// address (e.g. "127.0.0.1:9464"), without access control.
	MetricsListen string `toml:"metrics_listen"`
	// MetricsToken, if set, is a secret reference (file:, env:,
	// systemd-credential:) to a bearer token metrics_listen requires
	// (Authorization: Bearer TOKEN); without it a scrape gets 401. With
	// it, metrics_listen shows every series.
	MetricsToken string `toml:"metrics_token"`
	// MetricsProfiles, without metrics_token, lets metrics_listen show
	// the per-profile series (profile names and their use) to anyone who
	// can connect; default false: only series without profile names.
	MetricsProfiles bool `toml:"metrics_profiles"`
	// TokenEndpoint, if set, also serves a loopback OAuth 2.0 token
	// endpoint at this address (a loopback IP and port, such as
	// "127.0.0.1:8731" or "[::1]:8731"), for unmodified OAuth clients;
	// off by default.
	TokenEndpoint string `toml:"token_endpoint"`
	// TokenEndpointHTTPS, if set, also serves the token endpoint over TLS
	// at this loopback address (such as "127.0.0.1:8732"), with a
	// certificate of the agent's own local CA: for OAuth clients that
	// refuse http:// (MSAL, openid-client, oauth4webapi, oauthlib).
	TokenEndpointHTTPS string `toml:"token_endpoint_https"`
	// LocalCACert is where the agent publishes its local CA's certificate
	// for callers to trust (with ca-bundle.pem, the system's CAs and it,
	// and ca.p12, a Java trust store, beside it); default ca.pem beside
	// the socket, whose directory lets in exactly the socket's audience.
	// The CA's key, local-ca.key (0600), stays in the store's directory
	// and never leaves the host.
	LocalCACert string `toml:"local_ca_cert"`
	// AzureIdentityEndpoint, if set, serves Azure's managed-identity
	// protocols at this loopback address (such as "127.0.0.1:8733"): App
	// Service's (IDENTITY_ENDPOINT, with the agent's IDENTITY_HEADER
	// secret) and IMDS's (AZURE_POD_IDENTITY_AUTHORITY_HOST), for the
	// Azure SDKs unmodified. The secret, azure-identity-header (0600), is
	// made once in the store's directory. Off by default.
	AzureIdentityEndpoint string `toml:"azure_identity_endpoint"`
	// TokenEndpointUnidentified says what the token endpoint does with a
	// caller the kernel cannot identify (on Linux, a client in another
	// network namespace: a container reaching the endpoint through a
	// forwarded port). "refuse" (the default): 401 invalid_client, with
	// the reason in the log, since on one host that is a failure to
	// identify. "local_secret": such a caller may use a profile whose
	// local_secret it presents, and nothing else. Where the platform never
	// identifies TCP callers (macOS), "local_secret" is always the rule.
	TokenEndpointUnidentified string `toml:"token_endpoint_unidentified"`
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
	// Budgets maps an IdP client id to a budget of token requests for
	// every profile of that client together ([budgets], "5000/month");
	// see docs/budgets.md.
	Budgets map[string]string `toml:"budgets"`
	// Timing holds the defaults for every profile.
	Timing
	// Profiles maps a profile name to its settings.
	Profiles map[string]*ProfileConfig `toml:"profiles"`

	// path is the file the config came from ("" when built in memory).
	path string
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
	// client_secret_post, private_key_jwt (default with a key),
	// jwt_bearer (default with credentials): the RFC 7523 JWT-bearer
	// grant of a service-account key, or client_assertion (default with
	// client_assertion).
	Auth string `toml:"auth"`
	// ClientAssertion is file:PATH, a JWT the platform keeps fresh
	// (Kubernetes projected service-account token,
	// AZURE_FEDERATED_TOKEN_FILE, a GitHub Actions OIDC token, a SPIFFE
	// JWT-SVID), sent as the RFC 7523 client assertion of auth =
	// "client_assertion": the agent re-reads it when it changes (through
	// symlinks, as kubelet swaps them) and when it nears its exp. No
	// long-lived secret is stored.
	ClientAssertion string `toml:"client_assertion"`
	// Credentials is a reference (file:sa.json) to a service-account JSON
	// key as Google issues it, for auth = "jwt_bearer": its client_email
	// is the client (client_id may be left out) and its token_uri the
	// token endpoint unless token_url is set.
	Credentials string `toml:"credentials"`
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
	// namespace, with token_endpoint_unidentified = "local_secret") must
	// present as their client secret. It is not the IdP's secret, which
	// never leaves the agent. It must hold at least 128 bits of
	// randomness: 24 characters or more, 16 of them different (e.g.
	// `openssl rand -base64 32`); a weaker one is refused at load.
	LocalSecret string `toml:"local_secret"`
	// GCPMetadata, if set, serves this profile as the default service
	// account of a Google Compute Engine metadata server at this loopback
	// address ("127.0.0.1:PORT"; one profile per port), for
	// google-auth-library and the other Google SDKs (GCE_METADATA_HOST).
	GCPMetadata string `toml:"gcp_metadata"`
	// GCPProject is the project id the metadata server names
	// (/computeMetadata/v1/project/project-id).
	GCPProject string `toml:"gcp_project"`
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
	// Allow entries ([[profiles.NAME.allow]]) admit callers by selectors
	// that must all match: uid or user, gid or group, unit, cgroup, exe,
	// sha256. A caller may use the profile if any entry admits it, or the
	// allow_* lists above do (see docs/selectors.md).
	Allow []AllowEntry `toml:"allow"`
	// Fleet = false keeps this profile's tokens to this host when [fleet]
	// is configured (default: shared).
	Fleet *bool `toml:"fleet"`
	// Budget is the profile's budget of token requests to the IdP:
	// "1000/day", "50/hour", "20000/month" (calendar periods in UTC),
	// counted across the fleet when the profile is shared; "" (the
	// default) sets none. See docs/budgets.md.
	Budget string `toml:"budget"`
	// BudgetEnforce stops asking the IdP beyond this profile's budget, or
	// its client id's, while the token held is still valid (it is served
	// until it expires; without one the IdP is still asked). Default
	// false: budgets are counted, logged and shown, never enforced.
	BudgetEnforce bool `toml:"budget_enforce"`
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

// FleetHost is the name [fleet] host gives this agent in the fleet; ""
// when unset (the engine then uses the host name).
func (c *Config) FleetHost() string {
	if c.Fleet != nil {
		return c.Fleet.Host
	}
	return ""
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

// ParseConfig decodes and validates TOML; name is used in error messages and
// as the base for relative file: references (its directory). Secrets are
// not read: secretref.LoadConfig reads a file with its owner and mode
// checks, and the engine reads the secrets when it builds the profiles.
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
// file name (a forgotten "file:"), a fleet endpoint in plain http to
// another host. The secret itself is never repeated. (secretref.Warnings
// adds the literal secrets that name a file that exists.)
func (c *Config) Warnings() []string {
	var out []string
	for _, name := range c.ProfileNames() {
		if sec := c.Profiles[name].ClientSecret; sec != "" && !IsReference(sec) && LooksLikeFileName(sec) {
			out = append(out, LiteralFileWarning(name))
		}
	}
	out = append(out, c.budgetWarnings()...)
	if c.Fleet != nil {
		for _, e := range c.Fleet.Endpoints {
			u, err := url.Parse(e)
			if err != nil || u.Scheme != "http" {
				continue
			}
			if host := u.Hostname(); host != "localhost" && !spec.IsLoopbackIP(host) {
				out = append(out, fmt.Sprintf("[fleet] endpoint %s is plain http to another host: the records are sealed, but etcd's credentials and the lock traffic are not; use https with tls_ca (see docs/fleet.md)", e))
			}
		}
	}
	return out
}

// LooksLikeFileName reports whether a literal secret has a file name's
// extension and no blanks.
func LooksLikeFileName(sec string) bool {
	ext := strings.ToLower(filepath.Ext(sec))
	return !strings.ContainsAny(sec, " \t") && slices.Contains([]string{".secret", ".key", ".txt", ".pem", ".json", ".cred", ".token"}, ext)
}

// LiteralFileWarning is the warning for a profile whose client_secret is
// literal text that looks like, or names, a file.
func LiteralFileWarning(profile string) string {
	return fmt.Sprintf("profile %q: client_secret is literal text that looks like a file name; to read the secret from that file, write client_secret = \"file:...\"", profile)
}

// Path is the file the configuration came from.
func (c *Config) Path() string { return c.path }

// Dir is where relative file: references are resolved: the file's
// directory.
func (c *Config) Dir() string {
	if c.path == "" {
		return "."
	}
	return filepath.Dir(c.path)
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

// ProfileTiming is the effective timing of a profile: its own settings,
// then the top-level ones, then DefaultTiming().
func (c *Config) ProfileTiming(name string) Timing {
	p, ok := c.Profiles[name]
	if !ok {
		return c.Timing.timing(defaultTiming)
	}
	return p.Timing.timing(c.Timing)
}
