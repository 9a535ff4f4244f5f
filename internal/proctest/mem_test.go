package proctest

import (
	"os"
	"testing"
	"time"
)

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		want    Mem
		wantErr bool
	}{
		{"user process (proc(5): sizes in kB, meaning KiB)", "Name:\tphantom\nVmPeak:\t 1000 kB\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\nThreads:\t7\n", Mem{RSS: 1 << 20, HWM: 2 << 20}, false},
		{"kernel thread or zombie: no Vm lines", "Name:\tkthreadd\nState:\tS (sleeping)\n", Mem{}, true},
		{"unexpected unit", "VmHWM:\t2 MB\nVmRSS:\t1 MB\n", Mem{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatus([]byte(tt.status))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatus = %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestReadSelf(t *testing.T) {
	m, err := ReadMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS == 0 || m.HWM < m.RSS {
		t.Errorf("ReadMem(self) = %+v: want 0 < RSS <= HWM", m)
	}
	// Spin until the kernel has counted a tick of CPU time (10 ms).
	deadline := time.Now().Add(10 * time.Second)
	busy := 0
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			busy ^= i
		}
		cpu, err := ReadCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if cpu > 0 {
			return
		}
	}
	t.Errorf("ReadCPU(self) still 0 after 10 s of a busy loop (%d)", busy)
}
