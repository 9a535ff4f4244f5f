package proctest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Mem is a process's memory as Linux accounts it in /proc/PID/status.
type Mem struct {
	RSS uint64 // VmRSS: resident now, in bytes
	HWM uint64 // VmHWM: the most that was ever resident, in bytes
}

// ReadMem reads the memory of process pid from /proc/pid/status.
func ReadMem(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	return parseStatus(b)
}

// parseStatus picks VmRSS and VmHWM out of a /proc/PID/status file ("VmRSS:  12345 kB";
// proc(5) says kB, which the kernel means as KiB).
func parseStatus(b []byte) (Mem, error) {
	var m Mem
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return Mem{}, fmt.Errorf("parse %s line %q", name, sc.Text())
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return Mem{}, fmt.Errorf("parse %s line %q: %w", name, sc.Text(), err)
		}
		if name == "VmRSS" {
			m.RSS = kb << 10
		} else {
			m.HWM = kb << 10
		}
		seen++
	}
	if seen != 2 {
		// Kernel threads and zombies have no Vm lines.
		return Mem{}, fmt.Errorf("no VmRSS and VmHWM (process exited?)")
	}
	return m, nil
}

// Mem reads the process's memory; an error when it is not running.
func (p *Proc) Mem() (Mem, error) {
	pid := p.PID()
	if pid == 0 {
		return Mem{}, fmt.Errorf("%s is not running", p.Name)
	}
	m, err := ReadMem(pid)
	if err != nil {
		return Mem{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	return m, nil
}

// Processes returns the component processes in start order: the STS, the gateways,
// the endpoints, then the detector when there is one.
func (c *Cluster) Processes() []*Proc {
	ps := []*Proc{c.sts}
	ps = append(ps, c.gateways...)
	ps = append(ps, c.endpoints...)
	if c.detector != nil {
		ps = append(ps, c.detector)
	}
	return ps
}

// clockTick is the unit of /proc/PID/stat's CPU times, USER_HZ, which the kernel's
// ABI fixes at 100 per second on every architecture Go's syscall package does not
// report otherwise (sysconf(_SC_CLK_TCK) needs cgo).
const clockTick = 10 * time.Millisecond

// ReadCPU reads the user and system CPU time process pid has used (proc(5), fields 14
// and 15 of /proc/pid/stat).
func ReadCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of process %d: %w", pid, err)
	}
	// The command name, field 2, is in parentheses and may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] { // utime, stime: fields 14 and 15, the 12th and 13th after the name
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// CPU reads the CPU time the process has used; an error when it is not running.
func (p *Proc) CPU() (time.Duration, error) {
	pid := p.PID()
	if pid == 0 {
		return 0, fmt.Errorf("%s is not running", p.Name)
	}
	return ReadCPU(pid)
}
