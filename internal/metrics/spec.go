package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Spec exposes the perimeter spec a process enforces:
//
//	phantom_spec_info{digest}                   gauge, 1 for the digest in force ("sha256:<hex>")
//	phantom_spec_loaded_timestamp_seconds       gauge, when it was loaded
//	phantom_spec_replicas_disagreeing           gauge, live replicas enforcing another digest
//	                                            for longer than a reload interval (0: they agree)
//
// The digest label has one value at a time: the old one is removed when the spec changes.
type Spec struct {
	info     *prometheus.GaugeVec
	loaded   prometheus.Gauge
	disagree prometheus.Gauge

	mu     sync.Mutex
	digest string
}

// NewSpec registers the spec's collectors on reg.
func NewSpec(reg prometheus.Registerer) *Spec {
	s := &Spec{
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "spec", Name: "info",
			Help: "1 for the SHA-256 of the perimeter spec file this process enforces (compare across replicas).",
		}, []string{"digest"}),
		loaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "spec", Name: "loaded_timestamp_seconds",
			Help: "Unix time the spec in force was loaded.",
		}),
		disagree: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "spec", Name: "replicas_disagreeing",
			Help: "Live replicas enforcing another spec than this one for longer than a reload interval (0 while all agree).",
		}),
	}
	reg.MustRegister(s.info, s.loaded, s.disagree)
	return s
}

// Loaded records the spec now in force.
func (s *Spec) Loaded(digest string, at time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.digest != "" && s.digest != digest {
		s.info.DeleteLabelValues(s.digest)
	}
	s.digest = digest
	s.info.WithLabelValues(token(digest)).Set(1)
	s.loaded.Set(float64(at.UnixNano()) / 1e9)
}

// Disagreeing sets how many live replicas enforce another spec.
func (s *Spec) Disagreeing(n int) {
	if s == nil {
		return
	}
	s.disagree.Set(float64(n))
}
