package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/admin"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/datadir"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
)

// adminFlags are the flags the administrative command groups (iam, keys, node) share.
type adminFlags struct {
	dataDir string
	config  string
	output  string
	store   string
	// before, when set, prepares the opened Admin (a key provider); the function it
	// returns runs after the command.
	before func(*admin.Admin) (func(), error)
}

const adminFlagsHelp = `
Every command works on one data directory: --data-dir, else $PHANTOM_DATA_DIR, else
./phantom-data (created 0700). Names are checked against the perimeter spec: --config, else
$PHANTOM_CONFIG, else ./phantom.yaml; it must exist and validate (source the demo.env that
phantom up writes and both are set). Failures are printed as the AWS CLI prints a service
error ("An error occurred (NoSuchEntity) when calling the CreateAccessKey operation: ...")
and exit with the AWS CLI's return codes: 254 such an error, 252 bad usage, 253 no usable
spec or data directory, 255 anything else.`

func (f *adminFlags) register(cmd *cobra.Command) {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[awsExitCodesAnnotation] = "true"
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: exitUsage, err: err} })
	p := cmd.PersistentFlags()
	p.StringVar(&f.dataDir, "data-dir", "", "data directory (default $PHANTOM_DATA_DIR or ./phantom-data)")
	p.StringVar(&f.config, "config", "", "perimeter spec (default $PHANTOM_CONFIG or ./phantom.yaml)")
	p.StringVar(&f.output, "output", "json", "output format: json or text")
	p.StringVar(&f.store, "store", os.Getenv("PHANTOM_STORE"), "store URL: empty for SQLite in the data directory, or the postgres://… the components share (default $PHANTOM_STORE)")
}

// open loads the spec and opens the data directory; the caller closes the result.
func (f *adminFlags) open(cmd *cobra.Command) (*admin.Admin, admin.Format, error) {
	format, err := admin.ParseFormat(f.output)
	if err != nil {
		return nil, "", &exitError{code: exitUsage, err: err}
	}
	path := datadir.ConfigPath(f.config, os.Getenv)
	spec, err := config.Load(path)
	var cerr *config.Error
	switch {
	case errors.As(err, &cerr):
		for _, p := range cerr.Problems {
			fmt.Fprintln(cmd.ErrOrStderr(), p)
		}
		return nil, "", &exitError{code: exitConfig, err: fmt.Errorf("%s: %d problem(s)", path, len(cerr.Problems))}
	case errors.Is(err, fs.ErrNotExist):
		return nil, "", &exitError{code: exitConfig, err: fmt.Errorf("perimeter spec %s not found: pass --config FILE or set %s (source the demo.env phantom up writes)", path, datadir.ConfigEnv)}
	case err != nil:
		return nil, "", &exitError{code: exitConfig, err: err}
	}
	dataDir := datadir.Dir(f.dataDir, os.Getenv)
	a, err := admin.Open(cmd.Context(), admin.Config{DataDir: dataDir, StoreURL: f.store, Spec: spec, AuditDir: perimeter.AuditDir(dataDir, spec)})
	if err != nil {
		return nil, "", &exitError{code: exitConfig, err: err}
	}
	return a, format, nil
}

// fail turns an operation's error into the command's: an AWS-coded error is printed the
// way the AWS CLI prints it and exits 254; anything else exits 255.
func fail(cmd *cobra.Command, op string, err error) error {
	if msg, ok := admin.CLIMessage(op, err); ok {
		fmt.Fprintln(cmd.ErrOrStderr(), msg)
		return &exitError{code: admin.ServiceErrorExitCode}
	}
	return &exitError{code: exitOther, err: err}
}

// adminRun wraps an administrative command body: open, run, write, close.
func (f *adminFlags) run(op string, body func(cmd *cobra.Command, a *admin.Admin) (admin.Output, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		a, format, err := f.open(cmd)
		if err != nil {
			return err
		}
		defer a.Close()
		if f.before != nil {
			done, err := f.before(a)
			if err != nil {
				return err
			}
			defer done()
		}
		out, err := body(cmd, a)
		if err != nil {
			return fail(cmd, op, err)
		}
		if out == nil {
			return nil
		}
		return admin.Write(cmd.OutOrStdout(), format, out)
	}
}
