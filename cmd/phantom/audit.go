package main

import (
	"bufio"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/admin"
	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/store"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Audit log tools: verify the hash chains and signatures, show events"}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditShowCmd(), newAuditPublicKeyCmd())
	return cmd
}

type auditVerifyFlags struct {
	publicKeys []string
	chains     []string
	output     string
}

func newAuditVerifyCmd() *cobra.Command {
	var f auditVerifyFlags
	cmd := &cobra.Command{
		Use:   "verify DIR",
		Short: "Check that no audit record was modified, removed, reordered or truncated",
		Long: `Verify checks every chain of the audit directory DIR (the data directory's "audit"
directory; each writer, such as "gateway" or "endpoint-vpce-…", has its own chain in a
subdirectory; a chain directory itself is accepted too):

  - each record's SHA-256 hash, and that it names the hash of the record before it, across
    segment files;
  - that sequence numbers run without gaps or repeats from 1;
  - each signed digest's Ed25519 signature, that digests follow one another, and that the
    segment still holds exactly the records, bytes and last hash each digest signs — so
    removing a whole segment, cutting records off, re-hashing edited records or replacing
    a digest is found.

Each problem names the chain, the file, the line and the record's sequence number. Exit
status 0: everything verifies (warnings are printed but do not fail: a partial last record
left by a crash, records written after the last digest, which is at most about a second's
worth on a running writer, and an unpinned key). 1: tampering found. 2: DIR or a key file
could not be used.

Without --public-key, digests are checked against the key file in each chain directory,
which anyone who can rewrite the log can replace: pin the key for a verdict that holds
against that. The key is a PEM "PUBLIC KEY" (Ed25519): print it with "phantom audit
public-key" where the master key is, and keep it away from the log.`,
		Example: `  phantom audit verify /var/lib/phantom/audit
  phantom audit verify /var/lib/phantom/audit --public-key audit-signer.pem --output json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAuditVerify(cmd.OutOrStdout(), args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.publicKeys, "public-key", nil, "PEM file of a trusted Ed25519 public key (repeatable; pins the key)")
	fl.StringArrayVar(&f.chains, "chain", nil, "verify only this chain (repeatable; default: every chain)")
	fl.StringVar(&f.output, "output", "text", "output format: text or json")
	auditUsageErrors(cmd)
	return cmd
}

// auditUsageErrors makes argument and flag errors exit 2.
func auditUsageErrors(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	args := cmd.Args
	cmd.Args = func(c *cobra.Command, a []string) error {
		if err := args(c, a); err != nil {
			return &exitError{code: 2, err: err}
		}
		return nil
	}
}

func runAuditVerify(stdout io.Writer, dir string, f auditVerifyFlags) error {
	if f.output != "text" && f.output != "json" {
		return &exitError{code: 2, err: fmt.Errorf("--output %q: want text or json", f.output)}
	}
	var opts audit.VerifyOptions
	for _, name := range f.publicKeys {
		data, err := os.ReadFile(name)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("read public key: %w", err)}
		}
		keys, err := audit.ParsePublicKeys(data)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("%s: %w", name, err)}
		}
		opts.PublicKeys = append(opts.PublicKeys, keys...)
	}
	opts.Chains = f.chains
	rep, err := audit.Verify(dir, opts)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if f.output == "json" {
		out := struct {
			OK bool `json:"ok"`
			*audit.Report
		}{rep.OK(), rep}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printAuditReport(stdout, rep, opts.PublicKeys)
	}
	if !rep.OK() {
		return &exitError{code: 1}
	}
	return nil
}

func printAuditReport(w io.Writer, rep *audit.Report, pinned []ed25519.PublicKey) {
	for _, c := range rep.Chains {
		fmt.Fprintf(w, "chain %s: %d records", c.Name, c.Records)
		if c.LastSeq > 0 {
			fmt.Fprintf(w, " (seq %d to %d)", c.FirstSeq, c.LastSeq)
		}
		fmt.Fprintf(w, " in %s, %s", plural(c.Segments, "segment"), plural(c.Digests, "signed digest"))
		if c.CoveredSeq > 0 {
			fmt.Fprintf(w, ", signed through seq %d at %s", c.CoveredSeq, c.LastDigest.Format("2006-01-02T15:04:05Z"))
		}
		fmt.Fprintln(w)
		if c.LastHash != "" {
			fmt.Fprintf(w, "  head %s\n", c.LastHash)
		}
	}
	for _, p := range rep.Warnings {
		fmt.Fprintf(w, "warning: %s\n", p)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "TAMPERED: %s\n", p)
	}
	key := "key pinned"
	if len(pinned) == 0 {
		key = "unpinned: checked against the log's own key file"
	} else {
		ids := make([]string, len(pinned))
		for i, k := range pinned {
			ids[i] = audit.KeyID(k)
		}
		key = "key pinned: " + strings.Join(ids, ", ")
	}
	if rep.OK() {
		fmt.Fprintf(w, "OK: %d records in %s verified (%s)\n", rep.Records, plural(len(rep.Chains), "chain"), key)
		return
	}
	fmt.Fprintf(w, "FAILED: %s; %d records verified in %s (%s)\n", plural(len(rep.Problems), "problem"), rep.Records, plural(len(rep.Chains), "chain"), key)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func newAuditShowCmd() *cobra.Command {
	var chains []string
	var after uint64
	cmd := &cobra.Command{
		Use:   "show DIR",
		Short: `Print audit events as a CloudTrail log file: {"Records": [...]}`,
		Long: `Show prints the events of the audit directory DIR, chain by chain and in order, as one
CloudTrail log file document {"Records": [...]}, so tools that read CloudTrail logs read
them. Each record's hash and its link to the one before are checked as it is read, and a
break stops the output with exit status 1; run "phantom audit verify" for the signatures.`,
		Example: `  phantom audit show /var/lib/phantom/audit --chain gateway | jq '.Records[] | select(.errorCode)'`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAuditShow(cmd.OutOrStdout(), args[0], chains, after)
		},
	}
	cmd.Flags().StringArrayVar(&chains, "chain", nil, "show only this chain (repeatable; default: every chain)")
	cmd.Flags().Uint64Var(&after, "after", 0, "show only records after this sequence number (with --chain)")
	auditUsageErrors(cmd)
	return cmd
}

func runAuditShow(stdout io.Writer, dir string, chains []string, after uint64) error {
	if len(chains) == 0 {
		all, err := audit.Chains(dir)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		if len(all) == 0 {
			return &exitError{code: 2, err: fmt.Errorf("no audit chain in %s", dir)}
		}
		chains = all
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	w.WriteString(`{"Records":[`)
	first := true
	for _, c := range chains {
		err := audit.ReadChain(dir, c, after, func(e audit.Entry) error {
			if !first {
				w.WriteByte(',')
			}
			first = false
			w.WriteString("\n")
			_, err := w.Write(e.Record.Event)
			return err
		})
		if err != nil {
			w.WriteString("\n]}\n")
			return &exitError{code: 1, err: err}
		}
	}
	w.WriteString("\n]}\n")
	return nil
}

func newAuditPublicKeyCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "public-key",
		Short: "Print the public key audit digests are signed with, to pin in audit verify",
		Long: `Public-key prints, as a PEM "PUBLIC KEY", the Ed25519 key every Phantom process derives
from the perimeter's master key to sign audit digests ($PHANTOM_MASTER_KEY, else the data
directory's master.key, which must exist: this command never creates one). Keep its output
where whoever can write the audit log cannot, and give it to "phantom audit verify
--public-key".`,
		Example: `  phantom audit public-key --data-dir /var/lib/phantom > audit-signer.pem`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditPublicKey(cmd.OutOrStdout(), admin.DataDir(dataDir, os.Getenv))
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data directory (default $PHANTOM_DATA_DIR or ./phantom-data)")
	auditUsageErrors(cmd)
	return cmd
}

func runAuditPublicKey(stdout io.Writer, dataDir string) error {
	if _, ok := os.LookupEnv(store.MasterKeyEnv); !ok {
		if _, err := os.Stat(filepath.Join(dataDir, store.MasterKeyFile)); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("no master key: %w (set %s or --data-dir)", err, store.MasterKeyEnv)}
		}
	}
	mk, err := store.LoadOrCreateMasterKey(dataDir)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	signer, err := audit.DeriveSigner(mk)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	p, err := audit.MarshalPublicKey(signer.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	_, err = stdout.Write(p)
	return err
}
