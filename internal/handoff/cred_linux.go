package handoff

import "syscall"

func getsockoptUcred(fd int) (Cred, error) {
	u, err := syscall.GetsockoptUcred(fd, syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	if err != nil {
		return Cred{}, err
	}
	return Cred{PID: u.Pid, UID: u.Uid, GID: u.Gid}, nil
}
