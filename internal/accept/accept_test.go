package accept

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestTransient: a full descriptor table, a deadline and an interrupted call pass; a
// closed listener and any other error do not.
func TestTransient(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", err)}
	}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{op(syscall.EMFILE), true},
		{op(syscall.ENFILE), true},
		{op(syscall.EINTR), true},
		{op(syscall.EAGAIN), true},
		{fmt.Errorf("wrapped: %w", op(syscall.EMFILE)), true},
		{op(os.ErrDeadlineExceeded), true},
		{net.ErrClosed, false},
		{op(net.ErrClosed), false},
		{op(syscall.EINVAL), false},
		{op(syscall.EBADF), false},
		{errors.New("something else"), false},
		{nil, false},
	} {
		if got := Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestBackoff: the wait doubles from 5 ms to at most 1 s, starts again after Reset, stops
// at once for an error that does not pass, and is cut short when the listener closes.
func TestBackoff(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	var b Backoff
	start := time.Now()
	for _, want := range []time.Duration{5, 10, 20, 40} {
		if !b.Retry(emfile, nil) {
			t.Fatal("EMFILE did not pass")
		}
		if b.Wait() != want*time.Millisecond {
			t.Fatalf("wait %v, want %v", b.Wait(), want*time.Millisecond)
		}
	}
	if d := time.Since(start); d < 75*time.Millisecond {
		t.Errorf("four retries took %v: they did not wait", d)
	}
	b.wait = 800 * time.Millisecond
	done := make(chan struct{})
	close(done)
	if b.Retry(emfile, done) {
		t.Error("a retry went on with the listener closed")
	}
	if b.Wait() != time.Second {
		t.Errorf("wait %v past the bound of 1s", b.Wait())
	}
	b.Reset()
	if b.Wait() != 0 {
		t.Error("Reset kept the wait")
	}
	if b.Retry(net.ErrClosed, nil) {
		t.Error("a closed listener's error passed")
	}
}
