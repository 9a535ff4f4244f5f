package respond

import (
	"fmt"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// Rate caps: a response acts on at most MaxPerHour findings in any hour. Kept in memory
// per responder (one detector process): a restart starts the count again, and replicas
// each count their own. The caller holds r.mu.

const rateWindowSize = time.Hour

// rateWindow is one response's findings acted on in the last hour.
type rateWindow struct {
	at  []time.Time          // when each was admitted, oldest first
	ids map[string]time.Time // finding id -> when it was admitted
}

// rateKey names a response by what it is, so an unchanged response keeps its count across
// spec reloads.
func rateKey(rsp *config.Response) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%g|%s|%s|%s", rsp.FindingType, rsp.MinSeverity, rsp.RiskLevel, rsp.Webhook, rsp.Mode)
	for _, a := range rsp.Actions {
		b.WriteString("|" + string(a))
	}
	return b.String()
}

// admit reports whether rsp may act on finding id now: it already did within the hour
// (its other actions come free), or the response is under its cap (the finding is
// counted).
func (r *Responder) admit(rsp *config.Response, id string) bool {
	now := r.now()
	k := rateKey(rsp)
	w := r.rates[k]
	if w == nil {
		w = &rateWindow{ids: map[string]time.Time{}}
		r.rates[k] = w
	}
	n := 0
	for n < len(w.at) && now.Sub(w.at[n]) >= rateWindowSize {
		n++
	}
	w.at = w.at[n:]
	for fid, at := range w.ids {
		if now.Sub(at) >= rateWindowSize {
			delete(w.ids, fid)
		}
	}
	if _, ok := w.ids[id]; ok {
		return true
	}
	limit := rsp.MaxPerHour
	if limit <= 0 {
		limit = config.DefaultMaxPerHour
	}
	if len(w.at) >= limit {
		return false
	}
	w.at = append(w.at, now)
	w.ids[id] = now
	return true
}

// throttleOnce reports whether a throttled action on a finding should be audited: once
// per response, finding and action in an hour, so a finding repeating in a flood does
// not flood the audit chain too.
func (r *Responder) throttleOnce(rsp *config.Response, id string, a config.Action) bool {
	now := r.now()
	if now.Sub(r.throttlePruned) >= time.Minute {
		r.throttlePruned = now
		for k, at := range r.throttled {
			if now.Sub(at) >= rateWindowSize {
				delete(r.throttled, k)
			}
		}
	}
	k := rateKey(rsp) + "|" + id + "|" + string(a)
	if _, ok := r.throttled[k]; ok {
		return false
	}
	r.throttled[k] = now
	return true
}
