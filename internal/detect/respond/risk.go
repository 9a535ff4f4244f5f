package respond

import (
	"context"
	"fmt"
	"time"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/export"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// Rank orders risk levels: low < medium < high < critical. Any other non-empty level
// ranks above none and below low, so it is kept but never outranks a known one
// (config.RiskRank, which the egress proxy compares levels on too).
func Rank(level string) int { return config.RiskRank(level) }

// roleKey names a role by account and name: a level set on a role ARN applies to its
// sessions, whose ARNs carry only the name (not the role's path).
type roleKey struct{ account, name string }

// riskView is an immutable snapshot of the risk levels, swapped whole.
type riskView struct {
	exact map[string]string  // principal ARN -> level
	roles map[roleKey]string // role -> level, from role ARNs
}

func (v *riskView) with(principal, level string) *riskView {
	n := &riskView{exact: make(map[string]string, len(v.exact)+1), roles: make(map[roleKey]string, len(v.roles))}
	for k, l := range v.exact {
		n.exact[k] = l
	}
	for k, l := range v.roles {
		n.roles[k] = l
	}
	n.add(principal, level)
	return n
}

func (v *riskView) add(principal, level string) {
	if p, ok := arn.Parse(principal); ok && p.Kind == "role" {
		k := roleKey{p.Account, p.Name}
		if Rank(level) > Rank(v.roles[k]) {
			v.roles[k] = level
		}
		return
	}
	if Rank(level) > Rank(v.exact[principal]) {
		v.exact[principal] = level
	}
}

func (v *riskView) level(principal string) string {
	l := v.exact[principal]
	if len(v.roles) == 0 {
		return l
	}
	if p, ok := arn.Parse(principal); ok && (p.Kind == "assumed-role" || p.Kind == "role") {
		if rl := v.roles[roleKey{p.Account, p.Name}]; Rank(rl) > Rank(l) {
			l = rl
		}
	}
	return l
}

// RiskLevel returns the principal's phantom:RiskLevel, "" when none was raised. For an
// assumed-role session ARN it is the higher of the session's own level and its role's.
// It reads an immutable snapshot: no lock, no I/O, no allocation (gateway.RiskSource).
func (r *Responder) RiskLevel(principalARN string) string {
	v := r.risk.Load()
	if len(v.exact) == 0 && len(v.roles) == 0 {
		return ""
	}
	return v.level(principalARN)
}

// raise sets the principal's level when it is higher than the current one, in memory at
// once and in the store for other processes.
func (r *Responder) raise(ctx context.Context, f detect.Finding, level string, params map[string]any) (outcome, bool) {
	principal := export.Principal(f)
	params["riskLevel"] = level
	if principal == "" {
		return notApplicable("the finding names no principal"), true
	}
	r.riskMu.Lock()
	defer r.riskMu.Unlock()
	cur := r.risk.Load()
	prev := cur.exact[principal]
	if Rank(prev) >= Rank(level) {
		return outcome{response: map[string]any{"riskLevel": prev, "unchanged": true}}, true
	}
	// In memory first: the gateway in this process applies it on the next request even
	// if the store write fails (failing closed); the write is retried on the next report.
	r.risk.Store(cur.with(principal, level))
	if err := r.cfg.Store.PutRiskLevel(ctx, store.RiskLevel{Principal: principal, Level: level, FindingID: f.ID, SetAt: r.now()}); err != nil {
		return outcome{code: "InternalFailure", message: err.Error()}, false
	}
	return outcome{response: map[string]any{"riskLevel": level, "previousRiskLevel": prev}}, true
}

// Refresh reloads the risk levels from the store, so levels raised or cleared by another
// process apply here.
func (r *Responder) Refresh(ctx context.Context) error {
	v, err := r.cfg.Store.Version(ctx)
	if err != nil {
		return fmt.Errorf("refresh risk levels: %w", err)
	}
	// Hold the writers' lock across the read, so a level raised meanwhile is not
	// replaced by a snapshot read before it.
	r.riskMu.Lock()
	defer r.riskMu.Unlock()
	levels, err := r.cfg.Store.ListRiskLevels(ctx)
	if err != nil {
		return fmt.Errorf("refresh risk levels: %w", err)
	}
	n := &riskView{exact: make(map[string]string, len(levels)), roles: map[roleKey]string{}}
	for _, l := range levels {
		n.add(l.Principal, l.Level)
	}
	r.risk.Store(n)
	r.version.Store(v)
	return nil
}

// Run refreshes the risk levels whenever the store's change counter moves, polling every
// interval (DefaultRefreshInterval when <= 0), until ctx is done. Errors are logged and
// retried on the next tick.
func (r *Responder) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultRefreshInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if v, err := r.cfg.Store.Version(ctx); err != nil {
			if ctx.Err() == nil {
				r.log.Warn("risk levels: read store version", "err", err)
			}
		} else if v != r.version.Load() {
			if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("risk levels: refresh", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
