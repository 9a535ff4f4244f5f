package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Freshness is the state a component decides on, as the store last confirmed it.
type Freshness struct {
	// SyncedAt is when the store last confirmed the state (identity.Service.SyncedAt);
	// zero before the first load.
	SyncedAt func() time.Time
	// Fresh is nil while the component may decide on its state (identity.Service.Fresh,
	// or the gateway's check, which adds risk levels).
	Fresh func() error
	// Reachable is how recently the store must have confirmed the state to count as
	// reachable: two polls and an attempt's timeout.
	Reachable time.Duration
}

// RegisterFreshness registers, computed at each scrape:
//
//	phantom_identity_sync_age_seconds      seconds since the store last confirmed the state
//	phantom_identity_store_reachable       1 when that is within f.Reachable, else 0
//	phantom_identity_state_fresh           1 while the component may decide on its state, else 0
func RegisterFreshness(reg prometheus.Registerer, f Freshness) {
	age := func() float64 {
		t := f.SyncedAt()
		if t.IsZero() {
			return 0
		}
		return max(time.Since(t).Seconds(), 0)
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "identity", Name: "sync_age_seconds",
			Help: "Seconds since the store last confirmed the credentials, revocations and sealing keys this process decides on.",
		}, age),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "identity", Name: "store_reachable",
			Help: "1 when the store confirmed the state within two polls (and an attempt's timeout), else 0.",
		}, func() float64 { return bool01(!f.SyncedAt().IsZero() && age() <= f.Reachable.Seconds()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "identity", Name: "state_fresh",
			Help: "1 while the state is within --max-stale and calls are decided, 0 when they are refused as stale.",
		}, func() float64 { return bool01(f.Fresh() == nil) }),
	)
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
