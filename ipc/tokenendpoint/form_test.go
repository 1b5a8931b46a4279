package tokenendpoint

import (
	"net/url"
	"slices"
	"testing"
)

// FuzzParseForm: parseForm reads a body as url.ParseQuery does: the same
// parameters, the same values in the same order, an error for the same
// inputs.
func FuzzParseForm(f *testing.F) {
	for _, s := range []string{"grant_type=client_credentials&client_id=a&client_secret=b",
		"scope=a+b&resource=x&resource=y", "a=%zz", "a;b=c", "&&=&a", "client_id=%E2%82%AC"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		want, werr := url.ParseQuery(body)
		got, gerr := parseForm(body)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("parseForm(%q) error %v; url.ParseQuery's %v", body, gerr, werr)
		}
		for k, vs := range want {
			if !slices.Equal(got.all(k), vs) {
				t.Errorf("parseForm(%q)[%q] = %q, want %q", body, k, got.all(k), vs)
			}
		}
		for _, p := range got {
			if _, ok := want[p.key]; !ok {
				t.Errorf("parseForm(%q) has %q, url.ParseQuery does not", body, p.key)
			}
		}
	})
}
