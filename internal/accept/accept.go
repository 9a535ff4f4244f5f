// Package accept owns what a server's accept loop does when Accept fails: which errors
// pass (the process or the system is out of descriptors, EMFILE and ENFILE; a deadline;
// an interrupted call) and how long to wait before the next Accept, so the loop neither
// spins on a full descriptor table nor stops serving because of one. Every listener of
// the gateway, the endpoints and the handoff transports waits the same way, as net/http's
// Server.Serve does: 5 ms, doubling to at most 1 s, back to none after an Accept succeeds.
//
// It does not accept or close connections: the loop does.
package accept

import (
	"errors"
	"net"
	"time"
)

// Backoff bounds, as net/http's Server.Serve.
const (
	minWait = 5 * time.Millisecond
	maxWait = time.Second
)

// Backoff is one accept loop's wait after transient errors. The zero value is ready; it
// is not safe for concurrent use (one loop owns it).
type Backoff struct {
	wait time.Duration
}

// Retry reports whether err, from Accept, is transient, and if so waits before the loop
// accepts again: a doubling wait, cut short when done closes (then false: the listener is
// closing). false for any other error: the listener cannot accept any more.
func (b *Backoff) Retry(err error, done <-chan struct{}) bool {
	if !Transient(err) {
		return false
	}
	b.wait = min(max(2*b.wait, minWait), maxWait)
	t := time.NewTimer(b.wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// Wait is the wait the last Retry made (0 after Reset): for logs.
func (b *Backoff) Wait() time.Duration { return b.wait }

// Reset is called after each accepted connection.
func (b *Backoff) Reset() { b.wait = 0 }

// Transient reports whether an Accept error can pass: a timeout, or an error the system
// calls temporary (EMFILE, ENFILE, EINTR, EAGAIN; syscall.Errno.Temporary). A closed
// listener's error is not.
func Transient(err error) bool {
	if err == nil || errors.Is(err, net.ErrClosed) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
