package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestComponentFlagsRefused: flag combinations that would leave a component without a
// working staleness bound, or pointing at a store it cannot use, are usage errors (exit
// 2) before anything is opened.
func TestComponentFlagsRefused(t *testing.T) {
	base := componentFlags{config: "unused.yaml", dataDir: t.TempDir(), chain: "gateway", poll: 2 * time.Second, maxStale: 30 * time.Second}
	for _, tc := range []struct {
		name string
		edit func(*componentFlags)
		want string
	}{
		{"max-stale not longer than poll", func(f *componentFlags) { f.maxStale = time.Second }, "--max-stale"},
		{"max-stale equal to poll", func(f *componentFlags) { f.maxStale = f.poll }, "--max-stale"},
		{"negative max-stale", func(f *componentFlags) { f.maxStale = -time.Second }, "--max-stale"},
		{"zero poll", func(f *componentFlags) { f.poll = 0 }, "--poll"},
		{"bad chain name", func(f *componentFlags) { f.chain = "Gateway 1" }, "--audit-chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base
			tc.edit(&f)
			err := runGateway(context.Background(), io.Discard, f)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("runGateway = %v, want a usage error (exit 2) naming %s", err, tc.want)
			}
		})
	}
}

// TestFindingsStoreFlagRefused: `phantom findings --store` takes only a postgres:// URL.
func TestFindingsStoreFlagRefused(t *testing.T) {
	f := &findingsFlags{dataDir: t.TempDir(), store: "mysql://db/phantom"}
	_, err := f.open(context.Background())
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "--store") {
		t.Fatalf("open = %v, want a usage error naming --store", err)
	}
}
