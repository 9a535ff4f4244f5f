// Package admin owns Phantom's administrative operations on one data directory: users'
// long-term access keys (the `phantom iam` commands), session revocation, token-sealing key
// rotation (`phantom keys`), and node join tokens and enrollment (`phantom node`). It opens
// the store, the identity service and the perimeter CA for a data directory, checks names
// against the perimeter spec, and gives results and errors in the shapes the AWS CLI prints
// (`{"AccessKey": {…}}`, `An error occurred (NoSuchEntity) when calling the … operation`).
//
// It does not own the stored data (internal/store), credential logic (internal/identity),
// certificates (internal/pki) or the spec (internal/config); cmd/phantom only parses flags
// and calls it. Every write goes to the store, whose change counter the running
// components poll (identity.Service.Run, every identity.DefaultRefreshInterval), so a key
// disabled or a role revoked here is refused by every process sharing the store within
// that interval.
//
// Data directory layout (0700): phantom.db and master.key (internal/store), ca/ (the
// perimeter CA: ca.crt, ca.key 0600), admin.lock (serialises access-key creation so the
// per-user quota holds between concurrent commands). `phantom up` adds up.lock (one up per
// directory), perimeter.yaml (the demo spec), demo.env and aws-config.
package admin

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/datadir"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// lockFile serialises access-key creation in the data directory.
const lockFile = "admin.lock"

// Config configures Open.
type Config struct {
	// DataDir is the perimeter's data directory; created 0700 when missing, tightened to
	// 0700 when group or others can enter it.
	DataDir string
	// StoreURL is "" for SQLite in DataDir, or a postgres:// URL of a store shared by
	// replicas (which then keeps the CA too).
	StoreURL string
	// Spec is the perimeter spec: its account id, and the users, roles and nodes that
	// names are checked against.
	Spec *config.Spec
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the entropy source for keys and tokens; nil means crypto/rand.
	Rand io.Reader
	// Logger receives the identity service's warnings; nil means slog.Default().
	Logger *slog.Logger
	// AuditDir is where the operations that change who may do what (removing a node,
	// lifting a response) record themselves, in the chain "admin"; "" records nothing
	// (tests).
	AuditDir string
}

// Admin performs administrative operations on one data directory. Close it when done.
type Admin struct {
	dataDir  string
	storeURL string
	spec     *config.Spec
	now      func() time.Time
	rand     io.Reader
	store    store.Store
	ids      *identity.Service
	auditDir string
	mk       []byte // the master key: admin commands are the operator's

	caMu  sync.Mutex
	ca    *pki.Authority // opened (or created) on first use: only node and ca commands need it
	roots RootKeys       // where root keys are: a key provider, else the store (the master key)
	// newIssuing: new issuing CAs' keys are made in roots' key provider too.
	newIssuing bool
}

// RootKeys is a key provider holding the CA's root keys (hsm.Token): roots are made and
// used there, never stored; issuing CAs' keys are looked for there first, and made
// there with UseRootKeys' issuing.
type RootKeys interface {
	RootSigner(ctx context.Context, root *x509.Certificate) (crypto.Signer, error)
	NewRootKey(ctx context.Context) (crypto.Signer, error)
	IssuingSigner(ctx context.Context, cert *x509.Certificate) (crypto.Signer, error)
	NewIssuingKey(ctx context.Context) (crypto.Signer, error)
}

// UseRootKeys makes the CA's root keys k's, for every CA operation after it (call it
// before the first); with issuing, new issuing CAs' keys are made in k too.
func (a *Admin) UseRootKeys(k RootKeys, issuing bool) {
	a.caMu.Lock()
	defer a.caMu.Unlock()
	a.roots, a.newIssuing, a.ca = k, issuing, nil
}

// Open prepares the data directory, loads (or creates) the master key, opens the store
// and loads the identity service's snapshots.
func Open(ctx context.Context, cfg Config) (*Admin, error) {
	if cfg.Spec == nil {
		return nil, errors.New("admin: no perimeter spec")
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	st, ring, err := datadir.OpenStore(ctx, datadir.StoreOptions{DataDir: cfg.DataDir, StoreURL: cfg.StoreURL, Now: now})
	if err != nil {
		return nil, err
	}
	mk, err := ring.Master()
	var ids *identity.Service
	if err == nil {
		ids, err = datadir.OpenIdentity(ctx, st, ring, identity.Config{Account: cfg.Spec.Account, Now: now, Rand: cfg.Rand, Logger: cfg.Logger})
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Admin{dataDir: cfg.DataDir, storeURL: cfg.StoreURL, spec: cfg.Spec, now: now, rand: cfg.Rand, store: st, ids: ids, auditDir: cfg.AuditDir, mk: mk}, nil
}

// Close releases the store.
func (a *Admin) Close() error { return a.store.Close() }

// Authority returns the perimeter's CA, kept in the store, creating it on first use (an
// admin command holds the master key: the root's key too). A CA from before issuing CAs
// (the data directory's ca/, or the shared store's) is imported.
func (a *Admin) Authority(ctx context.Context) (*pki.Authority, error) {
	a.caMu.Lock()
	defer a.caMu.Unlock()
	if a.ca != nil {
		return a.ca, a.ca.Refresh(ctx)
	}
	cfg := pki.AuthorityConfig{
		Config: pki.Config{Dir: filepath.Join(a.dataDir, datadir.CADir), Account: a.spec.Account, Now: a.now, Rand: a.rand},
		Issue:  true,
		Root:   true,
	}
	if a.roots != nil {
		cfg.RootSigner, cfg.NewRootKey, cfg.IssuingSigner = a.roots.RootSigner, a.roots.NewRootKey, a.roots.IssuingSigner
		if a.newIssuing {
			cfg.NewIssuingKey = a.roots.NewIssuingKey
		}
	}
	ca, err := pki.OpenAuthority(ctx, cfg, a.store)
	if err != nil {
		return nil, err
	}
	a.ca = ca
	return ca, nil
}

// lock takes an exclusive advisory lock on the data directory's admin.lock, serialising
// check-then-write operations (the access-key quota) between processes.
func (a *Admin) lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(a.dataDir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// isNotFound reports a store "no such row" error.
func isNotFound(err error) bool {
	return errors.Is(err, store.ErrNotFound)
}
