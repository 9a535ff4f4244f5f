package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder stands in for a test: it records Skipf and Fatalf instead of stopping.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Skipf(format string, a ...any)  { r.skipped = fmt.Sprintf(format, a...) }
func (r *recorder) Fatalf(format string, a ...any) { r.failed = fmt.Sprintf(format, a...) }

func TestSharedMissingSkipsWithOneLine(t *testing.T) {
	t.Setenv(RequireSharedEnv, "")
	r := &recorder{TB: t}
	Shared(r, "no/such/suite")
	if r.failed != "" || !strings.HasPrefix(r.skipped, "../shared/no/such/suite not found: ") || strings.Contains(r.skipped, "\n") {
		t.Fatalf("skip %q, fail %q: want one skip line naming ../shared/no/such/suite", r.skipped, r.failed)
	}
	if _, ok := SharedOptional(r, "no/such/suite"); ok || r.failed != "" {
		t.Fatalf("Optional of a missing path: ok %v, fail %q", ok, r.failed)
	}
}

func TestSharedMissingFailsWhenRequired(t *testing.T) {
	t.Setenv(RequireSharedEnv, "1")
	r := &recorder{TB: t}
	Shared(r, "no/such/suite")
	if r.skipped != "" || !strings.Contains(r.failed, "../shared/no/such/suite not found") {
		t.Fatalf("skip %q, fail %q: want a failure", r.skipped, r.failed)
	}
	r = &recorder{TB: t}
	if _, ok := SharedOptional(r, "no/such/suite"); ok || r.failed == "" {
		t.Fatalf("Optional with %s=1: ok %v, fail %q: want a failure", RequireSharedEnv, ok, r.failed)
	}
}

// TestFindsShared: ../shared is found beside the repository root from any package
// directory (here a fake tree: root/repo/internal/x and root/shared/suite).
func TestSharedFoundBesideTheRepository(t *testing.T) {
	root := t.TempDir()
	repo := filepath.Join(root, "repo")
	pkg := filepath.Join(repo, "internal", "x")
	suite := filepath.Join(root, "shared", "conformance", "suite")
	for _, d := range []string{pkg, suite, filepath.Join(repo, "bench", "b")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(repo, "go.mod"), "module "+modulePath+"\n\ngo 1.26\n")
	write(filepath.Join(repo, "bench", "b", "go.mod"), "module "+modulePath+"/bench/b\n")
	for _, dir := range []string{pkg, filepath.Join(repo, "bench", "b")} {
		t.Chdir(dir)
		r := &recorder{TB: t}
		if got := Shared(r, "conformance/suite"); got != suite || r.skipped != "" || r.failed != "" {
			t.Fatalf("from %s: Path = %q (skip %q, fail %q), want %s", dir, got, r.skipped, r.failed, suite)
		}
	}
}
