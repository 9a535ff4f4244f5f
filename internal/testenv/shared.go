package testenv

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RequireSharedEnv names the variable that turns a missing ../shared into a test failure.
const RequireSharedEnv = "PHANTOM_REQUIRE_SHARED"

// modulePath identifies the repository's root go.mod (bench/ has modules of its own).
const modulePath = "github.com/phantom-perimeter/phantom"

// Shared returns the absolute path of rel (slash-separated, e.g.
// "conformance/sigv4/aws-c-auth-v4") inside ../shared, which sits beside the checkout:
// conformance suites and datasets that are not ours to copy into the repository, so a
// clone without them must still pass. When rel is absent the test is skipped with one
// line naming it, or fails when PHANTOM_REQUIRE_SHARED=1 (.ci/run sets it: CI always has
// ../shared).
func Shared(t testing.TB, rel string) string {
	t.Helper()
	p, err := LookupShared(rel)
	if err != nil {
		missingShared(t, rel, err)
	}
	return p
}

// SharedOptional is Shared for data a test can do without (extra fuzz seeds): when rel is
// absent it returns false instead of skipping, and still fails when
// PHANTOM_REQUIRE_SHARED=1.
func SharedOptional(t testing.TB, rel string) (string, bool) {
	t.Helper()
	p, err := LookupShared(rel)
	if err != nil {
		if SharedRequired() {
			t.Fatalf("../shared/%s not found, and %s=1: %v", rel, RequireSharedEnv, err)
		}
		return "", false
	}
	return p, true
}

// SharedRequired reports whether PHANTOM_REQUIRE_SHARED=1.
func SharedRequired() bool { return os.Getenv(RequireSharedEnv) == "1" }

func missingShared(t testing.TB, rel string, err error) {
	t.Helper()
	if SharedRequired() {
		t.Fatalf("../shared/%s not found, and %s=1: %v", rel, RequireSharedEnv, err)
		return
	}
	t.Skipf("../shared/%s not found: skipping (it sits beside the checkout; %s=1 makes this a failure)", rel, RequireSharedEnv)
}

// LookupShared returns the absolute path of rel inside ../shared, or an error saying why
// it is not there. It does not skip or fail.
func LookupShared(rel string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(root), "shared", filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

// repoRoot walks up from the working directory (a test's is its package directory) to
// the repository's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isRepoRoot(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of " + modulePath + " above the working directory")
		}
		dir = parent
	}
}

// isRoot reports whether the go.mod at path declares the repository's module.
func isRepoRoot(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "module ") {
			return strings.Trim(strings.TrimSpace(strings.TrimPrefix(line, "module ")), `"`) == modulePath
		}
	}
	return false
}
