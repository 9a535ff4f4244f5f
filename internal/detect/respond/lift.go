package respond

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/detect/export"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// Lifting a response's effect: the break-glass for a response that hit the wrong
// principal (`phantom findings lift`). What can be lifted is put back as it was before the
// response; the finding keeps its record of the actions, so its repeats do not apply them
// again (protect the principal, detection.protectedPrincipals, against new findings).
//
//   - disableAccessKey: the key is made Active again.
//   - raiseRiskLevel: the level is cleared, when it is still the one this finding raised.
//   - revokeSessions cannot be lifted: the revoked sessions include the one that was
//     stolen, and lifting would let it in again. Their holders get new ones: a node's agent
//     already has, people assume the role again.
//   - notify and report-mode records have no effect to lift.

// LiftStore is what Lift needs of the store (store.Store).
type LiftStore interface {
	GetFinding(ctx context.Context, id string) (store.Finding, error)
	ListFindingResponses(ctx context.Context, findingID string) ([]string, error)
	MarkFindingResponse(ctx context.Context, findingID, action string, at time.Time) (bool, error)
	GetAccessKey(ctx context.Context, id string) (store.AccessKey, error)
	UpdateAccessKeyStatus(ctx context.Context, id, status string) error
	ListRiskLevels(ctx context.Context) ([]store.RiskLevel, error)
	DeleteRiskLevel(ctx context.Context, principal string) error
}

// Lift results.
const (
	Lifted      = "Lifted"
	NotLiftable = "NotLiftable"
	NothingLeft = "NothingToLift"
)

// LiftResult says what became of one applied action.
type LiftResult struct {
	Action string
	Result string // Lifted, NotLiftable or NothingToLift
	Detail string
}

// Lift lifts the effects of the responses applied to a finding, as far as they can be.
func Lift(ctx context.Context, st LiftStore, findingID string, now time.Time) ([]LiftResult, error) {
	rec, err := st.GetFinding(ctx, findingID)
	if err != nil {
		return nil, fmt.Errorf("lift responses of finding %s: %w", findingID, err)
	}
	applied, err := st.ListFindingResponses(ctx, findingID)
	if err != nil {
		return nil, fmt.Errorf("lift responses of finding %s: %w", findingID, err)
	}
	f, err := fromRecord(rec)
	if err != nil {
		return nil, err
	}
	var out []LiftResult
	for _, key := range applied {
		if strings.HasPrefix(key, "lifted:") || slices.Contains(applied, "lifted:"+key) {
			continue
		}
		res := LiftResult{Action: key}
		action, level, _ := strings.Cut(key, ":")
		switch {
		case strings.HasPrefix(key, "report:"):
			res.Result, res.Detail = NothingLeft, "report mode: nothing was done"
		case action == "disableAccessKey":
			res.Result, res.Detail, err = liftKey(ctx, st, f.keyID)
		case action == "raiseRiskLevel":
			res.Result, res.Detail, err = liftRisk(ctx, st, f.principal, level, findingID)
		case action == "revokeSessions":
			res.Result, res.Detail = NotLiftable, "revoked sessions stay revoked: they include the session that was stolen; holders get new ones (a node's agent already has, people assume the role again)"
		default:
			res.Result, res.Detail = NothingLeft, "no lasting effect"
		}
		if err != nil {
			return out, fmt.Errorf("lift %s of finding %s: %w", key, findingID, err)
		}
		if res.Result == Lifted {
			if _, err := st.MarkFindingResponse(ctx, findingID, "lifted:"+key, now); err != nil {
				return out, fmt.Errorf("record the lift of %s of finding %s: %w", key, findingID, err)
			}
		}
		out = append(out, res)
	}
	return out, nil
}

type liftTarget struct{ keyID, principal string }

func fromRecord(rec store.Finding) (liftTarget, error) {
	var t liftTarget
	t.principal = rec.Principal
	f, err := export.FromStore(rec)
	if err != nil {
		return t, err
	}
	if d := f.Resource.AccessKeyDetails; d != nil {
		t.keyID = d.AccessKeyID
		if d.PrincipalARN != "" {
			t.principal = d.PrincipalARN
		}
	}
	return t, nil
}

func liftKey(ctx context.Context, st LiftStore, id string) (string, string, error) {
	k, err := st.GetAccessKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return NothingLeft, "access key " + id + " no longer exists", nil
	}
	if err != nil {
		return "", "", err
	}
	if k.Status == store.StatusActive {
		return NothingLeft, "access key " + id + " is already Active", nil
	}
	if err := st.UpdateAccessKeyStatus(ctx, id, store.StatusActive); err != nil {
		return "", "", err
	}
	return Lifted, "access key " + id + " is Active again", nil
}

func liftRisk(ctx context.Context, st LiftStore, principal, level, findingID string) (string, string, error) {
	levels, err := st.ListRiskLevels(ctx)
	if err != nil {
		return "", "", err
	}
	for _, l := range levels {
		if l.Principal != principal {
			continue
		}
		if l.FindingID != findingID {
			return NotLiftable, fmt.Sprintf("the risk level of %s is now %s, raised by finding %s", principal, l.Level, l.FindingID), nil
		}
		if err := st.DeleteRiskLevel(ctx, principal); err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", "", err
		}
		return Lifted, fmt.Sprintf("the %s risk level of %s is cleared", l.Level, principal), nil
	}
	return NothingLeft, "no risk level is set for " + principal, nil
}
