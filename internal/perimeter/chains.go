package perimeter

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
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

// WriterKey makes a new Ed25519 key for chain's writer, kept in this process's memory
// only, and has the perimeter CA certify it for that chain alone: what it signs, no
// other chain's verification accepts, and a key that leaks from one process signs
// nothing of another's.
func WriterKey(ca auditCertifier, account, chain string) (ed25519.PrivateKey, *x509.Certificate, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cert, err := ca.Sign(pub, pki.Request{Identity: pki.Identity{Account: account, Kind: pki.KindAudit, Name: chain}, AuditSigning: true, Validity: writerValidity})
	if err != nil {
		return nil, nil, fmt.Errorf("certify the audit writer of chain %s: %w", chain, err)
	}
	return key, cert, nil
}

// Chains are the chains one process writes: one per component it runs.
type Chains struct {
	Dir     string
	account string
	ca      auditCertifier
	logs    map[string]*audit.Log
	expires map[string]time.Time // when each writer's certificate expires
	issuers map[string][]byte    // the key id of the CA that certified each writer
	tried   map[string]time.Time // when an early renewal for a newer CA was last tried
}

// OpenChains opens chains in dir, each with a writer key certified by ca, anchoring
// every digest in the store and in sinks.
func OpenChains(dir string, chains []string, p *Perimeter, account string, sinks []audit.AnchorStore, log *slog.Logger) (*Chains, error) {
	l := &Chains{Dir: dir, account: account, ca: p.Issuer, logs: map[string]*audit.Log{}, expires: map[string]time.Time{},
		issuers: map[string][]byte{}, tried: map[string]time.Time{}}
	anchors := append([]audit.AnchorStore{p.Store}, sinks...)
	for _, c := range chains {
		key, cert, err := WriterKey(p.Issuer, account, c)
		if err != nil {
			l.CloseAll(log)
			return nil, err
		}
		al, err := audit.Open(audit.Config{Dir: dir, Chain: c, Signer: key, Certificate: cert.Raw, Anchors: anchors, Logger: log})
		if err != nil {
			l.CloseAll(log)
			return nil, fmt.Errorf("open audit chain %s: %w", c, err)
		}
		l.logs[c], l.expires[c], l.issuers[c] = al, cert.NotAfter, cert.AuthorityKeyId
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
			if time.Until(l.expires[c]) > writerValidity/2 && !superseded {
				continue
			}
			if superseded {
				l.tried[c] = time.Now()
			}
			key, cert, err := WriterKey(l.ca, l.account, c)
			if err == nil {
				err = l.logs[c].SetSigner(key, cert.Raw)
			}
			if err != nil {
				log.Error("audit writer key not renewed; retrying", "chain", c, "expires", l.expires[c], "error", err)
				continue
			}
			l.expires[c], l.issuers[c] = cert.NotAfter, cert.AuthorityKeyId
			log.Info("audit writer key renewed", "chain", c, "key_id", audit.KeyID(key.Public().(ed25519.PublicKey)), "superseded_ca", superseded)
		}
	}
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
}
