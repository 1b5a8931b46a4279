package store

import (
	"testing"
	"time"
)

// FuzzOpenRecord: the record decoder never panics, and anything it accepts
// was sealed by the key for that profile.
func FuzzOpenRecord(f *testing.F) {
	key, err := ParseKey([]byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="))
	if err != nil {
		f.Fatal(err)
	}
	good, _ := sealRecord(key, &Record{Profile: "p", Fingerprint: "fp", AccessToken: "t", ExpiresAt: time.Unix(1, 0)})
	f.Add("p", good)
	f.Add("p", good[:10])
	f.Add("q", good)
	f.Add("", []byte{1})
	f.Add("p", []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 255})
	f.Fuzz(func(t *testing.T, profile string, data []byte) {
		rec, err := openRecord(key, profile, data)
		if (rec == nil) == (err == nil) {
			t.Fatalf("open = %v, %v; want exactly one", rec, err)
		}
		if rec != nil && rec.Profile != profile {
			t.Fatalf("open returned a record for %q under %q", rec.Profile, profile)
		}
	})
}
