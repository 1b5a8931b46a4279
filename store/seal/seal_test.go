package seal_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/tokenagent/tokenagent/store/seal"
)

const keyText = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// TestParseKey moved here from package store with the key it tests.
func TestParseKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in string
		ok bool
	}{
		{keyText + "\n", true},
		{"  " + keyText + "  ", true},
		{"MDEyMzQ1Njc4OWFiY2RlZg==", false}, // 16 bytes
		{"not base64!", false},
		{"", false},
	}
	for _, tt := range tests {
		_, err := seal.ParseKey([]byte(tt.in), seal.StoreIDs)
		if (err == nil) != tt.ok {
			t.Errorf("ParseKey(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && strings.Contains(err.Error(), strings.TrimSpace(tt.in)) && tt.in != "" {
			t.Errorf("ParseKey error %q echoes the key", err)
		}
	}
}

// TestKeyIDs: the ids the store and the fleet published before they
// shared this package (values computed by the code of 9ed0da6).
func TestKeyIDs(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		label seal.IDLabel
		want  string
	}{
		{seal.StoreIDs, "5ceb8aa592472316"},
		{seal.FleetIDs, "3eb1bd439947eb76"},
	} {
		k, err := seal.ParseKey([]byte(keyText), tt.label)
		if err != nil {
			t.Fatal(err)
		}
		if k.ID() != tt.want || k.RawID().String() != tt.want {
			t.Errorf("ParseKey(…, %q).ID() = %s, want %s", tt.label, k.ID(), tt.want)
		}
	}
}

// TestSealOpen: a value opens with its key and AAD only; the framing
// carries the version, the key id and the clear header in clear.
func TestSealOpen(t *testing.T) {
	t.Parallel()
	key, _ := seal.ParseKey([]byte(keyText), seal.StoreIDs)
	text, _ := seal.NewKeyText()
	other, _ := seal.ParseKey(text, seal.StoreIDs)
	sealed, err := key.Seal(7, []byte("clear"), []byte("plain text"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("plain")) {
		t.Errorf("sealed value %q holds the plaintext", sealed)
	}
	f, err := seal.Split(sealed)
	if err != nil || f.Version != 7 || f.KeyID != key.RawID() || !bytes.HasPrefix(f.Rest, []byte("clear")) {
		t.Fatalf("Split = %+v, %v; want version 7, key id %s, the clear header", f, err, key.ID())
	}
	if got := seal.Find([]*seal.Key{other, key}, f.KeyID); got != key {
		t.Errorf("Find picked %v, want the sealing key", got)
	}
	if got := seal.Find([]*seal.Key{other}, f.KeyID); got != nil {
		t.Errorf("Find without the sealing key = %v, want nil", got)
	}
	body := f.Rest[len("clear"):]
	if plain, err := key.Open(body, []byte("aad")); err != nil || string(plain) != "plain text" {
		t.Errorf("Open = %q, %v; want the plaintext", plain, err)
	}
	if _, err := key.Open(body, []byte("other aad")); !errors.Is(err, seal.ErrTampered) {
		t.Errorf("Open under another AAD = %v, want ErrTampered", err)
	}
	if _, err := other.Open(body, []byte("aad")); !errors.Is(err, seal.ErrTampered) {
		t.Errorf("Open with another key = %v, want ErrTampered", err)
	}
	flipped := bytes.Clone(body)
	flipped[len(flipped)-1] ^= 1
	if _, err := key.Open(flipped, []byte("aad")); !errors.Is(err, seal.ErrTampered) {
		t.Errorf("Open of an altered body = %v, want ErrTampered", err)
	}
	if _, err := key.Open(body[:seal.Overhead-1], []byte("aad")); !errors.Is(err, seal.ErrMalformed) {
		t.Errorf("Open of a truncated body = %v, want ErrMalformed", err)
	}
	if _, err := seal.Split(sealed[:8]); !errors.Is(err, seal.ErrMalformed) {
		t.Errorf("Split of 8 bytes = %v, want ErrMalformed", err)
	}
}

// FuzzOpen: Split and Open never panic, and nothing but the sealed value
// opens.
func FuzzOpen(f *testing.F) {
	key, err := seal.ParseKey([]byte(keyText), seal.FleetIDs)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := key.Seal(1, nil, []byte("x"), []byte("aad"))
	f.Add(good)
	f.Add(good[:10])
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := seal.Split(data)
		if err != nil {
			return
		}
		// Only a value this key sealed opens, and the only one it sealed
		// is "x". (Not "only good": under -fuzz every worker process
		// seals its own good, with a nonce of its own, and the seed the
		// coordinator hands a worker is another process's sealing of x.)
		plain, err := key.Open(fr.Rest, []byte("aad"))
		if err == nil && string(plain) != "x" {
			t.Fatalf("Open accepted %x as %q", data, plain)
		}
	})
}
