package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Gateway implements gateway.Metrics:
//
//	phantom_gateway_requests_total{api, result, reason}          counter
//	phantom_gateway_decision_duration_seconds{api, result}       histogram
//	phantom_gateway_backend_duration_seconds{api, status_class}  histogram
//
// result is allow, deny or error; reason the audit event's errorCode ("" when allowed);
// api the spec's API id ("" when the request named none); status_class the backend's
// answer as 2xx..5xx, or "none" when it never answered.
type Gateway struct {
	decisions *series[gatewayKey, decisionChildren]
	backends  *series[backendKey, prometheus.Observer]
}

type gatewayKey struct{ api, result, reason string }

type decisionChildren struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

type backendKey struct {
	api    string
	status int
}

// NewGateway registers the gateway's collectors on reg.
func NewGateway(reg prometheus.Registerer) *Gateway {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "gateway", Name: "requests_total",
		Help: "Requests the gateway decided, by API, result (allow, deny, error) and reason (the audit errorCode).",
	}, []string{"api", "result", "reason"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "gateway", Name: "decision_duration_seconds",
		Help:    "Time from a request's arrival to its recorded decision (authorization and the audit append), by API and result.",
		Buckets: decisionBuckets,
	}, []string{"api", "result"})
	backend := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "gateway", Name: "backend_duration_seconds",
		Help:    "Duration of allowed requests' exchanges with their backends, by API and the backend's status class (none: no answer).",
		Buckets: networkBuckets,
	}, []string{"api", "status_class"})
	reg.MustRegister(requests, duration, backend)
	return &Gateway{
		decisions: newSeries(
			func(k gatewayKey) gatewayKey { return gatewayKey{token(k.api), result(k.result), token(k.reason)} },
			func(k gatewayKey) gatewayKey { return gatewayKey{Other, k.result, Other} },
			func(k gatewayKey) decisionChildren {
				return decisionChildren{requests.WithLabelValues(k.api, k.result, k.reason), duration.WithLabelValues(k.api, k.result)}
			}),
		backends: newSeries(
			func(k backendKey) backendKey { return backendKey{token(k.api), classOf(k.status)} },
			func(k backendKey) backendKey { return backendKey{Other, k.status} },
			func(k backendKey) prometheus.Observer { return backend.WithLabelValues(k.api, statusClass(k.status)) }),
	}
}

// Decision counts one decision and observes how long it took.
func (g *Gateway) Decision(api, result, reason string, d time.Duration) {
	if g == nil {
		return
	}
	c := g.decisions.get(gatewayKey{api, result, reason})
	c.requests.Inc()
	c.duration.Observe(d.Seconds())
}

// Backend observes one backend exchange; status 0 means the backend never answered.
func (g *Gateway) Backend(api string, status int, d time.Duration) {
	if g == nil {
		return
	}
	g.backends.get(backendKey{api, status}).Observe(d.Seconds())
}

// result bounds a result label: allow, deny, error, or Other.
func result(r string) string {
	switch r {
	case "allow", "deny", "error":
		return r
	}
	return Other
}

// classOf is the first status of status's class (200 for 204), 0 for no valid status.
func classOf(status int) int {
	if status < 100 || status > 599 {
		return 0
	}
	return status / 100 * 100
}

// statusClass is 1xx..5xx, or "none" for no status.
func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "none"
	}
	return strconv.Itoa(status/100) + "xx"
}
