package proctest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// Build builds cmd/phantom into dir and returns the binary's path. It runs the go
// command, so it works from inside the module's source tree.
func Build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "phantom")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/phantom-perimeter/phantom/cmd/phantom").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build phantom: %w\n%s", err, out)
	}
	return bin, nil
}

// HasCommand reports whether the phantom binary has the subcommand name (a cluster with
// Config.Detector needs `phantom detector`).
func HasCommand(ctx context.Context, bin, name string) bool {
	// cobra exits 0 for a command's help and 1 for "unknown command".
	return exec.CommandContext(ctx, bin, name, "--help").Run() == nil
}
