// Package spec is the IdP client's vocabulary that configuration speaks
// too, without linking the HTTP client: the names of the client
// authentication methods and of the x5t headers, the form parameters the
// client sets itself, and which endpoint URLs it will send credentials to.
// Package idp and package config both use these; it imports no network
// package.
package spec

import (
	"fmt"

	"net/url"
	"strings"

	"github.com/tokenagent/tokenagent/ipc"
)

// Client authentication methods (RFC 8414 token_endpoint_auth_methods).
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
	// AuthJWTBearer is not a client authentication but the RFC 7523 §2.1
	// grant: a service-account key (Google's JSON key) signs an assertion
	// that is itself the grant.
	AuthJWTBearer = "jwt_bearer"
	// AuthClientAssertion is private_key_jwt's wire form with an
	// assertion the agent does not sign: a JWT a platform keeps fresh in
	// a file (Kubernetes projected service-account token, Entra's
	// AZURE_FEDERATED_TOKEN_FILE, GitHub Actions OIDC, SPIFFE JWT-SVID).
	AuthClientAssertion = "client_assertion"
)

// GrantJWTBearer is the RFC 7523 grant_type of AuthJWTBearer.
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// Thumbprint header choices for client assertions.
const (
	ThumbprintNone   = "none"
	ThumbprintSHA1   = "x5t"      // Entra ID's historical header
	ThumbprintSHA256 = "x5t#S256" // RFC 7515 §4.1.8
)

// ReservedParam reports whether name is a form parameter the client sets
// itself, which a profile's extra params may not set (the configuration's
// check and the client's use this one list).
func ReservedParam(name string) bool {
	switch name {
	case "grant_type", "client_id", "client_secret", "client_assertion", "client_assertion_type", "assertion", "scope", "audience", "resource":
		return true
	}
	return false
}

// IsLoopback reports whether host (without port) names the local machine,
// where plain http cannot be intercepted on the wire.
func IsLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	return IsLoopbackIP(strings.Trim(host, "[]"))
}

// IsLoopbackIP is ipc.IsLoopbackIP: the one loopback-address check.
func IsLoopbackIP(s string) bool { return ipc.IsLoopbackIP(s) }

// CheckEndpointURL accepts an absolute https URL, or http to a loopback host.
func CheckEndpointURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
	case u.Scheme == "http" && u.Host != "":
		if !IsLoopback(u.Hostname()) {
			return fmt.Errorf("%s uses http:// to a non-loopback host; the client credentials would cross the network in clear text (use https://)", u.Redacted())
		}
	default:
		return fmt.Errorf("%q is not an absolute https:// URL", raw)
	}
	if u.Fragment != "" {
		return fmt.Errorf("%s has a #fragment, which token endpoints do not take", u.Redacted())
	}
	return nil
}
