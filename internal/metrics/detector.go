package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Detector implements consume.Metrics:
//
//	phantom_detector_events_total{chain}                    counter (committed)
//	phantom_detector_chain_position{chain}                  gauge (last committed record's seq)
//	phantom_detector_findings_total{type, severity}         counter
//	phantom_detector_commit_duration_seconds{result}        histogram (ok | error)
//	phantom_detector_last_commit_timestamp_seconds          gauge
//	phantom_detector_chain_damage_total{chain}              counter (damage found: a chain cut, emptied, rewritten, deleted)
//	phantom_detector_chain_unread{chain}                    gauge (1 while the chain is not being read)
//
// severity is GuardDuty's band: low (< 4), medium (< 7), high. A finding repeated in a
// later batch counts again (its count went up).
type Detector struct {
	events     *series[string, chainChildren]
	findings   *series[reasonKey, prometheus.Counter]
	commits    *prometheus.HistogramVec
	lastCommit prometheus.Gauge
}

type chainChildren struct {
	events   prometheus.Counter
	position prometheus.Gauge
	damage   prometheus.Counter
	unread   prometheus.Gauge
}

// NewDetector registers the streaming detector's collectors on reg.
func NewDetector(reg prometheus.Registerer) *Detector {
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "detector", Name: "events_total",
		Help: "Audit events consumed and committed, by chain.",
	}, []string{"chain"})
	position := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "detector", Name: "chain_position",
		Help: "Sequence number of the last committed record of each chain (compare with the chain's head for the lag).",
	}, []string{"chain"})
	damage := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "detector", Name: "chain_damage_total",
		Help: "Damage found in audit chains (cut short, emptied, rewritten, records or the whole chain missing), by chain; each raised a Stealth:IAMUser/AuditLogTampered finding.",
	}, []string{"chain"})
	unread := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "detector", Name: "chain_unread",
		Help: "1 while the detector cannot read an audit chain (damaged and not continued yet, missing, unreadable): its events go undetected.",
	}, []string{"chain"})
	findings := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "detector", Name: "findings_total",
		Help: "Findings committed (new or repeated), by GuardDuty finding type and severity band (low, medium, high).",
	}, []string{"type", "severity"})
	d := &Detector{
		commits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "detector", Name: "commit_duration_seconds",
			Help:    "Duration of committing a batch (cursors and findings in one store transaction, retries included), by result (ok, error).",
			Buckets: networkBuckets,
		}, []string{"result"}),
		lastCommit: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "detector", Name: "last_commit_timestamp_seconds",
			Help: "Unix time of the last successful commit.",
		}),
	}
	reg.MustRegister(events, position, damage, unread, findings, d.commits, d.lastCommit)
	d.events = newSeries(token, func(string) string { return Other },
		func(chain string) chainChildren {
			return chainChildren{events.WithLabelValues(chain), position.WithLabelValues(chain), damage.WithLabelValues(chain), unread.WithLabelValues(chain)}
		})
	d.findings = newSeries(
		func(k reasonKey) reasonKey { return reasonKey{token(k.result), k.reason} },
		func(k reasonKey) reasonKey { return reasonKey{Other, k.reason} },
		func(k reasonKey) prometheus.Counter { return findings.WithLabelValues(k.result, k.reason) })
	return d
}

// Committed counts the events a commit took from chain, up to record seq.
func (d *Detector) Committed(chain string, events int64, seq uint64) {
	if d == nil {
		return
	}
	c := d.events.get(chain)
	c.events.Add(float64(events))
	c.position.Set(float64(seq))
}

// Damaged counts damage found in chain.
func (d *Detector) Damaged(chain string) {
	if d == nil {
		return
	}
	d.events.get(chain).damage.Inc()
}

// Unread sets whether chain is not being read.
func (d *Detector) Unread(chain string, unread bool) {
	if d == nil {
		return
	}
	v := 0.0
	if unread {
		v = 1
	}
	d.events.get(chain).unread.Set(v)
}

// Finding counts one committed finding.
func (d *Detector) Finding(typ string, severity float64) {
	if d == nil {
		return
	}
	d.findings.get(reasonKey{typ, severityBand(severity)}).Inc()
}

// Commit observes one commit.
func (d *Detector) Commit(dur time.Duration, err error) {
	if d == nil {
		return
	}
	res := "ok"
	if err != nil {
		res = "error"
	} else {
		d.lastCommit.SetToCurrentTime()
	}
	d.commits.WithLabelValues(res).Observe(dur.Seconds())
}

// severityBand is GuardDuty's severity level of a score: low 1.0-3.9, medium 4.0-6.9,
// high 7.0-8.9.
func severityBand(s float64) string {
	switch {
	case s >= 7:
		return "high"
	case s >= 4:
		return "medium"
	}
	return "low"
}
