package peers

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// scenarios are the policies compared: a realistic role and policies of growing size, to
// show how each engine's cost grows with the number of statements.
func scenarios() []Scenario {
	return []Scenario{Realistic(), Generated(10), Generated(100), Generated(1000), Generated(10000)}
}

// TestEnginesAgree is what makes the benchmark a comparison: every engine must give every
// request the decision IAM's evaluation logic gives it (written down in the scenario).
func TestEnginesAgree(t *testing.T) {
	for _, s := range scenarios() {
		if testing.Short() && len(s.Statements) > 1000 {
			continue
		}
		for _, e := range Engines() {
			t.Run(s.Name+"/"+e.Name, func(t *testing.T) {
				p, err := e.Prepare(s)
				if err != nil {
					t.Fatalf("prepare: %v", err)
				}
				for i, r := range s.Requests {
					got, err := p.Decide(i)
					if err != nil {
						t.Fatalf("%s: %v", r.Name, err)
					}
					if got != r.Want {
						t.Errorf("%s (%s on %s): got %s, want %s", r.Name, r.Action, r.Resource, got, r.Want)
					}
				}
			})
		}
	}
}

// BenchmarkDecision runs every engine on every scenario; one op is one decision, cycling
// through the scenario's requests (allows, explicit denies and implicit denies).
func BenchmarkDecision(b *testing.B) {
	for _, s := range scenarios() {
		for _, e := range Engines() {
			b.Run(s.Name+"/"+e.Name, func(b *testing.B) { benchDecision(b, e, s) })
		}
	}
}

func benchDecision(b *testing.B, e Engine, s Scenario) {
	p, err := e.Prepare(s)
	if err != nil {
		b.Fatalf("prepare: %v", err)
	}
	n := len(s.Requests)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Decide(i % n); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPeerTable prints the comparison as a table with each peer's cost as a multiple of
// Phantom's, all measured in this run. It runs when PHANTOM_PEERS_TABLE is set (it takes
// about a minute): `PHANTOM_PEERS_TABLE=1 go test -run PeerTable -v`.
func TestPeerTable(t *testing.T) {
	if os.Getenv("PHANTOM_PEERS_TABLE") == "" {
		t.Skip("set PHANTOM_PEERS_TABLE=1 to measure and print the peer comparison table")
	}
	var out strings.Builder
	fmt.Fprintf(&out, "%-16s %-8s %12s %10s %10s %8s\n", "scenario", "engine", "ns/op", "B/op", "allocs/op", "x phantom")
	for _, s := range scenarios() {
		var base float64
		for _, e := range Engines() {
			r := testing.Benchmark(func(b *testing.B) { benchDecision(b, e, s) })
			ns := float64(r.T.Nanoseconds()) / float64(r.N)
			if base == 0 {
				base = ns
			}
			fmt.Fprintf(&out, "%-16s %-8s %12.0f %10d %10d %8.1f\n", s.Name, e.Name, ns, r.AllocedBytesPerOp(), r.AllocsPerOp(), ns/base)
		}
	}
	t.Log("\n" + out.String())
}
