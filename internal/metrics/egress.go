package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Egress implements egress.Metrics:
//
//	phantom_egress_requests_total{method, result, reason, role}  counter
//	phantom_egress_decision_duration_seconds{method, result}     histogram
//
// method is connect (CONNECT tunnels) or forward (absolute-form http:// requests);
// result allow, report (forwarded in report mode though the rules would refuse), deny or
// error; reason the audit errorCode (DestinationNotAllowed, AddressNotAllowed,
// ProxyAuthenticationRequired, ...; for report, the code that would have refused); role
// the node's role in the spec, "" before a node is identified. Roles come from the spec
// (a bounded set); past the series bound they fold into "other" like every label.
type Egress struct {
	decisions *series[egressKey, decisionChildren]
}

type egressKey struct{ method, result, reason, role string }

// NewEgress registers the egress proxy's collectors on reg.
func NewEgress(reg prometheus.Registerer) *Egress {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "egress", Name: "requests_total",
		Help: "Egress proxy decisions by method (connect, forward), result (allow, report, deny, error), reason (the audit errorCode) and the node's role.",
	}, []string{"method", "result", "reason", "role"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "egress", Name: "decision_duration_seconds",
		Help:    "Time from a proxy request's arrival to its recorded decision (name resolution and, for an allowed tunnel, the dial included), by method and result.",
		Buckets: networkBuckets,
	}, []string{"method", "result"})
	reg.MustRegister(requests, duration)
	return &Egress{decisions: newSeries(
		func(k egressKey) egressKey {
			return egressKey{oneOf(k.method, "connect", "forward"), oneOf(k.result, "allow", "report", "deny", "error"), token(k.reason), token(k.role)}
		},
		func(k egressKey) egressKey { return egressKey{k.method, k.result, Other, Other} },
		func(k egressKey) decisionChildren {
			return decisionChildren{requests.WithLabelValues(k.method, k.result, k.reason, k.role), duration.WithLabelValues(k.method, k.result)}
		})}
}

// Decision counts one proxy decision and observes how long it took.
func (e *Egress) Decision(method, result, reason, role string, d time.Duration) {
	if e == nil {
		return
	}
	c := e.decisions.get(egressKey{method, result, reason, role})
	c.requests.Inc()
	c.duration.Observe(d.Seconds())
}
