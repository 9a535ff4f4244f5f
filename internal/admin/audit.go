package admin

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/requestid"
)

// AuditChain is the chain administrative operations that change who may do what record
// themselves in: one process at a time writes it, so each command opens it, records
// one event and closes it.
const AuditChain = "admin"

// EventSource is the eventSource of the administrative events.
const EventSource = "admin.phantom.amazonaws.com"

// record writes one administrative event of this data directory (nothing without
// AuditDir).
func (a *Admin) record(ctx context.Context, name string, params, resp map[string]any) error {
	if a.auditDir == "" {
		return nil
	}
	return Record(ctx, AuditTarget{Dir: a.auditDir, MasterKey: a.mk, Account: a.spec.Account, Region: a.spec.Region, Now: a.now}, name, params, resp)
}

// AuditTarget says where administrative events are recorded: the audit directory, the
// master key the chain's digests are signed with (keys.AuditLegacy), and the account
// and region the events are about.
type AuditTarget struct {
	Dir       string
	MasterKey []byte
	Account   string
	Region    string
	Now       func() time.Time // nil: time.Now
}

// Record writes one administrative event in the chain AuditChain (OpenRecorder, Record,
// Close).
func Record(ctx context.Context, t AuditTarget, name string, params, resp map[string]any) error {
	r, err := OpenRecorder(t)
	if err != nil {
		return err
	}
	rerr := r.Record(ctx, name, params, resp)
	if err := r.Close(); rerr == nil {
		rerr = err
	}
	return rerr
}

// Recorder writes administrative events: who ran the command (the operating-system user
// and host: a command run on a perimeter host holds the master key, which is its
// authority), what it was asked and what it did. It holds the chain AuditChain (one
// writer at a time): open it before acting, so an action that could not be recorded is
// not taken.
type Recorder struct {
	t   AuditTarget
	now func() time.Time
	log *audit.Log
}

// OpenRecorder opens the chain AuditChain in t.Dir.
func OpenRecorder(t AuditTarget) (*Recorder, error) {
	now := t.Now
	if now == nil {
		now = time.Now
	}
	// An operator's command holds the master key; its chain is signed with the key
	// derived for audit writers from before per-writer keys (keys.AuditLegacy), which
	// `phantom audit public-key` prints for pinning.
	signer, err := keys.DeriveEd25519(t.MasterKey, keys.AuditLegacy)
	if err != nil {
		return nil, err
	}
	l, err := audit.Open(audit.Config{Dir: t.Dir, Chain: AuditChain, Signer: signer, Now: now})
	if err != nil {
		return nil, fmt.Errorf("open audit chain %s: %w", AuditChain, err)
	}
	return &Recorder{t: t, now: now, log: l}, nil
}

// Record writes one event.
func (r *Recorder) Record(ctx context.Context, name string, params, resp map[string]any) error {
	return r.log.Record(ctx, &audit.Event{
		EventVersion:       audit.EventVersion,
		UserIdentity:       audit.UserIdentity{Type: "PhantomOperator", PrincipalID: operator(), AccountID: r.t.Account},
		EventTime:          r.now().UTC(),
		EventSource:        EventSource,
		EventName:          name,
		AWSRegion:          r.t.Region,
		SourceIPAddress:    hostname(),
		UserAgent:          "phantom-cli",
		RequestParameters:  params,
		ResponseElements:   resp,
		RequestID:          requestid.New(),
		EventID:            requestid.New(),
		EventType:          "AwsApiCall",
		ManagementEvent:    true,
		RecipientAccountID: r.t.Account,
		EventCategory:      "Management",
	})
}

// Close signs the chain's last digest and releases it.
func (r *Recorder) Close() error { return r.log.Close() }

// operator names who runs the command: user@host.
func operator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	return name + "@" + hostname()
}

func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}
