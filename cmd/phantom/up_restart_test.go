package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// TestUpKeepsSpecEdits: the demo spec is written once and is the user's afterwards. An
// edit made while stopped is what the next start serves (here: the endpoint policy no
// longer admits the demo user, so its call through the endpoint is refused), a --port-base
// that disagrees with the spec is refused without touching it, and --regenerate-spec
// brings the demo back, keeping the edited file beside it. On the old code every start
// rewrote the spec from the embedded demo, silently dropping the edit.
func TestUpKeepsSpecEdits(t *testing.T) {
	testenv.LookPath(t, "curl")
	bin := buildPhantom(t)
	dataDir := filepath.Join(t.TempDir(), "phantom-data")
	u := startUpIn(t, bin, dataDir)
	user := u.user()
	if r := u.curl(t, &user, u.env["PHANTOM_API_URL"]); r.Status != http.StatusOK {
		t.Fatalf("first start: the demo user through the endpoint: %s", r)
	}
	u.stop(t)

	specPath := filepath.Join(dataDir, "perimeter.yaml")
	spec, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	admitUser := `                - "arn:aws:iam::123456789012:user/demo"` + "\n"
	if !bytes.Contains(spec, []byte(admitUser)) {
		t.Fatalf("the demo spec's endpoint policy no longer names the demo user as expected:\n%s", spec)
	}
	edited := bytes.Replace(spec, []byte(admitUser), nil, 1)
	if err := os.WriteFile(specPath, edited, 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("a --port-base the spec does not use is refused", func(t *testing.T) {
		// 20000 is never bound: the check comes before any listener. (The old code served
		// there: the timeout ends it.)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "up", "--data-dir", dataDir, "--port-base", "20000").CombinedOutput()
		if code := exitCode(err); code != 2 || !strings.Contains(string(out), "--port-base 20000 does not match") {
			t.Fatalf("exit %d, want 2 and the mismatch named:\n%s", code, out)
		}
		if now, _ := os.ReadFile(specPath); !bytes.Equal(now, edited) {
			t.Fatal("the refused start changed the spec")
		}
	})

	u = startUpIn(t, bin, dataDir)
	if now, _ := os.ReadFile(specPath); !bytes.Equal(now, edited) {
		t.Fatalf("the restart rewrote the edited spec:\n%s", now)
	}
	if r := u.curl(t, &user, u.env["PHANTOM_API_URL"]); r.Status != http.StatusForbidden || r.Type != "AccessDeniedException" {
		t.Fatalf("after the edit the endpoint policy no longer admits the demo user; got %s", r)
	}
	u.stop(t)

	u = startUpIn(t, bin, dataDir, "--regenerate-spec")
	if !strings.Contains(u.logs(), "--regenerate-spec: replaced "+specPath) {
		t.Fatalf("--regenerate-spec did not say what it replaced:\n%s", u.logs())
	}
	if r := u.curl(t, &user, u.env["PHANTOM_API_URL"]); r.Status != http.StatusOK {
		t.Fatalf("after --regenerate-spec the demo user is admitted again; got %s", r)
	}
	kept, _ := filepath.Glob(specPath + ".*.bak")
	if len(kept) != 1 {
		t.Fatalf("want the replaced spec kept as one perimeter.yaml.*.bak, got %v", kept)
	}
	if b, _ := os.ReadFile(kept[0]); !bytes.Equal(b, edited) {
		t.Fatalf("%s is not the edited spec", kept[0])
	}
}

// TestUpSecondInstanceLeavesFirstServing: a second phantom up on the same data directory
// fails before it writes anything (the data directory's lock), so the first keeps
// serving: its spec, demo.env and ports untouched. On the old code the second rewrote
// perimeter.yaml with its own ports before failing, and the first's endpoint then
// refused every connection.
func TestUpSecondInstanceLeavesFirstServing(t *testing.T) {
	testenv.LookPath(t, "curl")
	bin := buildPhantom(t)
	u := startUp(t, bin)
	user := u.user()
	files := map[string][]byte{}
	for _, name := range []string{"perimeter.yaml", "demo.env", "aws-config"} {
		b, err := os.ReadFile(filepath.Join(u.dataDir, name))
		if err != nil {
			t.Error(err)
		}
		files[name] = b
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, bin, "up", "--data-dir", u.dataDir, "--port-base", "0", "--poll", "200ms")
	out, err := second.CombinedOutput()
	if code := exitCode(err); code == 0 || !strings.Contains(string(out), "is in use by another phantom up (process ") {
		t.Errorf("second phantom up: exit %d, want a failure naming the first:\n%s", code, out)
	}
	for name, want := range files {
		if got, _ := os.ReadFile(filepath.Join(u.dataDir, name)); !bytes.Equal(got, want) {
			t.Errorf("the second phantom up changed %s", name)
		}
	}
	// The first re-reads its spec every second: give a rewritten spec time to be loaded.
	time.Sleep(1500 * time.Millisecond)
	if r := u.curl(t, &user, u.env["PHANTOM_API_URL"]); r.Status != http.StatusOK {
		t.Fatalf("the first phantom up no longer serves the demo user through the endpoint: %s", r)
	}
	select {
	case err := <-u.exited:
		t.Fatalf("the first phantom up exited: %v\n%s", err, u.logs())
	default:
	}
}

// exitCode is a finished command's exit status (0 for success, -1 when it did not run).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}
