//go:build !linux && !darwin

package handoff

import "net"

// alive cannot peek here: a dead tunnel shows when it is used.
func alive(net.Conn) bool { return true }
