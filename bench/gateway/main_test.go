package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestBenchRuns keeps the bench program working: a very short run through all three
// targets must serve every request and print a row for each.
func TestBenchRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole perimeter")
	}
	var out bytes.Buffer
	if err := run(context.Background(), &out, options{duration: 300 * time.Millisecond, warmup: 100 * time.Millisecond, levels: []int{2}}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, name := range []string{"(a) bare TLS proxy", "(b) gateway", "(c) endpoint+gateway"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("no row for %s:\n%s", name, out.String())
		}
	}
}
