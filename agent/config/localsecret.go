package config

import "fmt"

// Values of token_endpoint_unidentified.
const (
	UnidentifiedRefuse      = "refuse"
	UnidentifiedLocalSecret = "local_secret"
)

// Local secrets are the only thing between an unidentified caller and a
// token, so they must be out of reach of guessing: at least 128 bits of
// randomness. Without knowing how a secret was made, the agent asks for
// what a random one of that strength looks like — 24 characters or more
// (`openssl rand -base64 32` gives 44, `openssl rand -hex 16` 32) with at
// least 16 different ones — which refuses words, repeats and short PINs.
const (
	minLocalSecretLen      = 24
	minLocalSecretDistinct = 16
)

// CheckLocalSecret says why a local_secret's value is too weak, naming
// the profile and how to make a strong one; nil when it is strong enough.
// The value itself never appears in the error.
func CheckLocalSecret(profile string, value []byte) error {
	distinct := map[byte]bool{}
	for _, b := range value {
		distinct[b] = true
	}
	if len(value) >= minLocalSecretLen && len(distinct) >= minLocalSecretDistinct {
		return nil
	}
	return fmt.Errorf("profile %q: local_secret is too weak to stand guessing (%d characters, %d different; want at least %d and %d, "+
		"128 bits of randomness): make one with `openssl rand -base64 32` and give it to the profile's clients",
		profile, len(value), len(distinct), minLocalSecretLen, minLocalSecretDistinct)
}
