package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Agent implements agent.Metrics:
//
//	phantom_agent_credential_refreshes_total{result}          counter (success | error)
//	phantom_agent_credential_refresh_duration_seconds          histogram
//	phantom_agent_credentials_expiry_seconds                   gauge (0: none to serve)
type Agent struct {
	refreshes *prometheus.CounterVec
	success   prometheus.Counter
	failure   prometheus.Counter
	duration  prometheus.Histogram
}

// NewAgent registers the credential agent's collectors on reg. expiry returns when the
// credentials the agent serves now expire (zero when it has none to serve).
func NewAgent(reg prometheus.Registerer, expiry func() time.Time) *Agent {
	a := &Agent{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "agent", Name: "credential_refreshes_total",
			Help: "Credential requests to STS by result (success, error).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "agent", Name: "credential_refresh_duration_seconds",
			Help:    "Duration of credential requests to STS.",
			Buckets: networkBuckets,
		}),
	}
	a.success, a.failure = a.refreshes.WithLabelValues("success"), a.refreshes.WithLabelValues("error")
	reg.MustRegister(a.refreshes, a.duration, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "agent", Name: "credentials_expiry_seconds",
		Help: "Seconds until the credentials the agent serves expire; 0 when it has none to serve.",
	}, func() float64 {
		t := expiry()
		if t.IsZero() {
			return 0
		}
		return max(time.Until(t).Seconds(), 0)
	}))
	return a
}

// Refresh counts one credential request to STS.
func (a *Agent) Refresh(err error, d time.Duration) {
	if a == nil {
		return
	}
	if err != nil {
		a.failure.Inc()
	} else {
		a.success.Inc()
	}
	a.duration.Observe(d.Seconds())
}
