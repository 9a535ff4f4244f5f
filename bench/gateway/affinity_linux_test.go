package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// pinEnv, set, makes the test binary pin itself to that CPU and print, for each of its
// threads, the CPUs it may run on.
const pinEnv = "PHANTOM_BENCH_GATEWAY_PIN_TEST"

func init() {
	v := os.Getenv(pinEnv)
	if v == "" {
		return
	}
	cpu, _ := strconv.Atoi(v)
	if err := pin([]int{cpu}); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		tid, _ := strconv.Atoi(t.Name())
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &set); err == nil {
			fmt.Println("thread", tid, set.Count(), set.IsSet(cpu))
		}
	}
	os.Exit(0)
}

// TestPin: -endpoint-cpu binds every thread of a process, not only the one that asks
// (sched_setaffinity(2) sets one thread's mask), and refuses a CPU the process may not
// use or one that would leave the bench none.
func TestPin(t *testing.T) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	first := -1
	for c := range 1024 {
		if set.IsSet(c) {
			first = c
			break
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), pinEnv+"="+strconv.Itoa(first))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 {
		t.Fatalf("expected the runtime's threads, got %q", out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "thread ") || !strings.HasSuffix(l, " 1 true") {
			t.Errorf("a thread not bound to CPU %d alone: %q", first, l)
		}
	}

	if _, err := otherCPUs(-1); err == nil {
		t.Error("CPU -1 accepted")
	}
	if _, err := otherCPUs(1023); err == nil && !set.IsSet(1023) {
		t.Error("a CPU this process may not use accepted")
	}
	rest, err := otherCPUs(first)
	switch {
	case set.Count() == 1 && err == nil:
		t.Error("the only CPU given to the endpoint, leaving the bench none")
	case set.Count() > 1 && (err != nil || len(rest) != set.Count()-1):
		t.Errorf("otherCPUs(%d) = %v, %v; want the %d others", first, rest, err, set.Count()-1)
	}
}
