package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
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
	for _, name := range []string{"(a) bare TLS proxy", "(b) gateway", "(c) endpoint>gateway, in memory",
		"(d) endpoint|gateway, fd passed", "(e) endpoint>gateway, mTLS in 1 process", "(f) endpoint|gateway, mTLS tunnel",
		"(g) endpoint|gateway, HTTP over mTLS", "verifying one identity assertion"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("no row for %s:\n%s", name, out.String())
		}
	}
}
