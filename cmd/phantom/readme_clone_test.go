package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// TestReadmeCommandsOnAClone runs the README's two commands in a copy of the repository
// as a clone has it (its tracked files; no ../shared beside it), with everyone's
// environment but PHANTOM_REQUIRE_SHARED:
//
//   - `go run ./cmd/phantom up`, compiling in the copy, until it serves, then Ctrl-C (its
//     process group gets SIGINT, as from a terminal), which must end it cleanly. With --port-base 0: the default ports belong to whoever else uses the
//     machine.
//   - `scripts/test` on every package whose tests read ../shared (through testenv.Shared;
//     cmd/phantom's, which take minutes, separately with go test -run), which must pass,
//     each test that needed ../shared skipping with one line saying what is missing; and
//     the same tests fail with PHANTOM_REQUIRE_SHARED=1.
//
// The whole suite is not run twice: TestSharedDataThroughTestenv holds every reader of
// ../shared to the helper that makes its absence a skip.
func TestReadmeCommandsOnAClone(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles and runs phantom in a copy of the repository")
	}
	testenv.LookPath(t, "bash")
	var upCmd, testCmd bool
	for _, b := range readmeBlocks(t) {
		upCmd = upCmd || b.text == "go run ./cmd/phantom up\n"
		testCmd = testCmd || b.text == "scripts/test\n"
	}
	if !upCmd || !testCmd {
		t.Fatalf("README.md no longer shows the two commands this test runs (go run ./cmd/phantom up: %v, scripts/test: %v)", upCmd, testCmd)
	}
	clone := copyRepo(t, false)
	if _, err := os.Stat(filepath.Join(filepath.Dir(clone), "shared")); err == nil {
		t.Fatal("the copy has a ../shared beside it")
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PHANTOM_REQUIRE_SHARED=") {
			env = append(env, kv)
		}
	}

	t.Run("go run ./cmd/phantom up", func(t *testing.T) {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "run", "./cmd/phantom", "up", "--port-base", "0")
		cmd.Dir, cmd.Env = clone, env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		pr, pw := io.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { err := cmd.Wait(); pw.Close(); exited <- err }()
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
		})
		var log strings.Builder // read only after scanned is closed
		ready, scanned := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(scanned)
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				log.WriteString(sc.Text() + "\n")
				if strings.HasPrefix(sc.Text(), "phantom up: the demo perimeter is running") {
					close(ready)
				}
			}
		}()
		select {
		case <-ready:
		case err := <-exited:
			<-scanned
			t.Fatalf("go run ./cmd/phantom up exited before serving: %v\n%s", err, log.String())
		}
		t.Logf("go run ./cmd/phantom up served %s after it started (compiling included)", time.Since(start).Round(time.Second))
		if _, err := os.Stat(filepath.Join(clone, "phantom-data", "demo.env")); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil { // Ctrl-C
			t.Fatal(err)
		}
		select {
		case <-exited:
			<-scanned
			// go run's own exit status is not the program's ("go help run"): after an
			// interrupt it is 1 even when the program ends cleanly. Phantom's log says how
			// it ended.
			if !strings.Contains(log.String(), `msg="shutting down; finishing in-flight requests" component=up`) || strings.Contains(log.String(), "level=ERROR") {
				t.Fatalf("go run ./cmd/phantom up did not shut down cleanly after Ctrl-C:\n%s", log.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatal("go run ./cmd/phantom up still running 30s after Ctrl-C")
		}
	})

	t.Run("scripts/test without ../shared", func(t *testing.T) {
		pkgs := sharedReaders(t, clone)
		start := time.Now()
		cmd := exec.Command("scripts/test", pkgs...)
		cmd.Dir, cmd.Env = clone, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("scripts/test %s in a clone without ../shared: %v\n%s", strings.Join(pkgs, " "), err, out)
		}
		t.Logf("scripts/test %s: %s", strings.Join(pkgs, " "), time.Since(start).Round(time.Second))
		for _, want := range []string{
			`(?m)^\d+ tests ran \(\d+ top-level tests and \d+ subtests in \d+ packages\): \d+ passed, 0 failed, [1-9]\d* skipped$`,
			`(?m)^ +\d+  \.\./shared/conformance/sigv4/aws-c-auth-v4 not found: skipping .*$`,
			`(?m)^ +\d+  \.\./shared/datasets/cloudtrail not found: skipping .*$`,
		} {
			if !regexp.MustCompile(want).Match(out) {
				t.Errorf("scripts/test's summary does not match %s:\n%s", want, out)
			}
		}

		cmd = exec.Command("go", "test", "-count=1", "-run", "^TestSigv4", "./cmd/phantom")
		cmd.Dir, cmd.Env = clone, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cmd/phantom's tests of ../shared data in a clone without it: %v\n%s", err, out)
		}

		cmd = exec.Command("go", "test", "-count=1", "./internal/sigv4/rawhttp")
		cmd.Dir, cmd.Env = clone, append(env, "PHANTOM_REQUIRE_SHARED=1")
		out, err = cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "../shared/conformance/sigv4/aws-c-auth-v4 not found, and PHANTOM_REQUIRE_SHARED=1") {
			t.Fatalf("with PHANTOM_REQUIRE_SHARED=1 a clone without ../shared must fail: %v\n%s", err, out)
		}
	})
}

// sharedReaders lists the packages of the repository at dir whose tests read ../shared
// (through testenv.Shared or testenv.SharedOptional), but cmd/phantom (its suite runs
// whole perimeters for minutes).
func sharedReaders(t *testing.T, dir string) []string {
	t.Helper()
	seen := map[string]bool{}
	var pkgs []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "bench" || d.Name() == "testenv") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		pkg, err := filepath.Rel(dir, filepath.Dir(p))
		if err != nil || pkg == filepath.Join("cmd", "phantom") || seen[pkg] {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(string(data), "testenv.Shared(") || strings.Contains(string(data), "testenv.SharedOptional(") {
			seen[pkg] = true
			pkgs = append(pkgs, "./"+filepath.ToSlash(pkg))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 3 {
		t.Fatalf("only %v read ../shared through testenv.Shared", pkgs)
	}
	return append(pkgs, "./internal/testenv")
}

// TestSharedDataThroughTestenv: every test that reads ../shared goes through
// testenv.Shared, which makes its absence a one-line skip (or, with
// PHANTOM_REQUIRE_SHARED=1, a failure). A test naming a ../shared path itself would fail
// on a clone without it, as TestSigv4VerifyValid did.
func TestSharedDataThroughTestenv(t *testing.T) {
	re := regexp.MustCompile(`\.\./shared\b|"shared/(conformance|datasets)`)
	var offenders []string
	err := filepath.WalkDir(repoRoot, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "phantom-data") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") || strings.Contains(p, filepath.Join("internal", "testenv")) {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(data), "\n") {
			if trimmed := strings.TrimSpace(line); strings.HasPrefix(trimmed, "//") {
				continue
			}
			if re.MatchString(line) && !strings.Contains(line, "testenv.Shared") && !strings.Contains(p, "readme_clone_test.go") {
				offenders = append(offenders, p+":"+strconv.Itoa(i+1)+": "+strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(offenders) > 0 {
		t.Fatalf("tests that name ../shared themselves (use testenv.Shared or testenv.SharedOptional):\n%s", strings.Join(offenders, "\n"))
	}
}
