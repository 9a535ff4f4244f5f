// Package sharedtest finds the workspace's shared test data for the tests that read it:
// ../shared beside the checkout holds conformance suites and datasets that are not ours to
// copy into the repository (their licenses and sizes), so a clone without it must still
// pass. A test asks for a path under it; when the path is absent the test is skipped with
// one line naming what is missing, unless PHANTOM_REQUIRE_SHARED=1 (CI sets it), which
// makes the absence a failure so CI can never pass by skipping.
//
// It owns nothing else: the data's formats belong to the tests that read them.
package sharedtest

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RequireEnv names the variable that turns a missing ../shared into a test failure.
const RequireEnv = "PHANTOM_REQUIRE_SHARED"

// modulePath identifies the repository's root go.mod (bench/ has modules of its own).
const modulePath = "github.com/phantom-perimeter/phantom"

// Path returns the absolute path of rel (slash-separated, e.g.
// "conformance/sigv4/aws-c-auth-v4") inside ../shared. When it is absent the test is
// skipped with one line, or fails when PHANTOM_REQUIRE_SHARED=1.
func Path(t testing.TB, rel string) string {
	t.Helper()
	p, err := Lookup(rel)
	if err != nil {
		missing(t, rel, err)
	}
	return p
}

// Optional is Path for data a test can do without (extra fuzz seeds): when rel is absent
// it returns false instead of skipping, and still fails when PHANTOM_REQUIRE_SHARED=1.
func Optional(t testing.TB, rel string) (string, bool) {
	t.Helper()
	p, err := Lookup(rel)
	if err != nil {
		if Required() {
			t.Fatalf("../shared/%s not found, and %s=1: %v", rel, RequireEnv, err)
		}
		return "", false
	}
	return p, true
}

// Required reports whether PHANTOM_REQUIRE_SHARED=1.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

func missing(t testing.TB, rel string, err error) {
	t.Helper()
	if Required() {
		t.Fatalf("../shared/%s not found, and %s=1: %v", rel, RequireEnv, err)
		return
	}
	t.Skipf("../shared/%s not found: skipping (it sits beside the checkout; %s=1 makes this a failure)", rel, RequireEnv)
}

// Lookup returns the absolute path of rel inside ../shared, or an error saying why it
// is not there. It does not skip or fail.
func Lookup(rel string) (string, error) {
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
		if isRoot(filepath.Join(dir, "go.mod")) {
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
func isRoot(path string) bool {
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
