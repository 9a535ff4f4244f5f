package admin

import (
	"context"
	"fmt"
	"os"
	"os/user"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/requestid"
)

// AuditChain is the chain administrative operations that change who may do what record
// themselves in: one process at a time writes it, so each command opens it, records
// one event and closes it.
const AuditChain = "admin"

// EventSource is the eventSource of the administrative events.
const EventSource = "admin.phantom.amazonaws.com"

// record writes one administrative event: who ran the command (the operating-system user
// and host: a command run on a perimeter host holds the master key, which is its
// authority), what it was asked and what it did. Nothing is written without AuditDir.
func (a *Admin) record(ctx context.Context, name string, params, resp map[string]any) error {
	if a.auditDir == "" {
		return nil
	}
	signer, err := audit.DeriveSigner(a.mk)
	if err != nil {
		return err
	}
	l, err := audit.Open(audit.Config{Dir: a.auditDir, Chain: AuditChain, Signer: signer, Now: a.now})
	if err != nil {
		return fmt.Errorf("open audit chain %s: %w", AuditChain, err)
	}
	ev := &audit.Event{
		EventVersion:       audit.EventVersion,
		UserIdentity:       audit.UserIdentity{Type: "PhantomOperator", PrincipalID: operator(), AccountID: a.spec.Account},
		EventTime:          a.now().UTC(),
		EventSource:        EventSource,
		EventName:          name,
		AWSRegion:          a.spec.Region,
		SourceIPAddress:    hostname(),
		UserAgent:          "phantom-cli",
		RequestParameters:  params,
		ResponseElements:   resp,
		RequestID:          requestid.New(),
		EventID:            requestid.New(),
		EventType:          "AwsApiCall",
		ManagementEvent:    true,
		RecipientAccountID: a.spec.Account,
		EventCategory:      "Management",
	}
	rerr := l.Record(ctx, ev)
	if err := l.Close(); rerr == nil {
		rerr = err
	}
	return rerr
}

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
