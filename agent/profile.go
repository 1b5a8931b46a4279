package agent

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/idp"
	"github.com/tokenagent/tokenagent/agent/secretref"
)

// profile is a validated profile with its secrets read and its IdP client built.
type profile struct {
	name   string
	timing config.Timing
	access access
	client *idp.Client
	// fingerprint identifies what the profile's tokens are for: endpoint,
	// client id, auth method, scopes, audience, resources, extra
	// parameters and the client_assertion file (never its content). A stored
	// token is only ever served to a profile with the same fingerprint.
	fingerprint string
	// settings hashes everything that makes up the profile, secrets and
	// keys included: equal settings after a reload mean "unchanged".
	settings [32]byte
	// What the token endpoint matches requests against.
	clientID string
	scopes   []string
	audience string
	resource []string
	// localSecret is the SHA-256 of local_secret; zero when unset.
	localSecret [32]byte
	// sinks are the files the current token is kept in.
	sinks []sink
	// fleetShared: the profile's tokens go through the fleet, when the
	// agent has one (fleet = false keeps them to this host).
	fleetShared bool
	// credential tags the client credential (secret or signing key) for
	// fleet failure records: a hash prefix, never the credential.
	credential string
}

// buildProfiles builds every profile of c, reading their secrets and
// keys; the error joins every profile's that cannot be built, so that one
// start or reload names them all.
func buildProfiles(c *config.Config, httpClient *http.Client, now func() time.Time) (map[string]*profile, error) {
	built := make(map[string]*profile, len(c.Profiles))
	var errs []error
	for _, name := range c.ProfileNames() {
		p, err := buildProfile(c, name, httpClient, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		built[name] = p
	}
	return built, errors.Join(errs...)
}

// buildProfile reads the profile's secrets and keys and makes its client.
// Errors name the profile and the key, never a secret.
func buildProfile(c *config.Config, name string, httpClient *http.Client, now func() time.Time) (*profile, error) {
	p := c.Profiles[name]
	fail := func(key, ref string, err error) error { return refError(name, key, ref, err) }
	cfg := idp.Config{
		TokenURL:   p.TokenURL,
		Issuer:     p.Issuer,
		ClientID:   p.ClientID,
		AuthMethod: p.AuthMethod(),
		Scopes:     p.Scopes,
		Audience:   p.Audience,
		Resource:   p.Resource,
		Params:     p.Params,
		HTTPClient: httpClient,
		Now:        now,
	}
	if p.ClientSecret != "" {
		secret, err := secretref.Read(p.ClientSecret, c.Dir(), secretref.SecretOrLiteral)
		if err != nil {
			return nil, fail("client_secret", config.RefName(p.ClientSecret), err)
		}
		cfg.ClientSecret = string(secretref.TrimNewline(secret))
	}
	if cfg.AuthMethod == idp.AuthPrivateKeyJWT {
		key, cert, err := loadKey(c, name, p)
		if err != nil {
			return nil, err
		}
		signer, err := idp.NewSigner(idp.SignerConfig{Key: key, Certificate: cert, Algorithm: p.AssertionAlg, Thumbprint: p.AssertionX5t})
		if err != nil {
			return nil, fmt.Errorf("profile %q: %w", name, err)
		}
		cfg.Signer = signer
	}
	if cfg.AuthMethod == idp.AuthJWTBearer {
		if err := useServiceAccount(c, name, p, &cfg); err != nil {
			return nil, err
		}
	}
	if cfg.AuthMethod == idp.AuthClientAssertion {
		file, err := secretref.NewRotatingFile(p.ClientAssertion, c.Dir())
		if err != nil {
			return nil, fail("client_assertion", p.ClientAssertion, err)
		}
		cfg.Assertion = file
	}
	client, err := idp.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("profile %q: %w", name, err)
	}
	// A platform's token is read before each request, not here: the
	// platform may write it after the agent starts. This read only lets
	// status show its expiry at once; check-config reports its errors.
	client.CheckAssertion()
	acc, err := resolveAccess(p)
	if err != nil {
		return nil, fmt.Errorf("config %s: profile %q: %w", c.Path(), name, err)
	}
	timing := c.ProfileTiming(name)
	settings := sha256.New()
	// A budget is not part of the profile's settings: a reload that
	// changes one leaves the profile, its token and its timer as they are
	// (the agent's meters apply it).
	unbudgeted := *p
	unbudgeted.Budget, unbudgeted.BudgetEnforce = "", false
	json.NewEncoder(settings).Encode(struct {
		P      *config.ProfileConfig
		T      config.Timing
		Secret string
		Access access
	}{&unbudgeted, timing, cfg.ClientSecret, acc})
	if cfg.Signer != nil {
		settings.Write([]byte(cfg.Signer.KeyID()))
	}
	var localSecret [32]byte
	if p.LocalSecret != "" {
		v, err := secretref.Read(p.LocalSecret, c.Dir(), secretref.SecretOrLiteral)
		if err != nil {
			return nil, fail("local_secret", config.RefName(p.LocalSecret), err)
		}
		v = secretref.TrimNewline(v)
		if err := config.CheckLocalSecret(name, v); err != nil {
			return nil, fmt.Errorf("config %s: %w", c.Path(), err)
		}
		localSecret = sha256.Sum256(v)
		settings.Write(localSecret[:])
	}
	var sinks []sink
	for i, f := range p.Files {
		sk, err := resolveSink(f)
		if err != nil {
			return nil, fmt.Errorf("config %s: profile %q: files[%d]: %w", c.Path(), name, i, err)
		}
		sinks = append(sinks, sk)
	}
	prof := &profile{
		sinks:    sinks,
		clientID: cfg.ClientID, scopes: slices.Clone(p.Scopes), audience: p.Audience, resource: slices.Clone(p.Resource),
		localSecret: localSecret,
		name:        name,
		timing:      timing,
		access:      acc,
		client:      client,
		fingerprint: fingerprint(p, cfg),
		fleetShared: p.Fleet == nil || *p.Fleet,
	}
	cred := sha256.New()
	fmt.Fprintf(cred, "tokenagent fleet credential\x00%s\x00%s", cfg.ClientSecret, p.ClientAssertion)
	if cfg.Signer != nil {
		cred.Write([]byte(cfg.Signer.KeyID()))
	}
	prof.credential = hex.EncodeToString(cred.Sum(nil)[:8])
	settings.Sum(prof.settings[:0])
	return prof, nil
}

// useServiceAccount reads the profile's service-account key
// (credentials) into cfg: the signer, the account as the client, and the
// key's token_uri unless token_url or issuer is set.
func useServiceAccount(c *config.Config, name string, p *config.ProfileConfig, cfg *idp.Config) error {
	data, err := secretref.Read(p.Credentials, c.Dir(), secretref.Secret)
	if err != nil {
		return refError(name, "credentials", p.Credentials, err)
	}
	sa, err := idp.ParseServiceAccountKey(data)
	if err != nil {
		return refError(name, "credentials", p.Credentials, err)
	}
	if p.ClientID != "" && p.ClientID != sa.ClientEmail {
		return fmt.Errorf("config %s: profile %q: client_id %q is not the key's client_email %q; remove client_id or use that account's key",
			c.Path(), name, p.ClientID, sa.ClientEmail)
	}
	if cfg.TokenURL == "" && cfg.Issuer == "" {
		if err := idp.CheckEndpointURL(sa.TokenURI); err != nil {
			return refError(name, "credentials", p.Credentials, fmt.Errorf("token_uri: %w", err))
		}
		cfg.TokenURL = sa.TokenURI
	}
	cfg.ClientID, cfg.Signer = sa.ClientEmail, sa.Signer
	return nil
}

func loadKey(c *config.Config, name string, p *config.ProfileConfig) (crypto.Signer, *x509.Certificate, error) {
	fail := func(key, ref string, err error) error { return refError(name, key, ref, err) }
	if p.PKCS12 != "" {
		data, err := secretref.Read(p.PKCS12, c.Dir(), secretref.Secret)
		if err != nil {
			return nil, nil, fail("pkcs12", p.PKCS12, err)
		}
		if strings.HasPrefix(p.PKCS12, config.RefEnv) {
			if data, err = secretref.DecodeBase64(data); err != nil {
				return nil, nil, fail("pkcs12", p.PKCS12, fmt.Errorf("an env: bundle must be base64: %w", err))
			}
		}
		var password []byte
		if p.PKCS12Password != "" {
			if password, err = secretref.Read(p.PKCS12Password, c.Dir(), secretref.SecretOrLiteral); err != nil {
				return nil, nil, fail("pkcs12_password", config.RefName(p.PKCS12Password), err)
			}
		}
		key, cert, err := idp.ParsePKCS12(data, string(secretref.TrimNewline(password)))
		if err != nil {
			return nil, nil, fail("pkcs12", p.PKCS12, err)
		}
		return key, cert, nil
	}
	data, err := secretref.Read(p.PrivateKey, c.Dir(), secretref.Secret)
	if err != nil {
		return nil, nil, fail("private_key", p.PrivateKey, err)
	}
	key, err := idp.ParsePEMKey(data)
	if err != nil {
		return nil, nil, fail("private_key", p.PrivateKey, err)
	}
	var cert *x509.Certificate
	if p.Certificate != "" {
		data, err := secretref.Read(p.Certificate, c.Dir(), secretref.Public)
		if err != nil {
			return nil, nil, fail("certificate", p.Certificate, err)
		}
		if cert, err = idp.ParsePEMCertificate(data); err != nil {
			return nil, nil, fail("certificate", p.Certificate, err)
		}
	}
	return key, cert, nil
}

// refError names the profile, the setting and its reference, unless the
// error already names the file.
func refError(profile, key, ref string, err error) error {
	if path, ok := strings.CutPrefix(ref, config.RefFile); ok && strings.Contains(err.Error(), path) {
		return fmt.Errorf("profile %q: %s: %w", profile, key, err)
	}
	return fmt.Errorf("profile %q: %s %s: %w", profile, key, ref, err)
}

// fingerprint hashes the settings that decide what a token grants: the
// configuration's (a client_assertion's file among them), with the client and token URL a service-account key
// supplies where the configuration leaves them out.
func fingerprint(p *config.ProfileConfig, cfg idp.Config) string {
	h := sha256.New()
	tokenURL, clientID := p.TokenURL, p.ClientID
	if p.Issuer == "" {
		tokenURL = cfg.TokenURL
	}
	if clientID == "" {
		clientID = cfg.ClientID
	}
	parts := []string{tokenURL, p.Issuer, clientID, p.AuthMethod(), strings.Join(p.Scopes, " "), p.Audience, strings.Join(p.Resource, " ")}
	for _, k := range slices.Sorted(maps.Keys(p.Params)) { // extra parameters change what is granted too
		parts = append(parts, k, p.Params[k])
	}
	if p.ClientAssertion != "" {
		// The file, not its content: a rotation is the same client.
		// (Only when set, so that other profiles' records keep theirs.)
		parts = append(parts, "client_assertion", p.ClientAssertion)
	}
	for _, part := range parts {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// CheckAssertions reads the platform's token of every profile with auth
// = "client_assertion" as a token request would, without sending it (for
// check-config); the error names each profile whose token could not be
// sent, and why.
func (a *Agent) CheckAssertions() error {
	var errs []error
	sources := *a.sources.Load()
	for _, name := range slices.Sorted(maps.Keys(sources)) {
		s := sources[name]
		if err := s.prof.client.CheckAssertion(); err != nil {
			errs = append(errs, fmt.Errorf("profile %q: %w", s.prof.name, err))
		}
	}
	return errors.Join(errs...)
}
