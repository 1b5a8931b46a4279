package azureid

import (
	"encoding/json"
	"testing"
)

// TestAnswerIsJSON: the hand-appended answer is what encoding/json
// writes, byte for byte, escapes included.
func TestAnswerIsJSON(t *testing.T) {
	for _, a := range []answer{
		{AccessToken: "eyJ.a-b_c", ClientID: "c", ExpiresIn: 3599, ExpiresOn: 1767225600, Resource: "https://management.azure.com", TokenType: "Bearer"},
		{AccessToken: "x", ClientID: `c"<&>`, Resource: "api://\u2028x", TokenType: "Bearer"},
	} {
		want, _ := json.Marshal(a)
		if got := a.append(nil); string(got) != string(want) {
			t.Errorf("append = %s\nwant     %s", got, want)
		}
	}
}

// TestRoute: both paths, whatever their trailing or doubled slashes.
func TestRoute(t *testing.T) {
	for path, want := range map[string]string{
		"/msi/token": PathAppService, "/MSI/token/": PathAppService,
		"/metadata/identity/oauth2/token": PathIMDS, "/metadata/identity/oauth2/token/": PathIMDS, "//metadata/identity/oauth2/token": PathIMDS,
		"/": "", "/metadata/identity/oauth2": "", "/oauth2/token": "",
	} {
		if got, ok := route(path); got != want || ok != (want != "") {
			t.Errorf("route(%q) = %q, %v; want %q", path, got, ok, want)
		}
	}
}
