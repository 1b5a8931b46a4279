package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/tokenagent/tokenagent/agent/config"
	"github.com/tokenagent/tokenagent/agent/persist"
	"github.com/tokenagent/tokenagent/agent/secretref"
	"github.com/tokenagent/tokenagent/ipc"
	"github.com/tokenagent/tokenagent/store"
)

// OpenStore opens the configuration's token store with its keys, or
// returns nil for store = "memory". Errors name the file, the key source
// and what to do.
func OpenStore(cfg *config.Config) (*store.Store, error) {
	path := cfg.StorePath()
	if path == "" {
		return nil, nil
	}
	key, source, err := storeKey(cfg, true)
	if err != nil {
		return nil, err
	}
	var previous []*store.Key
	for i, ref := range cfg.StoreKeyPrevious {
		k, err := secretref.StoreKey(ref, cfg.Dir())
		if err != nil {
			return nil, fmt.Errorf("store_key_previous[%d] %s: %w", i, ref, err)
		}
		previous = append(previous, k)
	}
	s, err := store.Open(path, store.Options{Key: key, PreviousKeys: previous})
	var wk *store.WrongKeyError
	if errors.As(err, &wk) {
		return nil, fmt.Errorf("%w; the current key, store_key %s, has key id %s. "+
			"To recover, list the key that sealed them in store_key_previous (they are re-sealed with the current key at start), "+
			"or delete %s to start fresh (costs one token request per profile)", err, source, key.ID(), path)
	}
	return s, err
}

// CheckStore reports where tokens will be kept and whether the store key
// can be used, without creating or opening anything: for check-config.
func CheckStore(c *config.Config) (string, error) {
	path := c.StorePath()
	if path == "" {
		return "in memory only (store = \"memory\")", nil
	}
	key, source, err := storeKey(c, false)
	if err != nil {
		return "", err
	}
	if key == nil {
		return fmt.Sprintf("%s, key %s (created on first start)", path, source), nil
	}
	var previous []*store.Key
	for i, ref := range c.StoreKeyPrevious {
		k, err := secretref.StoreKey(ref, c.Dir())
		if err != nil {
			return "", fmt.Errorf("store_key_previous[%d] %s: %w", i, ref, err)
		}
		previous = append(previous, k)
	}
	// The records already there must open with these keys, as start
	// requires.
	where := fmt.Sprintf("%s, key %s (key id %s)", path, source, key.ID())
	err = store.CheckKeys(path, store.Options{Key: key, PreviousKeys: previous})
	var wk *store.WrongKeyError
	switch {
	case errors.As(err, &wk):
		return "", fmt.Errorf("%w; the current key, store_key %s, has key id %s: tokenagentd would refuse to start. "+
			"List the key that sealed them in store_key_previous, or delete %s to start fresh (costs one token request per profile)", err, source, key.ID(), path)
	case errors.Is(err, store.ErrInUse):
		return where + " (in use by the running agent: records not checked)", nil
	case err != nil:
		return "", err
	}
	return where, nil
}

// storeKey finds the store key: store_key from the configuration, else
// $CREDENTIALS_DIRECTORY/store-key, else store.key beside the
// configuration file, created on first start when create is set (else a
// missing file is reported as a nil key). It returns the key and a
// description of its source for messages.
func storeKey(c *config.Config, create bool) (*store.Key, string, error) {
	if c.StoreKey != "" {
		k, err := secretref.StoreKey(c.StoreKey, c.Dir())
		if err != nil {
			return nil, c.StoreKey, fmt.Errorf("store_key %s: %w", c.StoreKey, err)
		}
		return k, c.StoreKey, nil
	}
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "store-key")); err == nil {
			const ref = config.RefCredential + "store-key"
			k, err := secretref.StoreKey(ref, c.Dir())
			if err != nil {
				return nil, ref, fmt.Errorf("store key %s: %w", ref, err)
			}
			return k, ref, nil
		}
	}
	dir := config.ConfigDir()
	if c.Path() != "" && filepath.IsAbs(c.Path()) {
		dir = filepath.Dir(c.Path())
	}
	path := filepath.Join(dir, "store.key")
	ref := config.RefFile + path
	if !create {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, ref, nil
		}
	} else if err := store.CreateKeyFile(path); err != nil {
		return nil, ref, err
	}
	k, err := secretref.StoreKey(ref, dir)
	if err != nil {
		return nil, ref, fmt.Errorf("store key %s: %w", ref, err)
	}
	return k, ref, nil
}

// StoreUnavailable reports whether err, from opening the store, is the
// disk's condition (read-only, full, failing) rather than a configuration
// mistake: then the agent can start with tokens in memory only, unless
// store_required is set.
func StoreUnavailable(err error) bool {
	for _, e := range []error{syscall.EROFS, syscall.ENOSPC, syscall.EDQUOT, syscall.EIO} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// adoptStore seeds the profiles that hold no token yet with the stored
// tokens that are still usable, and deletes the rest: records of profiles
// no longer configured, written for other settings, expired, or failing
// authentication.
func (a *Agent) adoptStore(st *store.Store) {
	log := a.log.With().Str("store", st.Path()).Logger()
	if moved, cause := st.Recovered(); moved != "" {
		log.Error().Str("moved_to", moved).AnErr("cause", cause).
			Msg("token store was damaged; moved it aside and started empty (tokens will be fetched again)")
	}
	if n := st.Resealed(); n > 0 {
		log.Info().Int("records", n).Str("key_id", st.KeyID()).Msg("re-sealed stored tokens with the current store key; store_key_previous can be removed")
	}
	recs, problems, err := st.LoadAll()
	if err != nil {
		log.Error().Err(err).Msg("cannot read the token store; starting without stored tokens")
		return
	}
	var drop []string
	for _, p := range problems {
		log.Error().Str("profile", p.Profile).Err(p.Err).Msg("dropping a stored token that failed authentication")
		drop = append(drop, p.Profile)
	}
	sources := *a.sources.Load()
	now := a.clock.Now()
	loaded := 0
	for _, r := range recs {
		s := sources[r.Profile]
		switch {
		case s == nil:
			log.Info().Str("profile", r.Profile).Msg("dropping the stored token of a profile no longer configured")
		case r.Fingerprint != s.prof.fingerprint:
			log.Info().Str("profile", r.Profile).Msg("profile settings changed (endpoint, client, auth, scopes, audience or resource); stored token ignored")
		case r.ExpiresAt.Sub(now) < s.prof.timing.MinValid.Duration:
			log.Debug().Str("profile", r.Profile).Time("expires_at", r.ExpiresAt).Msg("dropping an expired stored token")
		case s.cur.Load() != nil:
			continue // the token in memory is newer; it is written over this one
		default:
			s.seed(r)
			loaded++
			continue
		}
		drop = append(drop, r.Profile)
	}
	a.persister.Remove(drop...)
	counts, err := st.LoadCounts()
	if err != nil {
		log.Error().Err(err).Msg("cannot read the budget counts from the token store; budgets count this period from the fleet's count, or from 0")
	}
	a.persister.RemoveCounts(a.adoptCounts(counts)...)
	log.Info().Int("loaded", loaded).Int("dropped", len(drop)).Int("budget_counts", len(counts)).Msg("token store opened")
}

// adoptAgain adopts a store the writer opened again, and returns the
// tokens held in memory for it to write.
func (a *Agent) adoptAgain(st *store.Store) []store.Record {
	a.adoptStore(st)
	return a.currentRecords()
}

// currentRecords are the tokens held in memory, as store records.
func (a *Agent) currentRecords() []store.Record {
	var recs []store.Record
	for _, s := range *a.sources.Load() {
		if c := s.cur.Load(); c != nil {
			recs = append(recs, s.record(c))
		}
	}
	return recs
}

// persist notes a fresh token for the store; it never waits for the
// disk.
func (a *Agent) persist(r store.Record) {
	if a.persister != nil {
		a.persister.Put(r)
	}
}

// StoreHealth reports the token store's state.
func (a *Agent) StoreHealth() ipc.StoreHealth {
	if a.persister == nil {
		return ipc.StoreHealth{State: persist.StateMemory}
	}
	return a.persister.Health()
}
