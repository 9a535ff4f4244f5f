package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// STS implements sts.Metrics:
//
//	phantom_sts_requests_total{action, result, code}   counter
//	phantom_sts_request_duration_seconds{action}       histogram
//
// action is the STS action (AssumeRole, AssumeRoleWithWebIdentity, GetSessionToken,
// GetCallerIdentity, DecodeAuthorizationMessage; the node API's EnrollNode,
// RenewNodeCertificate and NodeCredentials; other); result allow, deny or error; code
// the audit errorCode. Credentials issued are the allowed AssumeRole*,
// GetSessionToken and NodeCredentials calls.
type STS struct {
	calls *series[stsKey, decisionChildren]
}

type stsKey struct{ action, result, code string }

// NewSTS registers the STS collectors on reg.
func NewSTS(reg prometheus.Registerer) *STS {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "sts", Name: "requests_total",
		Help: "STS calls by action, result (allow: answered, credentials issued for the issuing actions; deny; error) and code (the audit errorCode).",
	}, []string{"action", "result", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "sts", Name: "request_duration_seconds",
		Help:    "Time to answer an STS call, audit append included, by action.",
		Buckets: decisionBuckets,
	}, []string{"action"})
	reg.MustRegister(requests, duration)
	return &STS{calls: newSeries(
		func(k stsKey) stsKey { return stsKey{token(k.action), result(k.result), token(k.code)} },
		func(k stsKey) stsKey { return stsKey{Other, k.result, Other} },
		func(k stsKey) decisionChildren {
			return decisionChildren{requests.WithLabelValues(k.action, k.result, k.code), duration.WithLabelValues(k.action)}
		})}
}

// Request counts one STS call and observes how long it took.
func (s *STS) Request(action, result, code string, d time.Duration) {
	if s == nil {
		return
	}
	c := s.calls.get(stsKey{action, result, code})
	c.requests.Inc()
	c.duration.Observe(d.Seconds())
}
