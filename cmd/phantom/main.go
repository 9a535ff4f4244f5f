// Command phantom is the Phantom zero trust perimeter: one binary whose subcommands run
// each component and the tools around them. This package parses flags and wires
// components together; the logic lives in internal/.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/buildinfo"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
)

// versionOf is the build's version alone, for man pages' footers.
func versionOf() string { return buildinfo.Read().Version }

// exitError carries a process exit code out of a subcommand without printing more than
// the subcommand already has.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the CLI with the given arguments and streams and returns the exit code,
// so tests drive the same path as the binary.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "phantom:", ee.err)
		}
		return ee.code
	}
	var ue *perimeter.UsageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "phantom:", ue.Err)
		return 2
	}
	// What is left is cobra's: an unknown flag or command, a missing required flag, extra
	// arguments.
	fmt.Fprintln(stderr, "phantom:", err)
	if awsExitCodes(cmd) {
		return exitUsage
	}
	return 2
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "phantom",
		Short: "Phantom: a self-hosted zero trust service perimeter speaking AWS's formats",
		Long: `Phantom puts an identity-aware, network-aware enforcement point in front of internal
HTTP services. Every call is signed with AWS Signature Version 4 and authorized with IAM
policies, so the AWS CLI, every AWS SDK and curl --aws-sigv4 work against it unchanged.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version prints the build: version, VCS revision and time, Go version.
		Version: buildinfo.Read().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	addLogFlags(root)
	root.AddCommand(
		newUpCmd(),
		newSigv4Cmd(),
		newPolicyCmd(),
		newConfigCmd(),
		newSTSCmd(),
		newIAMCmd(),
		newKeysCmd(),
		newCACmd(),
		newStoreCmd(),
		newNodeCmd(),
		newAuditCmd(),
		newGatewayCmd(),
		newEndpointCmd(),
		newEgressCmd(),
		newAgentCmd(),
		newFindingsCmd(),
		newDetectCmd(),
		newDetectorCmd(),
		newConsoleCmd(),
		newExportCmd(),
		newImportCmd(),
		newManCmd(),
		newCredentialsCmd(),
		newLoginCmd(),
		newLogoutCmd(),
	)
	return root
}
