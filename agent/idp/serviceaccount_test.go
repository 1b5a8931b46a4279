package idp_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenagent/tokenagent/agent/idp"
)

// TestJWTBearerGrant: a service-account key gets a token by the RFC 7523
// jwt-bearer grant from a server that verifies it (signature with the
// account's public key, iss, aud = token endpoint, iat, exp); the form
// carries the grant and nothing that authenticates a client.
func TestJWTBearerGrant(t *testing.T) {
	srv := newServer(t)
	const email = "agent@tokenagent-test.iam.gserviceaccount.com"
	sa, err := idp.ParseServiceAccountKey(srv.AddServiceAccount(email, "https://www.googleapis.com/auth/cloud-platform", "read"))
	if err != nil {
		t.Fatal(err)
	}
	if sa.ClientEmail != email || sa.TokenURI != srv.TokenURL || sa.PrivateKeyID != "idptest-sa-1" {
		t.Fatalf("ParseServiceAccountKey = %+v", sa)
	}
	resp, err := fetch(t, idp.Config{TokenURL: sa.TokenURI, ClientID: sa.ClientEmail, AuthMethod: idp.AuthJWTBearer, Signer: sa.Signer,
		Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"}})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	claims, err := srv.VerifyToken(resp.AccessToken)
	if err != nil || claims["sub"] != email || claims["scope"] != "https://www.googleapis.com/auth/cloud-platform" {
		t.Fatalf("token claims = %v (%v), want the account's token with its scope", claims, err)
	}
	form := srv.LastForm(email)
	if form.Get("grant_type") != idp.GrantJWTBearer || len(form) != 2 {
		t.Errorf("form = %v, want grant_type and assertion only", form)
	}
	var got jwt.MapClaims
	tok, _, err := jwt.NewParser().ParseUnverified(form.Get("assertion"), &got)
	if err != nil || tok.Header["alg"] != "RS256" || tok.Header["kid"] != "idptest-sa-1" {
		t.Fatalf("assertion header = %v (%v), want RS256 with the key's kid", tok.Header, err)
	}
	if got["iss"] != email || got["aud"] != srv.TokenURL || got["sub"] != nil || got["iat"] == nil || got["exp"] == nil {
		t.Errorf("assertion claims = %v, want iss the account, aud the token endpoint, iat, exp, no sub", got)
	}

	// A scope the account may not have: the server refuses the grant, and
	// the error never repeats the assertion.
	_, err = fetch(t, idp.Config{TokenURL: sa.TokenURI, ClientID: sa.ClientEmail, AuthMethod: idp.AuthJWTBearer, Signer: sa.Signer, Scopes: []string{"admin"}})
	var e *idp.Error
	if !errors.As(err, &e) || e.Code != "invalid_scope" {
		t.Errorf("Fetch with a scope beyond the account's = %v, want invalid_scope", err)
	}
	// Another audience than the token endpoint is refused by the server.
	other := idp.Config{TokenURL: sa.TokenURI + "?x=1", ClientID: sa.ClientEmail, AuthMethod: idp.AuthJWTBearer, Signer: sa.Signer}
	if _, err := fetch(t, other); !errors.As(err, &e) || e.Code != "invalid_grant" {
		t.Errorf("Fetch with aud not the token endpoint = %v, want invalid_grant", err)
	}
	for _, a := range srv.Issued() {
		if err != nil && strings.Contains(err.Error(), a) {
			t.Error("an error repeats an assertion or token")
		}
	}
}

// TestParseServiceAccountKeyErrors: what is missing is named; the key
// never appears in the error.
func TestParseServiceAccountKeyErrors(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"not json", `private_key=-----BEGIN`, "not a service-account JSON key"},
		{"user credentials", `{"type":"authorized_user","client_id":"x"}`, "not service_account"},
		{"no email", `{"type":"service_account","private_key":"k","token_uri":"https://t"}`, "client_email"},
		{"no key", `{"client_email":"a@b","token_uri":"https://t"}`, "private_key"},
		{"no token_uri", `{"client_email":"a@b","private_key":"k"}`, "token_uri"},
		{"bad key", `{"client_email":"a@b","private_key":"SECRETKEYTEXT","token_uri":"https://t"}`, "private_key:"},
	} {
		_, err := idp.ParseServiceAccountKey([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "SECRETKEYTEXT") {
			t.Errorf("%s: ParseServiceAccountKey = %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}
