// Package metrics implements the components' metrics hooks with Prometheus collectors.
// Each component declares the small interface it calls (gateway.Metrics, sts.Metrics,
// endpoint.Metrics, egress.Metrics, agent.Metrics, consume.Metrics); this package has one
// struct per component, made from the process's registry, that satisfies it. There is no
// global registry: internal/perimeter makes one per process (NewRegistry) and serves it.
//
// Labels are bounded vocabularies only: API ids and endpoint ids from the spec, audit
// error codes, actions, results, chain names, gateway replica addresses from the flags.
// Never a principal, an access key, an address of a caller or a path. A value outside a
// plain token's alphabet becomes "other", and past maxSeries label sets per metric every
// new one is folded into an "other" set, so a bug or an attacker cannot grow the series
// without bound.
//
// Hot paths: the labelled children are built once per label set and cached in an
// immutable map swapped under a mutex, so an observation is one lock-free map read, an
// atomic add and (for histograms) a bucket search, with no allocation.
//
// It does not serve the registry (internal/perimeter's ops listener does) or decide what is
// ready.
package metrics

import (
	"maps"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/phantom-perimeter/phantom/internal/buildinfo"
)

// namespace prefixes every metric: phantom_<component>_<what>_<unit>.
const namespace = "phantom"

// Other is the label value a value outside the vocabulary, or past the series bound,
// is counted under.
const Other = "other"

// maxSeries bounds the label sets of one metric.
const maxSeries = 512

// Latency buckets, in seconds. In-process decisions (policy evaluation and an audit
// append) take tens of microseconds to a few milliseconds; network exchanges
// (backends, the gateway behind an endpoint, STS from the agent, store commits) take
// milliseconds to seconds.
var (
	decisionBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}
	networkBuckets  = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
)

// NewRegistry returns a process's registry with the Go runtime and process collectors
// and phantom_build_info.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
	)
	return reg
}

// buildInfo is phantom_build_info{version, revision, goversion} 1.
func buildInfo() prometheus.Collector {
	bi := buildinfo.Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   namespace,
		Name:        "build_info",
		Help:        "Phantom's build: version, VCS revision and Go version, as labels; always 1.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	g.Set(1)
	return g
}

// token returns v when it is a plain token (letters, digits and ._:/- , at most 128
// bytes: the alphabet of error codes, API and endpoint ids, finding types, chain names
// and host:port addresses), else Other. "" stays "" (no reason, for an allowed call).
func token(v string) string {
	if len(v) > 128 {
		return Other
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '_' || c == ':' || c == '/' || c == '-':
		default:
			return Other
		}
	}
	return v
}

// series caches the children of one metric by label tuple K. get is lock-free and
// allocation-free for a tuple seen before. A new tuple is bounded (its values made
// tokens by bound) and, once maxSeries bounded tuples exist, folded by overflow; the
// raw tuple is remembered (up to 4*maxSeries of them) so it takes the fast path next
// time.
type series[K comparable, V any] struct {
	bound    func(K) K // values outside the vocabulary -> Other
	overflow func(K) K // the tuple past the bound: free-form values -> Other
	child    func(K) V // the collectors' children of a bounded tuple

	fast atomic.Pointer[map[K]V] // raw tuple -> children; replaced, never mutated

	mu   sync.Mutex
	made map[K]V // bounded tuple -> children
}

func newSeries[K comparable, V any](bound, overflow func(K) K, child func(K) V) *series[K, V] {
	s := &series[K, V]{bound: bound, overflow: overflow, child: child, made: map[K]V{}}
	s.fast.Store(&map[K]V{})
	return s
}

func (s *series[K, V]) get(k K) V {
	if v, ok := (*s.fast.Load())[k]; ok {
		return v
	}
	return s.slow(k)
}

func (s *series[K, V]) slow(k K) V {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.fast.Load()
	if v, ok := old[k]; ok {
		return v
	}
	b := s.bound(k)
	v, ok := s.made[b]
	if !ok && len(s.made) >= maxSeries {
		b = s.overflow(b)
		v, ok = s.made[b]
	}
	if !ok {
		v = s.child(b)
		s.made[b] = v
	}
	if len(old) < 4*maxSeries {
		next := make(map[K]V, len(old)+1)
		maps.Copy(next, old)
		next[k] = v
		s.fast.Store(&next)
	}
	return v
}
