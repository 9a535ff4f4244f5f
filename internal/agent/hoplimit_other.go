//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package agent

import (
	"errors"
	"net"
)

// setHopLimit is unsupported here: IMDS refuses to serve rather than serve without it.
func setHopLimit(net.Conn, int) error { return errors.New("hop limit: unsupported on this platform") }

func hopLimit(net.Conn) (int, error) { return 0, errors.New("hop limit: unsupported on this platform") }
