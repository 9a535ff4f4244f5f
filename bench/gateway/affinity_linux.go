package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pin binds every thread of this process to cpus and sizes GOMAXPROCS to them. An
// affinity mask belongs to a thread (sched_setaffinity(2)) and a new thread inherits its
// creator's, so the threads are set until a pass over /proc/self/task finds none unset.
func pin(cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	done := map[int]bool{}
	for {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("list this process's threads: %w", err)
		}
		fresh := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("bind thread %d to CPUs %v: %w", tid, cpus, err)
			}
			done[tid] = true
			fresh++
		}
		if fresh == 0 {
			break
		}
	}
	runtime.GOMAXPROCS(len(cpus))
	return nil
}

// otherCPUs is the CPUs this process may run on but cpu; an error when it may not run on
// cpu, or on no other.
func otherCPUs(cpu int) ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("read this process's CPUs: %w", err)
	}
	if cpu < 0 || !set.IsSet(cpu) {
		return nil, fmt.Errorf("CPU %d is not one this process may run on", cpu)
	}
	var rest []int
	for c := range 1024 { // CPU_SETSIZE
		if c != cpu && set.IsSet(c) {
			rest = append(rest, c)
		}
	}
	if len(rest) == 0 {
		return nil, fmt.Errorf("CPU %d is the only one this process may run on: a host of its own needs another", cpu)
	}
	return rest, nil
}
