//go:build !linux

package main

import "errors"

func pin([]int) error { return errors.New("binding to CPUs is done on Linux only") }

func otherCPUs(int) ([]int, error) {
	return nil, errors.New("binding to CPUs is done on Linux only")
}
