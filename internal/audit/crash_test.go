package audit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashDirEnv = "PHANTOM_AUDIT_CRASH_DIR"

// TestCrashHelper is the process TestKill9 kills: it records events from 16
// goroutines as fast as it can and prints each acknowledged request ID.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestKill9")
	}
	l, err := Open(Config{Dir: dir, Chain: "gateway", Signer: testSigner(t), SegmentBytes: 64 << 10, DigestInterval: 3 * time.Millisecond})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 16 { // enough to write in groups (see TestConcurrentRecord)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				ev := gatewayEvent(i)
				ev.RequestID = fmt.Sprintf("%d-%d-%d", os.Getpid(), g, i)
				if err := l.Record(context.Background(), ev); err != nil {
					fmt.Println("record:", err)
					os.Exit(3)
				}
				mu.Lock()
				out.WriteString(ev.RequestID + "\n")
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestKill9 kills a writing process with SIGKILL, several times over the same chain:
// every record it acknowledged is in the chain, the chain verifies (at most a torn tail
// and records not yet under a digest), and the next process resumes it.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	acked := map[string]bool{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() && n < 300+round*200 {
			if strings.Contains(sc.Text(), ":") {
				t.Fatalf("helper: %s", sc.Text())
			}
			acked[sc.Text()] = true
			n++
		}
		cmd.Process.Signal(syscall.SIGKILL)
		// What it acknowledged before dying is acknowledged too.
		for sc.Scan() {
			if !strings.Contains(sc.Text(), ":") && !strings.HasPrefix(sc.Text(), "=== ") {
				acked[sc.Text()] = true
			}
		}
		cmd.Wait()

		rep := mustVerify(t, dir, pinned(t))
		if !rep.OK() {
			t.Fatalf("round %d: killed writer left problems:\n%s", round, problems(rep))
		}
		for _, w := range rep.Warnings {
			if w.Kind != TornTail && w.Kind != NotCovered {
				t.Fatalf("round %d: warning %v", round, w)
			}
			t.Logf("round %d: %s", round, w)
		}
		t.Logf("round %d: %d records verified over %d segments", round, rep.Records, rep.Chains[0].Segments)
	}

	// Resume in this process: the chain continues and verifies cleanly.
	l := openTest(t, dir, "gateway", nil)
	writeN(t, l, 0, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir, pinned(t))
	if !rep.OK() || len(rep.Warnings) != 0 {
		t.Fatalf("after resume: problems\n%swarnings %v", problems(rep), rep.Warnings)
	}
	found := map[string]bool{}
	err := ReadChain(dir, "gateway", 0, func(e Entry) error {
		ev, err := e.Decode()
		if err != nil {
			return err
		}
		if found[ev.RequestID] {
			return fmt.Errorf("%s recorded twice", ev.RequestID)
		}
		found[ev.RequestID] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id := range acked {
		if !found[id] {
			t.Fatalf("acknowledged record %s is not in the chain", id)
		}
	}
	t.Logf("%d acknowledged records, %d in the chain", len(acked), len(found))
}
