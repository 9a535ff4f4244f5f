package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// TestMain lets the test binary be the bench's endpoint process too, as the bench binary
// is: target (d) re-executes the running binary.
func TestMain(m *testing.M) {
	if file := os.Getenv(childEnv); file != "" {
		if err := runChild(file); err != nil {
			fmt.Fprintln(os.Stderr, "endpoint process:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBenchRuns keeps the bench program working: a very short run through every target
// must serve every request and print a row for each, and the backend's verification cost.
func TestBenchRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole perimeter")
	}
	var out bytes.Buffer
	if err := run(context.Background(), &out, options{duration: 300 * time.Millisecond, warmup: 100 * time.Millisecond, levels: []int{2}}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	// Each target appears in the server table too, with a measured share of its own.
	if n := strings.Count(out.String(), "(f) endpoint|gateway, mTLS tunnel"); n != 3 {
		t.Errorf("(f) has %d rows, want 3 (all, endpoint apart, server alone):\n%s", n, out.String())
	}
	if strings.Contains(out.String(), noSamples) {
		t.Errorf("a server's share was not measured:\n%s", out.String())
	}
	for _, name := range []string{"(a) bare TLS proxy", "(b) gateway", "(c) endpoint>gateway, in memory",
		"(d) endpoint|gateway, fd passed", "(e) endpoint>gateway, mTLS in 1 process", "(f) endpoint|gateway, mTLS tunnel",
		"(g) endpoint|gateway, HTTP over mTLS", "verifying one identity assertion", "each server on a host of its own"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("no row for %s:\n%s", name, out.String())
		}
	}
}

// TestRoleCPU holds the server's share to the samples labelled for it: a sample of
// another role, or of none, is not the server's.
func TestRoleCPU(t *testing.T) {
	p := &profile.Profile{SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}}}
	add := func(role string, ns int64) {
		s := &profile.Sample{Value: []int64{1, ns}}
		if role != "" {
			s.Label = map[string][]string{roleLabel: {role}}
		}
		p.Sample = append(p.Sample, s)
	}
	add(roleServer, 10e6)
	add(roleServer, 20e6)
	add(roleClients, 40e6)
	add(roleBackend, 5e6)
	add("", 7e6)
	got := roleCPU(p)
	want := map[string]time.Duration{roleServer: 30 * time.Millisecond, roleClients: 40 * time.Millisecond, roleBackend: 5 * time.Millisecond, "": 7 * time.Millisecond}
	if len(got) != len(want) {
		t.Fatalf("roleCPU = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("roleCPU[%q] = %v, want %v", k, got[k], v)
		}
	}
	if got := roleCPU(&profile.Profile{SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}}, Sample: p.Sample}); len(got) != 0 {
		t.Errorf("a profile without CPU time gave %v", got)
	}
}
