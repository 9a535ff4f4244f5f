//go:build !linux

package handoff

import "errors"

// getsockoptUcred: SO_PEERCRED is Linux's; elsewhere the same-host transport refuses
// every peer rather than trust one it cannot identify.
func getsockoptUcred(int) (Cred, error) {
	return Cred{}, errors.New("handoff: peer credentials are read on Linux only")
}
