package localapi

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

func TestParseRoute(t *testing.T) {
	tests := []struct {
		method, path, query string
		want                Route
		wantErr             string
	}{
		{"GET", "/v1/tokens/zeebe", "", Route{Endpoint: EndpointToken, Profile: "zeebe"}, ""},
		{"HEAD", "/v1/tokens/zeebe", "", Route{Endpoint: EndpointToken, Profile: "zeebe"}, ""},
		{"GET", "/v1/tokens/zeebe", "min_valid=90s", Route{Endpoint: EndpointToken, Profile: "zeebe", MinValid: 90 * time.Second}, ""},
		{"GET", "/v1/tokens/zeebe", "min_valid=90", Route{Endpoint: EndpointToken, Profile: "zeebe", MinValid: 90 * time.Second}, ""},
		{"POST", "/v1/tokens/a.b-c_d/refresh", "", Route{Endpoint: EndpointRefresh, Profile: "a.b-c_d"}, ""},
		{"GET", "/v1/profiles", "", Route{Endpoint: EndpointProfiles}, ""},
		{"GET", "/v1/tokens/", "", Route{}, "profile names"},
		{"GET", "/v1/tokens/../etc", "", Route{}, "no endpoint"},
		{"GET", "/v1/tokens/x/y", "", Route{}, "no endpoint"},
		{"GET", "/v1/tokens/x", "min_valid=-5s", Route{}, "between"},
		{"GET", "/v1/tokens/x", "min_valid=48h", Route{}, "between"},
		{"GET", "/v1/tokens/x", "min_valid=%zz", Route{}, "malformed"},
		{"GET", "/v1/profiles", "min_valid=1s", Route{}, "unknown query"},
		{"DELETE", "/v1/tokens/x", "", Route{}, "use GET"},
		{"GET", "/v1/tokens/x/refresh", "", Route{}, "use POST"},
	}
	for _, tt := range tests {
		got, err := ParseRoute(tt.method, tt.path, tt.query)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRoute(%s %s?%s) = %+v, %v; want error mentioning %q", tt.method, tt.path, tt.query, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRoute(%s %s?%s) = %+v, %v; want %+v", tt.method, tt.path, tt.query, got, err, tt.want)
		}
	}
}

// FuzzParseRoute: any request line is routed or refused with a status,
// never a panic, and a routed profile name is always a valid one.
func FuzzParseRoute(f *testing.F) {
	f.Add("GET", "/v1/tokens/zeebe", "min_valid=30s")
	f.Add("POST", "/v1/tokens/x/refresh", "")
	f.Add("GET", "/v1/tokens/%00", "min_valid=1e9h")
	f.Add("GET", "/metrics", "a=b&a=c")
	f.Fuzz(func(t *testing.T, method, path, query string) {
		r, err := ParseRoute(method, path, query)
		if err != nil {
			re, ok := err.(*ipc.Error)
			if !ok || (re.Kind != ipc.ErrBadRequest && re.Kind != ipc.ErrNotFound) || ipc.StatusOf(re) < 400 || ipc.StatusOf(re) > 499 || re.WireCode() == "" {
				t.Fatalf("error %#v is not a 4xx route error", err)
			}
			return
		}
		if (r.Endpoint == EndpointToken || r.Endpoint == EndpointRefresh) && !ipc.ValidProfileName(r.Profile) {
			t.Fatalf("routed invalid profile name %q", r.Profile)
		}
		if r.MinValid < 0 || r.MinValid > ipc.MaxMinValid {
			t.Fatalf("min_valid %v out of range", r.MinValid)
		}
	})
}
