package fleet

import (
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

// goldenRecord was sealed by the fleet's own sealing code at 9ed0da6,
// before it moved to package seal: records in etcd written then must keep
// opening, and the key id pinned in etcd must not change.
const goldenRecord = "013eb1bd439947eb766064142e7d74a777ce20a6f6df8c37e8603c5ce3a30f7695515934852e9958e7c98066707131d3a5779b1e7647164c246c30a6b4c9d4e90c7ba583b639729d6e10fe51d105d0247b5a967d9f79cb2ed115be696c384037720adc09d63e5feee6490bb508ef3b4e8393dbead6fe55e86aea1edacd939e4d9b9f39b6730f05111d6bae2b4ccde3c1d599fe98f6e7ac2a73b48315269b3d6f2d29e2c0e426cc0b46c9c066a7f2fd234732ee06aa2ae8981303b6f1f664a1a3e990d0427ea2be49c57161"

func TestGoldenRecordOpens(t *testing.T) {
	t.Parallel()
	key, err := ParseKey("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	if err != nil {
		t.Fatal(err)
	}
	if key.ID() != "3eb1bd439947eb76" {
		t.Errorf("key id = %s, want 3eb1bd439947eb76 (the id fleets have pinned)", key.ID())
	}
	sealed, _ := hex.DecodeString(goldenRecord)
	r, err := Open([]*Key{key}, "/tokenagent/", "fp-billing", sealed)
	if err != nil {
		t.Fatalf("Open(golden) = %v", err)
	}
	if r.AccessToken != "eyJ-golden-token" || r.TokenType != "Bearer" || r.Scope != "read" || r.MintedBy != "host-a" ||
		!r.ExpiresAt.Equal(time.Unix(1_800_003_600, 0)) || !r.ObtainedAt.Equal(time.Unix(1_800_000_000, 0)) {
		t.Errorf("Open(golden) = %+v", r)
	}
	if _, err := Open([]*Key{key}, "/tokenagent/", "fp-other", sealed); !errors.Is(err, ErrTampered) {
		t.Errorf("the golden record under another fingerprint = %v, want ErrTampered", err)
	}
	if _, err := Open([]*Key{key}, "/tokenagent/", "fp-billing", sealed[:30]); !errors.Is(err, ErrTampered) {
		t.Errorf("a truncated record = %v, want ErrTampered", err)
	}
	other, _ := ParseKey("YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODk=")
	if _, err := Open([]*Key{other}, "/tokenagent/", "fp-billing", sealed); !errors.Is(err, ErrTampered) {
		t.Errorf("the golden record with another key = %v, want ErrTampered (only the pin says ErrWrongKey)", err)
	}
	if r.Generation != 0 {
		t.Errorf("a version 1 record's generation = %d, want 0", r.Generation)
	}
	// Written now: format version 2, the generation framed after the key
	// id and bound in the AAD.
	r.Generation = 7
	again, err := Seal(key, "/tokenagent/", "fp-billing", r)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(sealed)+8 || hex.EncodeToString(again[:17]) != "02"+goldenRecord[2:18]+"0000000000000007" {
		t.Errorf("Seal = %x…(%d bytes), want 02‖key id‖generation 7…(%d bytes)", again[:17], len(again), len(sealed)+8)
	}
	if got, err := Open([]*Key{key}, "/tokenagent/", "fp-billing", again); err != nil || got.Generation != 7 || got.AccessToken != r.AccessToken {
		t.Errorf("Open(Seal(generation 7)) = %+v, %v", got, err)
	}
	// The generation cannot be changed without the key.
	again[16] = 9
	if _, err := Open([]*Key{key}, "/tokenagent/", "fp-billing", again); !errors.Is(err, ErrTampered) {
		t.Errorf("a record with its generation changed = %v, want ErrTampered", err)
	}
}
