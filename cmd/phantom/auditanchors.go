package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/atomicfile"
	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/datadir"
	"github.com/phantom-perimeter/phantom/internal/store"
)

func newAuditAnchorsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "anchors", Short: "Audit anchors: export them for an offline check, grant an audit writer's login"}
	cmd.AddCommand(newAuditAnchorsExportCmd(), newAuditAnchorsGrantCmd())
	return cmd
}

func newAuditAnchorsExportCmd() *cobra.Command {
	var dataDir, storeURL, output string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the store's audit anchors as JSON, for phantom audit verify --anchors",
		Long: `Export writes the anchor set — the chains the store knows, the newest anchored head of
every segment, the writers' certificates and the prune checkpoints — as JSON, to verify a
copy of the audit directory elsewhere (phantom audit verify DIR --anchors FILE). The
anchors come from the data directory's SQLite store, read without changing it, or from
--store (a PostgreSQL store, or an audit anchor sink). Keep the file where whoever can
write the audit directory cannot.`,
		Example: `  phantom audit anchors export --data-dir /var/lib/phantom --output anchors.json
  phantom audit anchors export --store 'postgres://auditor@db.internal/phantom' > anchors.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAnchorsExport(cmd.Context(), cmd.OutOrStdout(), datadir.Dir(dataDir, os.Getenv), storeURL, output)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dataDir, "data-dir", "", "data directory whose store holds the anchors (default $PHANTOM_DATA_DIR or ./phantom-data)")
	fl.StringVar(&storeURL, "store", os.Getenv("PHANTOM_STORE"), "PostgreSQL store or anchor sink instead: postgres://… (default $PHANTOM_STORE)")
	fl.StringVar(&output, "output", "", "write to this file (default: standard output)")
	auditUsageErrors(cmd)
	return cmd
}

func runAnchorsExport(ctx context.Context, stdout io.Writer, dataDir, storeURL, output string) error {
	if !store.IsPostgresURL(storeURL) {
		storeURL = ""
		if _, err := os.Stat(filepath.Join(dataDir, store.DBFile)); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("no store in %s: %w", dataDir, err)}
		}
	}
	set, err := anchorSet(ctx, "", storeURL, dataDir)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	b, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if output == "" {
		_, err = stdout.Write(b)
		return err
	}
	if err := atomicfile.Write(output, b, 0o600); err != nil {
		return &exitError{code: 2, err: err}
	}
	fmt.Fprintf(stdout, "phantom audit anchors export: %d chains, %d anchors, %d certificates, %d checkpoints written to %s\n",
		len(set.Chains), len(set.Anchors), len(set.Signers), len(set.Checkpoints), output)
	return nil
}

func newAuditAnchorsGrantCmd() *cobra.Command {
	var dataDir, storeURL string
	cmd := &cobra.Command{
		Use:   "grant ROLE",
		Short: "Let a PostgreSQL role write audit anchors, and nothing else, in the store's schema",
		Long: `Grant gives the PostgreSQL role ROLE (it must exist: CREATE ROLE … LOGIN PASSWORD …) what
an audit writer needs to anchor its chains and nothing more: SELECT and INSERT on the
chains, certificates and anchors, SELECT on the prune checkpoints and the migration record.
It cannot UPDATE, DELETE or TRUNCATE them (the store's triggers refuse that even to a role
granted it by mistake), nor record a prune checkpoint. Give writers that login in
--audit-anchors (or $PHANTOM_AUDIT_ANCHORS), ideally on a PostgreSQL server on another
host: then whoever takes a writer's host, store credentials included, cannot remove the
anchors that show what they cut from its chains.

It runs with the store's own login (--store), which must own the tables, and the master
key.`,
		Example: `  psql -c "CREATE ROLE audit_writer LOGIN PASSWORD '…'"
  phantom audit anchors grant audit_writer --store "$PHANTOM_STORE"
  phantom gateway … --audit-anchors 'postgres://audit_writer:…@anchors.internal/phantom?sslmode=verify-full'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAnchorsGrant(cmd.Context(), cmd.OutOrStdout(), datadir.Dir(dataDir, os.Getenv), storeURL, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&storeURL, "store", os.Getenv("PHANTOM_STORE"), "the PostgreSQL store, with its owner's login (default $PHANTOM_STORE)")
	fl.StringVar(&dataDir, "data-dir", "", "data directory holding master.key, unless $PHANTOM_MASTER_KEY is set (default $PHANTOM_DATA_DIR or ./phantom-data)")
	auditUsageErrors(cmd)
	return cmd
}

func runAnchorsGrant(ctx context.Context, stdout io.Writer, dataDir, storeURL, role string) error {
	if !store.IsPostgresURL(storeURL) {
		return &exitError{code: 2, err: fmt.Errorf("--store: want the postgres:// URL of the store (roles are PostgreSQL's; with SQLite, anchors live in the data directory)")}
	}
	st, err := openAuditStore(ctx, dataDir, storeURL)
	if err != nil {
		return err
	}
	defer st.Close()
	pg, ok := st.(*store.Postgres)
	if !ok {
		return &exitError{code: 2, err: fmt.Errorf("--store is not PostgreSQL")}
	}
	if err := pg.GrantAuditWriter(ctx, role); err != nil {
		return &exitError{code: 1, err: err}
	}
	fmt.Fprintf(stdout, "phantom audit anchors grant: %s may now insert audit anchors (and read them) in %s, and nothing else there\n", role, store.RedactURL(storeURL))
	return nil
}

// openAuditStore opens the store with the perimeter's master key, which must exist
// (these commands never create one).
func openAuditStore(ctx context.Context, dataDir, storeURL string) (store.Store, error) {
	if _, ok := os.LookupEnv(store.MasterKeyEnv); !ok {
		if _, err := os.Stat(filepath.Join(dataDir, store.MasterKeyFile)); err != nil {
			return nil, &exitError{code: 2, err: fmt.Errorf("no master key: %w (set %s or --data-dir)", err, store.MasterKeyEnv)}
		}
	}
	mk, err := store.LoadOrCreateMasterKey(dataDir)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	st, err := store.Open(ctx, store.OpenConfig{URL: storeURL, DataDir: dataDir, MasterKey: mk})
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return st, nil
}

func newAuditPruneCmd() *cobra.Command {
	var dataDir, storeURL, before, archive, ca string
	var chains []string
	cmd := &cobra.Command{
		Use:   "prune DIR --before DATE",
		Short: "Remove (or archive) old sealed audit segments, leaving an anchored checkpoint",
		Long: `Prune removes from each chain of the audit directory DIR the oldest sealed segments whose
final digest was signed before DATE (RFC 3339, or YYYY-MM-DD), never a chain's newest
segment, and only from a chain that verifies: pruning never removes evidence of
tampering. Before removing anything it records, per chain, a checkpoint in the store (the
last record removed and its hash), so that verification reports the gap as pruned rather
than as tampering, and the detector reads on after it; the chain keeps a copy in
pruned.json. With --archive the segments are moved there instead of deleted.

The store is the data directory's (or --store); with a PostgreSQL store, run it with a
login that may insert checkpoints (the store's, not an audit writer's). Writers may keep
running meanwhile.`,
		Example: `  phantom audit prune /var/lib/phantom/audit --before 2026-01-01 --archive /mnt/cold/phantom-audit`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAuditPrune(cmd.Context(), cmd.OutOrStdout(), args[0], pruneFlags{
				dataDir: dataDir, store: storeURL, before: before, archive: archive, ca: ca, chains: chains})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&before, "before", "", "prune segments sealed before this time: RFC 3339, or YYYY-MM-DD (UTC midnight) (required)")
	fl.StringVar(&archive, "archive", "", "move the pruned segments under this directory instead of deleting them")
	fl.StringArrayVar(&chains, "chain", nil, "prune only this chain (repeatable; default: every chain)")
	fl.StringVar(&dataDir, "data-dir", "", "data directory of the store and the master key (default: the one DIR is in, else $PHANTOM_DATA_DIR or ./phantom-data)")
	fl.StringVar(&storeURL, "store", os.Getenv("PHANTOM_STORE"), "store URL: empty for the data directory's SQLite, or postgres://… (default $PHANTOM_STORE)")
	fl.StringVar(&ca, "ca", "", "PEM file of the perimeter CA certificate (default: the data directory's ca.pem)")
	cmd.MarkFlagRequired("before")
	auditUsageErrors(cmd)
	return cmd
}

type pruneFlags struct {
	dataDir, store, before, archive, ca string
	chains                              []string
}

func runAuditPrune(ctx context.Context, stdout io.Writer, dir string, f pruneFlags) error {
	before, err := time.Parse(time.RFC3339, f.before)
	if err != nil {
		if before, err = time.Parse(time.DateOnly, f.before); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--before %q: want RFC 3339 (2026-01-02T15:04:05Z) or YYYY-MM-DD", f.before)}
		}
	}
	dataDir := f.dataDir
	if dataDir == "" {
		if dataDir = auditDataDir(dir); dataDir == "" {
			dataDir = datadir.Dir("", os.Getenv)
		}
	}
	chains := f.chains
	if len(chains) == 0 {
		if chains, err = audit.Chains(dir); err != nil {
			return &exitError{code: 2, err: err}
		}
	}
	st, err := openAuditStore(ctx, dataDir, f.store)
	if err != nil {
		return err
	}
	defer st.Close()
	signers, err := auditSigners(f.ca, dataDir)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	set, err := st.AuditAnchorSet(ctx)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	failed := 0
	for _, c := range chains {
		plan, ok, err := audit.PlanPrune(dir, c, before)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		if !ok {
			fmt.Fprintf(stdout, "%s: nothing sealed before %s\n", c, before.UTC().Format(time.RFC3339))
			continue
		}
		rep, err := audit.Verify(dir, audit.VerifyOptions{Chains: []string{c}, Signers: signers, Anchors: &set})
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		if !rep.OK() {
			failed++
			fmt.Fprintf(stdout, "%s: not pruned: the chain does not verify (%s); run phantom audit verify\n", c, rep.Problems[0])
			continue
		}
		if err := audit.Prune(dir, plan, f.archive, time.Now(), func(cp audit.Checkpoint) error { return st.PutAuditCheckpoint(ctx, cp) }); err != nil {
			return &exitError{code: 1, err: err}
		}
		where := "deleted"
		if f.archive != "" {
			where = "moved to " + filepath.Join(f.archive, c)
		}
		fmt.Fprintf(stdout, "%s: pruned segments %d to %d (records %d to %d), %s; checkpoint anchored\n",
			c, plan.Segments[0], plan.Segments[len(plan.Segments)-1], plan.FirstSeq, plan.Checkpoint.Seq, where)
	}
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d chains not pruned: they do not verify", failed)}
	}
	return nil
}
