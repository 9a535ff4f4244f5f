package perimeter

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/authzmsg"
	"github.com/phantom-perimeter/phantom/internal/datadir"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// DefaultMaxStale is how long a component keeps deciding on state the store has not
// confirmed (credentials, revocations, risk levels) before it refuses every call.
const DefaultMaxStale = 30 * time.Second

// Perimeter is what every server component opens: the store, the identity service over
// it (snapshots loaded, a sealing key present) and the CA.
//
// It shares internal/admin's data directory layout and checks (datadir.Prepare,
// master.key, datadir.CADir); it is a separate opener only because components need the
// identity service itself, with its refresh interval and staleness bound, and a sealing
// key, which admin.Open does not expose or create.
type Perimeter struct {
	Store  store.Store
	Notify store.Notifier // nil when the store announces nothing
	IDs    *identity.Service
	CA     *pki.Authority // the CA as this process sees it: trust, and issuing when it may
	// Issuer issues this process's own certificates: the CA in a process that holds the
	// issuing key (STS, phantom up, the operator), else STS's component API (enroll).
	Issuer   componentIssuer
	Messages *authzmsg.Sealer // encoded authorization messages; nil without their key
	// Keys are the keys this process holds (internal/keys): the ones every replica must
	// agree on (gateway assertions, authorization messages, proxy passwords, the store's
	// secrets); they are never logged or written anywhere else.
	Keys     *keys.Ring
	Poll     time.Duration
	MaxStale time.Duration
	// AuditKeys makes this process's audit writers' keys in a PKCS#11 token; nil: in
	// memory.
	AuditKeys AuditKeys
}

// Options say where the perimeter's state is and how fresh it must be kept.
type Options struct {
	DataDir string
	// StoreURL is "" for SQLite in dataDir, or a postgres:// URL for a store shared by
	// replicas; with a shared store the CA is kept in it too.
	StoreURL string
	Account  string
	Poll     time.Duration
	// MaxStale bounds serving from state the store has not confirmed; 0: unbounded.
	MaxStale time.Duration
	// Component is the kind of process; keysFile its component key file ("": the
	// master key, which makes the process an operator's).
	Component keys.Component
	KeysFile  string
	// IssuingKeys is a key provider holding the issuing CAs' keys; nil: the store.
	IssuingKeys IssuingKeys
	// TokenSigningKeys is a key provider holding the session-token signing keys: new
	// ones are made there, and the process signs there (STS); nil: the store.
	TokenSigningKeys identity.TokenSigningKeys
	// AuditKeys is a key provider making the audit writers' keys; nil: memory.
	AuditKeys AuditKeys
}

// IssuingKeys is a key provider holding issuing CAs' keys (hsm.Token): STS signs there.
type IssuingKeys interface {
	IssuingSigner(ctx context.Context, cert *x509.Certificate) (crypto.Signer, error)
}

// componentIssuer is what a process needs to get its own certificates: its TLS
// certificate and its audit writers' (*pki.Authority or *enroll.Client).
type componentIssuer interface {
	certIssuer
	auditCertifier
}

func Open(ctx context.Context, o Options, log *slog.Logger) (*Perimeter, error) {
	db, ring, err := datadir.OpenStore(ctx, datadir.StoreOptions{DataDir: o.DataDir, StoreURL: o.StoreURL, KeysFile: o.KeysFile, Component: o.Component})
	if err != nil {
		return nil, err
	}
	p := &Perimeter{Store: db, Keys: ring, Poll: o.Poll, MaxStale: o.MaxStale, AuditKeys: o.AuditKeys}
	if n, ok := db.(store.Notifier); ok {
		p.Notify = n
	}
	if err := p.open(ctx, o, log); err != nil {
		db.Close()
		return nil, err
	}
	return p, nil
}

func (p *Perimeter) open(ctx context.Context, o Options, log *slog.Logger) error {
	ids, err := datadir.OpenIdentity(ctx, p.Store, p.Keys, identity.Config{Account: o.Account, RefreshInterval: o.Poll, MaxStale: o.MaxStale, Logger: log, TokenKeys: o.TokenSigningKeys})
	switch {
	case err != nil:
	case o.TokenSigningKeys != nil && !ids.Sealer().CurrentInToken():
		// Told to sign in a token and the current key is not there (first start, or the
		// move from the store to a token): make one there. Its sessions are version 3.
		var id string
		if id, err = ids.RotateSealingKey(ctx); err == nil {
			log.Info("created a token-sealing key signing in the PKCS#11 token", "key_id", id)
		}
	case o.TokenSigningKeys == nil && ids.Sealer().CurrentInToken() && p.Keys.Has(keys.StoreTokenSigning):
		// The current key signs in a token this process was not given: it cannot issue
		// sessions, and making a key in the store instead would undo the token.
		if o.Component == keys.STS {
			err = errors.New("the current token-signing key is in a PKCS#11 token: start STS with --pkcs11-module, --pkcs11-token, --pkcs11-pin-file and --pkcs11-keys token-signing")
		} else {
			log.Warn("this process cannot issue sessions: the current token-signing key is in a PKCS#11 token", "key_id", ids.Sealer().CurrentKeyID())
		}
	case !ids.Sealer().CanSeal() && p.Keys.Has(keys.StoreTokenSigning):
		// First start (sessions need a sealing key), or the first since signed tokens (the
		// current key cannot sign): a process that may sign makes one. Concurrent starts
		// each add one; RotateSealingKey keeps exactly one current, and the key replaced
		// keeps opening its sessions until they expire.
		first := ids.Sealer().CurrentKeyID() == ""
		var id string
		if id, err = ids.RotateSealingKey(ctx); err == nil {
			log.Info("created a token-sealing key", "key_id", id, "first", first)
		}
	}
	if err != nil {
		return fmt.Errorf("open identity service: %w", err)
	}
	p.IDs = ids
	var issuingSigner func(context.Context, *x509.Certificate) (crypto.Signer, error)
	if o.IssuingKeys != nil {
		issuingSigner = o.IssuingKeys.IssuingSigner
	}
	p.CA, err = pki.OpenAuthority(ctx, pki.AuthorityConfig{
		IssuingSigner: issuingSigner,
		// A CA from before issuing CAs, in the data directory, is imported once.
		Config: pki.Config{Dir: filepath.Join(o.DataDir, datadir.CADir), Account: o.Account},
		Issue:  p.Keys.Has(keys.StoreCA) || o.IssuingKeys != nil,
		Root:   p.Keys.Has(keys.StoreCARoot),
	}, p.Store)
	if err != nil {
		return err
	}
	if p.Keys.Has(keys.StoreCA) || o.IssuingKeys != nil {
		p.Issuer = p.CA
	}
	if !p.Keys.Has(keys.AuthzMessages) {
		return nil
	}
	msgKey, err := p.Keys.Key(keys.AuthzMessages)
	if err != nil {
		return err
	}
	p.Messages, err = authzmsg.NewSealer(msgKey, nil)
	return err
}

// freshness tracks when a refresh loop last had the store confirm its state, for a
// staleness bound.
type freshness struct {
	MaxStale time.Duration
	synced   atomic.Int64 // Unix nanoseconds
}

func (f *freshness) mark(t time.Time) { f.synced.Store(t.UnixNano()) }

func (f *freshness) check(what string) error {
	if f.MaxStale <= 0 {
		return nil
	}
	if age := time.Since(time.Unix(0, f.synced.Load())); age > f.MaxStale {
		return fmt.Errorf("%s not confirmed by the store for %s (bound %s)", what, age.Round(time.Millisecond), f.MaxStale)
	}
	return nil
}

// riskRefresher is what syncRisk refreshes (respond.Responder).
type riskRefresher interface {
	Refresh(ctx context.Context) error
}

// sweepSignatures forgets, every minute, the used signatures of the gateway's replay guard
// that no verifier accepts any more. It returns when ctx ends.
func (p *Perimeter) sweepSignatures(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := p.Store.DeleteExpiredSignatures(ctx, time.Now()); err != nil && ctx.Err() == nil {
			log.Warn("replay guard: could not forget expired signatures", "error", err)
		}
	}
}

// syncRisk keeps the responder's risk levels current: at once on each store notification,
// else every poll, recording each success in fresh. It returns when ctx ends.
func (p *Perimeter) syncRisk(ctx context.Context, r riskRefresher, fresh *freshness, log *slog.Logger) {
	t := time.NewTicker(p.Poll)
	defer t.Stop()
	var changed <-chan struct{}
	if p.Notify != nil {
		ch, cancel := p.Notify.Subscribe()
		defer cancel()
		changed = ch
	}
	failing := false
	for {
		started := time.Now()
		rctx, cancel := context.WithTimeout(ctx, max(p.Poll, time.Second))
		err := r.Refresh(rctx)
		cancel()
		switch {
		case err == nil:
			fresh.mark(started)
			if failing {
				log.Info("risk levels: store reachable again")
				failing = false
			}
		case ctx.Err() == nil && !failing:
			log.Error("risk levels: refresh failed; keeping the previous levels", "error", err)
			failing = true
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		}
	}
}

// syncCA keeps the CA current: at once on each store notification, else every poll, it
// reloads the CA certificates and revocations (the verifiers' trust, the issuing CA),
// renews the issuing CA when this process holds a root key and it is due, and rewrites
// bundlePath ("" for none) when the bundle changed. It returns when ctx ends.
func (p *Perimeter) syncCA(ctx context.Context, bundlePath string, log *slog.Logger) {
	t := time.NewTicker(p.Poll)
	defer t.Stop()
	var changed <-chan struct{}
	if p.Notify != nil {
		ch, cancel := p.Notify.Subscribe()
		defer cancel()
		changed = ch
	}
	written := p.CA.BundlePEM()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		}
		rctx, cancel := context.WithTimeout(ctx, max(p.Poll, time.Second))
		err := p.CA.Refresh(rctx)
		if err == nil {
			var rotated bool
			if rotated, err = p.CA.Renew(rctx); rotated {
				ca, _ := p.CA.CA()
				log.Info("CA: renewed the issuing CA", "serial", ca.Certificate().SerialNumber.Text(16), "not_after", ca.Certificate().NotAfter)
			}
		}
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			log.Error("CA: refresh failed; keeping the current trust", "error", err)
			failing = true
		case err == nil && failing:
			log.Info("CA: refreshed again")
			failing = false
		}
		if b := p.CA.BundlePEM(); bundlePath != "" && !bytes.Equal(b, written) {
			if err := p.CA.WriteBundle(bundlePath); err != nil {
				log.Error("CA: could not rewrite the CA bundle", "path", bundlePath, "error", err)
				continue
			}
			written = b
		}
	}
}

// gatewayFreshness is the gateway's Fresh hook: credentials and risk levels both
// confirmed by the store within the bound.
func (p *Perimeter) gatewayFreshness(risk *freshness) func() error {
	return func() error {
		if err := p.IDs.Fresh(); err != nil {
			return err
		}
		return risk.check("risk levels")
	}
}
