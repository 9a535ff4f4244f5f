package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Endpoints holds the endpoint collectors of a process; For gives one endpoint's
// endpoint.Metrics (phantom up runs several endpoints on one registry):
//
//	phantom_endpoint_connections_total{endpoint, result, reason}   counter (accepted | refused)
//	phantom_endpoint_requests_total{endpoint, api, result, reason} counter (forwarded | refused)
//	phantom_endpoint_forward_duration_seconds{endpoint, api}       histogram
//	phantom_endpoint_gateway_up{endpoint, gateway}                 gauge (1: the last dial succeeded)
//	phantom_endpoint_gateway_dial_errors_total{endpoint, gateway}  counter
//
// reason is the audit errorCode of a refusal (SecurityGroupDenied, PlaintextRefused,
// VpceAccessDenied, GatewayUnreachable, ...); gateway a --gateway replica address. An
// endpoint in the gateway's process (phantom up, gateway --endpoint) dials no replica and
// reports neither gateway series.
type Endpoints struct {
	conns      *prometheus.CounterVec
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	up         *prometheus.GaugeVec
	dialErrors *prometheus.CounterVec
}

// NewEndpoints registers the endpoint collectors on reg.
func NewEndpoints(reg prometheus.Registerer) *Endpoints {
	e := &Endpoints{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "endpoint", Name: "connections_total",
			Help: "Connections to the endpoint's listeners, by result (accepted after the TLS handshake, refused) and reason (the audit errorCode of a refusal).",
		}, []string{"endpoint", "result", "reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "endpoint", Name: "requests_total",
			Help: "Requests by result (forwarded: the gateway answered; refused: the endpoint answered) and reason (the audit errorCode of a refusal).",
		}, []string{"endpoint", "api", "result", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "endpoint", Name: "forward_duration_seconds",
			Help:    "Duration of requests handed to the gateway, answered or not, by API.",
			Buckets: networkBuckets,
		}, []string{"endpoint", "api"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "endpoint", Name: "gateway_up",
			Help: "1 when the last connection to the gateway replica succeeded (TCP and mTLS), 0 when it failed.",
		}, []string{"endpoint", "gateway"}),
		dialErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "endpoint", Name: "gateway_dial_errors_total",
			Help: "Failed connections (TCP or mTLS) to a gateway replica.",
		}, []string{"endpoint", "gateway"}),
	}
	reg.MustRegister(e.conns, e.requests, e.duration, e.up, e.dialErrors)
	return e
}

// Endpoint implements endpoint.Metrics for one endpoint.
type Endpoint struct {
	conns    *series[reasonKey, prometheus.Counter]
	requests *series[endpointRequestKey, prometheus.Counter]
	duration *series[string, prometheus.Observer]
	replicas *series[string, replicaChildren]
}

type reasonKey struct{ result, reason string }

type endpointRequestKey struct{ api, result, reason string }

type replicaChildren struct {
	up     prometheus.Gauge
	errors prometheus.Counter
}

// For returns the metrics of endpoint id (a vpce- id).
func (e *Endpoints) For(id string) *Endpoint {
	id = token(id)
	return &Endpoint{
		conns: newSeries(
			func(k reasonKey) reasonKey { return reasonKey{oneOf(k.result, "accepted", "refused"), token(k.reason)} },
			func(k reasonKey) reasonKey { return reasonKey{k.result, Other} },
			func(k reasonKey) prometheus.Counter { return e.conns.WithLabelValues(id, k.result, k.reason) }),
		requests: newSeries(
			func(k endpointRequestKey) endpointRequestKey {
				return endpointRequestKey{token(k.api), oneOf(k.result, "forwarded", "refused"), token(k.reason)}
			},
			func(k endpointRequestKey) endpointRequestKey { return endpointRequestKey{Other, k.result, Other} },
			func(k endpointRequestKey) prometheus.Counter {
				return e.requests.WithLabelValues(id, k.api, k.result, k.reason)
			}),
		duration: newSeries(token, func(string) string { return Other },
			func(api string) prometheus.Observer { return e.duration.WithLabelValues(id, api) }),
		replicas: newSeries(token, func(string) string { return Other },
			func(gw string) replicaChildren {
				return replicaChildren{e.up.WithLabelValues(id, gw), e.dialErrors.WithLabelValues(id, gw)}
			}),
	}
}

// Connection counts a connection: accepted when reason is "", else refused for reason.
func (e *Endpoint) Connection(reason string) {
	if e == nil {
		return
	}
	res := "accepted"
	if reason != "" {
		res = "refused"
	}
	e.conns.get(reasonKey{res, reason}).Inc()
}

// Request counts a request: forwarded when reason is "", else refused for reason.
func (e *Endpoint) Request(api, reason string) {
	if e == nil {
		return
	}
	res := "forwarded"
	if reason != "" {
		res = "refused"
	}
	e.requests.get(endpointRequestKey{api, res, reason}).Inc()
}

// Forward observes the duration of a request handed to the gateway.
func (e *Endpoint) Forward(api string, d time.Duration) {
	if e == nil {
		return
	}
	e.duration.get(api).Observe(d.Seconds())
}

// Replica records a connection attempt to gateway replica addr.
func (e *Endpoint) Replica(addr string, err error) {
	if e == nil {
		return
	}
	c := e.replicas.get(addr)
	if err != nil {
		c.up.Set(0)
		c.errors.Inc()
		return
	}
	c.up.Set(1)
}

// oneOf returns v when it is one of vs, else Other.
func oneOf(v string, vs ...string) string {
	for _, w := range vs {
		if v == w {
			return v
		}
	}
	return Other
}
