package store

import (
	"encoding/hex"
	"testing"
	"time"
)

// goldenRecord was sealed by the store's own sealing code at 9ed0da6,
// before it moved to package seal: records on disk written then must keep
// opening.
const goldenRecord = "015ceb8aa5924723160a66702d62696c6c696e679da63875a12824503f7e1278da640e69e8770e119ad97d5ccfb77a7c73e4da08d8672bd35bdb098a85e4be21cc2b41764679e6f6212d79b2359cdcc23c7df755b3b7c8557d0391b227a886185089f468409e9f0470426289096e284d06567f51735bb56dd081a51297a0ac0a7f5603d244735a798ec9f35a4f3b12f2b7f135b5069cea2868d7e3380c977bc7934a705754c31462a786b3d33f986c4c849e4ba41e5b93d605b693"

func TestGoldenRecordOpens(t *testing.T) {
	t.Parallel()
	key, err := ParseKey([]byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="))
	if err != nil {
		t.Fatal(err)
	}
	if key.ID() != "5ceb8aa592472316" {
		t.Errorf("key id = %s, want 5ceb8aa592472316 (the id stored files carry)", key.ID())
	}
	sealed, _ := hex.DecodeString(goldenRecord)
	rec, err := openRecord(key, "billing", sealed)
	if err != nil {
		t.Fatalf("openRecord(golden) = %v", err)
	}
	want := Record{Profile: "billing", Fingerprint: "fp-billing", AccessToken: "eyJ-golden-token", TokenType: "Bearer", Scope: "read",
		ExpiresAt: time.Unix(1_800_003_600, 0), ObtainedAt: time.Unix(1_800_000_000, 0)}
	if rec.Profile != want.Profile || rec.Fingerprint != want.Fingerprint || rec.AccessToken != want.AccessToken ||
		rec.TokenType != want.TokenType || rec.Scope != want.Scope || !rec.ExpiresAt.Equal(want.ExpiresAt) || !rec.ObtainedAt.Equal(want.ObtainedAt) {
		t.Errorf("openRecord(golden) = %+v, want %+v", *rec, want)
	}
	if _, err := openRecord(key, "other", sealed); err == nil {
		t.Error("the golden record opened under another profile's name")
	}
	// What this code seals now has the same layout: the header and
	// fingerprint in clear, then nonce and ciphertext of the same length.
	again, err := sealRecord(key, &want)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(sealed) || hex.EncodeToString(again[:20]) != goldenRecord[:40] {
		t.Errorf("sealRecord = %x…(%d bytes), want the golden layout %s…(%d bytes)", again[:20], len(again), goldenRecord[:40], len(sealed))
	}
}
