package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain serves a proxy when the test binary is re-executed as one.
func TestMain(m *testing.M) {
	serveIfChild()
	os.Exit(m.Run())
}

// TestBenchRuns keeps the bench program working: a very short run through both proxies
// must serve every request and print a row for each scenario and each proxy's memory.
func TestBenchRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two proxy processes")
	}
	var out bytes.Buffer
	if err := run(context.Background(), &out, options{duration: 200 * time.Millisecond, warmup: 50 * time.Millisecond, levels: []int{2}, rounds: 1}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, row := range []string{"setup", "refused", "nocreds", "bare     peak RSS", "phantom  peak RSS"} {
		if !strings.Contains(out.String(), row) {
			t.Errorf("no row %q:\n%s", row, out.String())
		}
	}
}
