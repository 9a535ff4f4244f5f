// Package datadir owns a perimeter's data directory: where it is (flags, environment,
// defaults), its layout, preparing it (0700), and opening what it holds: the keys (the
// master key, or a component's key file), the store (SQLite in the directory, or a
// PostgreSQL store shared by replicas) and the identity service over it. Every opener
// goes through it: the running processes (internal/perimeter), the administrative
// commands (internal/admin) and the benches.
//
// It does not own the store's data (internal/store), credentials (internal/identity),
// keys (internal/keys) or certificates (internal/pki), nor how a process runs over them
// (internal/perimeter).
//
// Layout (0700): master.key and phantom.db (internal/store), ca/ (the perimeter CA before
// it moved into the store), admin.lock (internal/admin). `phantom up` adds up.lock (one up
// per directory), perimeter.yaml (the demo spec), demo.env and aws-config.
package datadir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// Where the data directory and the spec are when no flag says, and the environment
// variables that say otherwise (flags override both).
const (
	Env           = "PHANTOM_DATA_DIR"
	Default       = "phantom-data"
	ConfigEnv     = "PHANTOM_CONFIG"
	DefaultConfig = "phantom.yaml"
	// CADir is the CA's directory inside the data directory.
	CADir = "ca"
)

// Dir returns flag when set, else $PHANTOM_DATA_DIR, else ./phantom-data.
func Dir(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	if v := getenv(Env); v != "" {
		return v
	}
	return Default
}

// ConfigPath returns flag when set, else $PHANTOM_CONFIG, else ./phantom.yaml.
func ConfigPath(flag string, getenv func(string) string) string {
	if flag != "" {
		return flag
	}
	if v := getenv(ConfigEnv); v != "" {
		return v
	}
	return DefaultConfig
}

// Prepare creates dir 0700 when missing and tightens an existing one that group or
// others can enter to 0700 (failing when it cannot): it holds the master key and the CA
// key.
func Prepare(dir string) error {
	if dir == "" {
		return errors.New("no data directory: pass --data-dir or set " + Env)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data directory %s is not a directory", dir)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		// As the store tightens its database files: the directory is ours to close.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("data directory %s has mode %#o, open to others, and cannot be tightened: %w", dir, perm, err)
		}
	}
	return nil
}

// StoreOptions say which store to open, and with which keys.
type StoreOptions struct {
	DataDir string
	// StoreURL is "" for SQLite in DataDir, or a postgres:// URL for a store shared by
	// replicas.
	StoreURL string
	// KeysFile is the process's component key file; "": the master key in DataDir (made
	// on first use), which makes the process an operator's.
	KeysFile string
	// Component, when set, is the kind of process KeysFile must belong to.
	Component keys.Component
	// Now is the store's clock; nil means time.Now.
	Now func() time.Time
}

// LoadKeys is the ring a process runs with: its component key file when it has one (a
// host that holds no master key), else the data directory's master key (an operator's
// host).
func LoadKeys(o StoreOptions) (*keys.Ring, error) {
	if o.KeysFile == "" {
		mk, err := store.LoadOrCreateMasterKey(o.DataDir)
		if err != nil {
			return nil, err
		}
		return keys.FromMaster(mk)
	}
	ring, err := keys.LoadFile(o.KeysFile)
	if err != nil {
		return nil, err
	}
	if o.Component != "" && ring.Component() != o.Component {
		return nil, fmt.Errorf("key file %s is a %s's, not a %s's", o.KeysFile, ring.Component(), o.Component)
	}
	return ring, nil
}

// OpenStore prepares the data directory, loads the keys (LoadKeys) and opens the store
// with them. It returns the ring with the store: what else the process may read and
// derive is decided by the keys it holds.
func OpenStore(ctx context.Context, o StoreOptions) (store.Store, *keys.Ring, error) {
	if err := Prepare(o.DataDir); err != nil {
		return nil, nil, err
	}
	ring, err := LoadKeys(o)
	if err != nil {
		return nil, nil, err
	}
	db, err := store.Open(ctx, store.OpenConfig{URL: o.StoreURL, DataDir: o.DataDir, Keys: ring, Now: o.Now})
	if errors.Is(err, store.ErrWrongMasterKey) && store.IsPostgresURL(o.StoreURL) {
		return nil, nil, fmt.Errorf("%w: every host of a shared store needs the perimeter's master key (PHANTOM_MASTER_KEY, or master.key from the first host's data directory)", err)
	}
	if err != nil {
		return nil, nil, err
	}
	return db, ring, nil
}

// OpenIdentity is the identity service over st with its snapshots loaded. It reads only
// the secrets ring opens: a process without the store's access-key or token-key keys
// (an egress proxy, an endpoint, a detector) loads no access key and no token key.
// Changes reach it through st's notifications when st announces them.
func OpenIdentity(ctx context.Context, st store.Store, ring *keys.Ring, cfg identity.Config) (*identity.Service, error) {
	deps := identity.Deps{Revocations: st, Nodes: st, Changes: st}
	if ring.Has(keys.StoreAccessKeys) {
		deps.AccessKeys = st
	}
	if ring.Has(keys.StoreTokenKeys) {
		deps.SealingKeys = st
	}
	if n, ok := st.(store.Notifier); ok {
		deps.Notify = n
	}
	ids, err := identity.New(cfg, deps)
	if err != nil {
		return nil, err
	}
	if err := ids.Refresh(ctx); err != nil {
		return nil, err
	}
	return ids, nil
}
