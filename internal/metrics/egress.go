package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Egress implements egress.Metrics:
//
//	phantom_egress_requests_total{method, result, reason}     counter
//	phantom_egress_decision_duration_seconds{method, result}  histogram
//
// method is connect (CONNECT tunnels) or forward (absolute-form http:// requests);
// result allow, deny or error; reason the audit errorCode (DestinationNotAllowed,
// AddressNotAllowed, ProxyAuthenticationRequired, ...).
type Egress struct {
	decisions *series[gatewayKey, decisionChildren]
}

// NewEgress registers the egress proxy's collectors on reg.
func NewEgress(reg prometheus.Registerer) *Egress {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "egress", Name: "requests_total",
		Help: "Egress proxy decisions by method (connect, forward), result (allow, deny, error) and reason (the audit errorCode).",
	}, []string{"method", "result", "reason"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "egress", Name: "decision_duration_seconds",
		Help:    "Time from a proxy request's arrival to its recorded decision (name resolution and, for an allowed tunnel, the dial included), by method and result.",
		Buckets: networkBuckets,
	}, []string{"method", "result"})
	reg.MustRegister(requests, duration)
	return &Egress{decisions: newSeries(
		func(k gatewayKey) gatewayKey {
			return gatewayKey{oneOf(k.api, "connect", "forward"), result(k.result), token(k.reason)}
		},
		func(k gatewayKey) gatewayKey { return gatewayKey{k.api, k.result, Other} },
		func(k gatewayKey) decisionChildren {
			return decisionChildren{requests.WithLabelValues(k.api, k.result, k.reason), duration.WithLabelValues(k.api, k.result)}
		})}
}

// Decision counts one proxy decision and observes how long it took.
func (e *Egress) Decision(method, result, reason string, d time.Duration) {
	if e == nil {
		return
	}
	c := e.decisions.get(gatewayKey{method, result, reason})
	c.requests.Inc()
	c.duration.Observe(d.Seconds())
}
