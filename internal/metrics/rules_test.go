package metrics

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

const (
	rulesFile = "../../deploy/prometheus/phantom.rules.yml"
	rulesTest = "../../deploy/prometheus/tests/phantom.rules.test.yml"
)

// pendingMetrics are series the rules use that another issue's branch adds; each names
// the issue. A rule on one of them never fires until that branch lands.
var pendingMetrics = map[string]string{
	"phantom_detector_chain_unread": "issue 16: the detector's gauge of chains it cannot read",
}

// describer records every metric name a collector describes.
type describer struct{ names map[string]bool }

var fqNameRe = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqNameRe.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
		}
	}
	return nil
}

func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *describer) Unregister(prometheus.Collector) bool { return true }

// phantomMetrics lists every phantom_ metric the components register.
func phantomMetrics() map[string]bool {
	d := &describer{names: map[string]bool{}}
	NewGateway(d)
	NewSTS(d)
	NewEndpoints(d)
	NewEgress(d)
	NewDetector(d)
	NewAgent(d, func() time.Time { return time.Time{} })
	RegisterFreshness(d, Freshness{SyncedAt: time.Now, Fresh: func() error { return nil }})
	d.MustRegister(buildInfo())
	return d.names
}

// TestRulesNameRealMetrics: every phantom_ series the Prometheus rules read is one a
// component serves (a histogram's _bucket, _count and _sum included), or is listed as
// pending with the issue that adds it. A renamed metric would otherwise leave its alert
// silent forever.
func TestRulesNameRealMetrics(t *testing.T) {
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	known := phantomMetrics()
	if len(known) < 20 {
		t.Fatalf("found only %d metrics: the describer is broken", len(known))
	}
	// Names in expressions: phantom_ followed by name characters, not part of a
	// recording rule's level:metric:operation name (which has colons).
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`[a-z_:]*phantom_[a-z0-9_]+[a-z0-9_:]*`).FindAllString(string(rules), -1) {
		if !strings.Contains(m, ":") {
			used[m] = true
		}
	}
	if len(used) < 10 {
		t.Fatalf("found only %d metric names in the rules", len(used))
	}
	for name := range used {
		base := name
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && known[b] {
				base = b
			}
		}
		switch {
		case known[base]:
		case pendingMetrics[base] != "":
			t.Logf("%s: pending (%s)", name, pendingMetrics[base])
		default:
			t.Errorf("the rules use %s, which no component serves", name)
		}
	}
	for name := range pendingMetrics {
		if known[name] {
			t.Logf("%s is served now: remove it from pendingMetrics", name)
		}
	}
	if !used["phantom_identity_state_fresh"] {
		t.Error("the rules do not alert on stale perimeter state")
	}
}

// TestPromtoolRules checks the rules and runs their unit tests with promtool (Debian's
// prometheus package; .ci/run installs it).
func TestPromtoolRules(t *testing.T) {
	promtool := testenv.LookPath(t, "promtool")
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTest}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
