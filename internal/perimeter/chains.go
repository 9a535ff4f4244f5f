package perimeter

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// openAnchorSinks opens the extra anchor stores: each must be reachable at start (a sink
// that was never reached anchors nothing).
func openAnchorSinks(ctx context.Context, urls []string) ([]audit.AnchorStore, func(), error) {
	var sinks []audit.AnchorStore
	var clients []*store.AnchorClient
	closeAll := func() {
		for _, c := range clients {
			c.Close()
		}
	}
	for _, u := range urls {
		c, err := store.OpenAnchorClient(ctx, u)
		if err != nil {
			closeAll()
			return nil, nil, &UsageError{Err: fmt.Errorf("--audit-anchors: %w", err)}
		}
		clients = append(clients, c)
		sinks = append(sinks, c)
	}
	return sinks, closeAll, nil
}

// auditCertifier certifies audit writer keys (*pki.Authority).
type auditCertifier interface {
	Sign(pub crypto.PublicKey, req pki.Request) (*x509.Certificate, error)
}

// writerValidity is how long an audit writer's certificate is valid; renewWriters
// renews it at half its life.
const writerValidity = pki.MaxValidity

// AuditKeys is a key provider (hsm.Token) that makes audit writers' Ed25519 keys, whose
// private halves never leave it. A key it returns may have a Destroy method: a writer
// destroys its old key once the new one signs.
type AuditKeys interface {
	NewAuditKey(ctx context.Context, chain string) (crypto.Signer, error)
}

// WriterKey makes a new Ed25519 key for chain's writer, kept in this process's memory
// only, and has the perimeter CA certify it for that chain alone: what it signs, no
// other chain's verification accepts, and a key that leaks from one process signs
// nothing of another's.
func WriterKey(ca auditCertifier, account, chain string) (crypto.Signer, *x509.Certificate, error) {
	return writerKey(context.Background(), nil, ca, account, chain)
}

// writerKey is WriterKey with the key made in inToken when it is not nil.
func writerKey(ctx context.Context, inToken AuditKeys, ca auditCertifier, account, chain string) (crypto.Signer, *x509.Certificate, error) {
	var key crypto.Signer
	var err error
	if inToken != nil {
		key, err = inToken.NewAuditKey(ctx, chain)
	} else {
		_, key, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("make the audit writer key of chain %s: %w", chain, err)
	}
	cert, err := ca.Sign(key.Public(), pki.Request{Identity: pki.Identity{Account: account, Kind: pki.KindAudit, Name: chain}, AuditSigning: true, Validity: writerValidity})
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("certify the audit writer of chain %s: %w", chain, err), destroy(key))
	}
	return key, cert, nil
}

// destroy deletes key from its token, if it is in one.
func destroy(key crypto.Signer) error {
	if d, ok := key.(interface{ Destroy() error }); ok {
		return d.Destroy()
	}
	return nil
}

// Chains are the chains one process writes: one per component it runs.
type Chains struct {
	Dir     string
	account string
	ca      auditCertifier
	inToken AuditKeys                // nil: writer keys are in memory
	keys    map[string]crypto.Signer // each chain's current writer key
	logs    map[string]*audit.Log
	expires map[string]time.Time // when each writer's certificate expires
	renewAt map[string]time.Time // half its certificate's life: the lifetime is the CA's choice
	issuers map[string][]byte    // the key id of the CA that certified each writer
	tried   map[string]time.Time // when an early renewal for a newer CA was last tried
}

// OpenChains opens chains in dir, each with a writer key certified by ca, anchoring
// every digest in the store and in sinks.
func OpenChains(dir string, chains []string, p *Perimeter, account string, sinks []audit.AnchorStore, log *slog.Logger) (*Chains, error) {
	l := &Chains{Dir: dir, account: account, ca: p.Issuer, inToken: p.AuditKeys, keys: map[string]crypto.Signer{}, logs: map[string]*audit.Log{},
		expires: map[string]time.Time{}, renewAt: map[string]time.Time{}, issuers: map[string][]byte{}, tried: map[string]time.Time{}}
	anchors := append([]audit.AnchorStore{p.Store}, sinks...)
	for _, c := range chains {
		key, cert, err := writerKey(context.Background(), l.inToken, p.Issuer, account, c)
		if err != nil {
			l.CloseAll(log)
			return nil, err
		}
		al, err := audit.Open(audit.Config{Dir: dir, Chain: c, Signer: key, Certificate: cert.Raw, Anchors: anchors, Logger: log})
		if err != nil {
			err = errors.Join(fmt.Errorf("open audit chain %s: %w", c, err), destroy(key))
			l.CloseAll(log)
			return nil, err
		}
		l.logs[c], l.expires[c], l.renewAt[c], l.issuers[c], l.keys[c] = al, cert.NotAfter, halfLife(cert), cert.AuthorityKeyId, key
	}
	return l, nil
}

// renewWriters gives each chain a new certified key when its certificate is past half
// its life, or when a newer issuing CA under the same root than the one that certified
// it is trusted (an issuing CA rotation moves the writers to the new CA: the chain's
// next digests are signed by the new key and verify against the bundle holding both),
// checking every interval until ctx ends.
func (l *Chains) renewWriters(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ni, _ := l.ca.(newerIssuer)
		for _, c := range l.names() {
			// An issuer still signing with the old CA (it polls too) is asked again, every
			// few intervals: each try is a new key and certificate in the chain's signers.
			superseded := ni != nil && len(ni.NewerIssuing(l.issuers[c])) > 0 && time.Since(l.tried[c]) >= 5*interval
			if time.Now().Before(l.renewAt[c]) && !superseded {
				continue
			}
			if superseded {
				l.tried[c] = time.Now()
			}
			key, cert, err := writerKey(ctx, l.inToken, l.ca, l.account, c)
			if err == nil {
				if err = l.logs[c].SetSigner(key, cert.Raw); err != nil {
					err = errors.Join(err, destroy(key))
				}
			}
			if err != nil {
				log.Error("audit writer key not renewed; retrying", "chain", c, "expires", l.expires[c], "error", err)
				continue
			}
			// The old key signs no more: out of the token with it (its certificate still
			// verifies what it signed).
			if err := destroy(l.keys[c]); err != nil {
				log.Warn("old audit writer key not destroyed in the token", "chain", c, "error", err)
			}
			l.expires[c], l.renewAt[c], l.issuers[c], l.keys[c] = cert.NotAfter, halfLife(cert), cert.AuthorityKeyId, key
			log.Info("audit writer key renewed", "chain", c, "key_id", audit.KeyID(key.Public().(ed25519.PublicKey)), "superseded_ca", superseded, "in_token", l.inToken != nil)
		}
	}
}

// halfLife is when a certificate has lived half its validity.
func halfLife(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
}

// writerCheckInterval is how often renewWriters looks: a few polls, so a CA rotation
// reaches the writers soon after the trust, and at most a minute.
func writerCheckInterval(poll time.Duration) time.Duration {
	if poll <= 0 {
		return time.Minute
	}
	return min(2*poll, time.Minute)
}

func (l *Chains) Get(chain string) *audit.Log { return l.logs[chain] }

// Names lists the chains, sorted.
func (l *Chains) names() []string {
	names := make([]string, 0, len(l.logs))
	for c := range l.logs {
		names = append(names, c)
	}
	slices.Sort(names)
	return names
}

// readyCheck is the readiness check of the chains: a chain that cannot be written makes
// its process refuse every call it would have to record (fail closed), so it is not
// ready until the chain resumes (which it does by itself).
func (l *Chains) readyCheck() readyCheck {
	return readyCheck{"audit log", func() error {
		for _, c := range l.names() {
			if err := l.logs[c].Err(); err != nil {
				return err
			}
		}
		return nil
	}}
}

// CloseAll signs each chain's final digest.
func (l *Chains) CloseAll(log *slog.Logger) {
	for c, al := range l.logs {
		if err := al.Close(); err != nil {
			log.Error("close audit chain", "chain", c, "error", err)
		}
	}
	// Closed, the chains sign nothing more: their keys leave the token (a key of a
	// process that died stays there, signing nothing; its chain name is in its label).
	for c, k := range l.keys {
		if err := destroy(k); err != nil {
			log.Warn("audit writer key not destroyed in the token", "chain", c, "error", err)
		}
	}
}
