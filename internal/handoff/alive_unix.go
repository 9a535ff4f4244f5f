//go:build linux || darwin

package handoff

import (
	"errors"
	"net"
	"syscall"
)

// alive reports whether a pre-dialed tunnel is as the handshake left it: nothing to read.
// The gateway sends nothing before the preamble (no session tickets), so the end of the
// stream, an error or any byte (a close_notify alert) means it is gone or going. One
// non-blocking system call.
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	up := true
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		// Anything but "nothing yet": the end of the stream (0), an alert (1), an error.
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		up = errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR)
		return true // never wait for readiness
	})
	return err == nil && up
}
