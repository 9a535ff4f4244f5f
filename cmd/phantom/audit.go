package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/datadir"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Audit log tools: verify the chains against their anchors, show events, export anchors, prune"}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditShowCmd(), newAuditAnchorsCmd(), newAuditPruneCmd(), newAuditPublicKeyCmd())
	return cmd
}

type auditVerifyFlags struct {
	publicKeys []string
	chains     []string
	output     string
	store      string
	dataDir    string
	anchors    string
	ca         string
	verbose    bool
}

func newAuditVerifyCmd() *cobra.Command {
	var f auditVerifyFlags
	cmd := &cobra.Command{
		Use:   "verify DIR",
		Short: "Check that no audit record was modified, removed, reordered or truncated, and no chain cut back or deleted",
		Long: `Verify checks every chain of the audit directory DIR (the data directory's "audit"
directory; each writer, such as "gateway" or "endpoint-vpce-…", has its own chain in a
subdirectory; a chain directory itself is accepted too):

  - each record's SHA-256 hash, and that it names the hash of the record before it, across
    segment files; that sequence numbers run without gaps or repeats;
  - each signed digest's Ed25519 signature, by the key the perimeter CA certified for
    that chain's writer (a digest signed by an unknown key, or by another chain's, is
    named), that digests follow one another, and that the segment still holds exactly
    the records, bytes and last hash each digest signs;
  - against the anchors — the head every digest recorded in the store, out of the
    writer's reach — that every chain the store knows is there and still holds every
    anchored head: a chain cut back to an earlier digest, emptied, deleted, or replaced
    by a shorter valid one is found, naming the chain and the records missing. Gaps a
    prune checkpoint accounts for are reported as pruned.

The anchors come from --anchors FILE (phantom audit anchors export), else --store URL
(a PostgreSQL store, or a schema an audit anchor sink writes to), else the store of the
data directory DIR is in (--data-dir says which when DIR is elsewhere), read without
changing it. The CA certificate comes from --ca, else the data directory's ca.pem.
Without anchors or the CA it says plainly what it could not detect.

Each problem names the chain, the file, the line and the record's sequence number; one
line per chain and kind of problem (--verbose lists them all, and each chain). Exit
status 0: everything verifies (warnings are printed but do not fail: a partial last
record left by a crash, records written after the last digest, at most about a second's
worth on a running writer). 1: tampering found. 2: DIR, a key file or the anchor source
could not be used.`,
		Example: `  phantom audit verify /var/lib/phantom/audit
  phantom audit verify /srv/audit --store 'postgres://auditor@db.internal/phantom' --ca /var/lib/phantom/ca.pem
  phantom audit anchors export --data-dir /var/lib/phantom --output anchors.json
  phantom audit verify ./audit-copy --anchors anchors.json --ca ca.pem --output json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAuditVerify(cmd.Context(), cmd.OutOrStdout(), args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.publicKeys, "public-key", nil, "PEM file of a trusted Ed25519 public key, for any chain (repeatable; chains written before writers had certified keys: phantom audit public-key)")
	fl.StringArrayVar(&f.chains, "chain", nil, "verify only this chain (repeatable; default: every chain)")
	fl.StringVar(&f.output, "output", "text", "output format: text or json")
	fl.StringVar(&f.store, "store", os.Getenv("PHANTOM_STORE"), "PostgreSQL store (or anchor sink) holding the anchors: postgres://… (default $PHANTOM_STORE)")
	fl.StringVar(&f.dataDir, "data-dir", "", "data directory whose store holds the anchors and whose ca.pem is the CA (default: the one DIR is in, if it is one)")
	fl.StringVar(&f.anchors, "anchors", "", "anchor set exported by phantom audit anchors export, for an offline check")
	fl.StringVar(&f.ca, "ca", "", "PEM file of the perimeter CA certificate (default: the data directory's ca.pem)")
	fl.BoolVar(&f.verbose, "verbose", false, "list every problem and warning, and a line per chain")
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

func runAuditVerify(ctx context.Context, stdout io.Writer, dir string, f auditVerifyFlags) error {
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
	dataDir := f.dataDir
	if dataDir == "" {
		dataDir = auditDataDir(dir)
	}
	var err error
	if opts.Signers, err = auditSigners(f.ca, dataDir); err != nil {
		return &exitError{code: 2, err: err}
	}
	if opts.Anchors, err = anchorSet(ctx, f.anchors, f.store, dataDir); err != nil {
		return &exitError{code: 2, err: err}
	}
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
		printAuditReport(stdout, rep, f.verbose)
	}
	if !rep.OK() {
		return &exitError{code: 1}
	}
	return nil
}

// auditDataDir is the data directory an audit directory is in (DATA_DIR/audit): the
// parent, when it holds a store or a CA bundle; "" otherwise.
func auditDataDir(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for _, d := range []string{filepath.Dir(abs), filepath.Dir(filepath.Dir(abs))} { // DIR, or a chain directory in it
		for _, f := range []string{store.DBFile, "ca.pem"} {
			if _, err := os.Stat(filepath.Join(d, f)); err == nil {
				return d
			}
		}
	}
	return ""
}

// auditSigners is the perimeter CA that certifies writers' keys: caFile, else the data
// directory's ca.pem; nil when there is neither.
func auditSigners(caFile, dataDir string) (audit.SignerVerifier, error) {
	if caFile == "" && dataDir != "" {
		if _, err := os.Stat(filepath.Join(dataDir, "ca.pem")); err == nil {
			caFile = filepath.Join(dataDir, "ca.pem")
		}
	}
	if caFile == "" {
		return nil, nil
	}
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read the CA certificate: %w", err)
	}
	v, err := caVerifier(pemData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", caFile, err)
	}
	return v, nil
}

// writerCA checks writers' certificates with a pki.Verifier (audit.SignerVerifier).
type writerCA struct{ v *pki.Verifier }

func (c writerCA) VerifyAuditSigner(der []byte) (audit.SignerInfo, error) {
	s, err := c.v.VerifyAuditSigner(der)
	return audit.SignerInfo{Chain: s.Chain, Key: s.Key, NotBefore: s.NotBefore, NotAfter: s.NotAfter}, err
}

// caVerifier trusts the CA certificate in pemData for its own account.
func caVerifier(pemData []byte) (writerCA, error) {
	b, _ := pem.Decode(pemData)
	if b == nil || b.Type != "CERTIFICATE" {
		return writerCA{}, errors.New("no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return writerCA{}, err
	}
	v, err := pki.NewVerifier(pemData, cert.Subject.SerialNumber, nil)
	if err != nil {
		return writerCA{}, err
	}
	return writerCA{v}, nil
}

// anchorSet reads the anchors: file, else the PostgreSQL store at storeURL, else the
// SQLite store in dataDir; nil when there is none of them.
func anchorSet(ctx context.Context, file, storeURL, dataDir string) (*audit.AnchorSet, error) {
	switch {
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read the anchors: %w", err)
		}
		var set audit.AnchorSet
		if err := json.Unmarshal(data, &set); err != nil {
			return nil, fmt.Errorf("%s: not an anchor set: %w", file, err)
		}
		set.Source = file
		return &set, nil
	case store.IsPostgresURL(storeURL):
		c, err := store.OpenAnchorClient(ctx, storeURL)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		set, err := c.AuditAnchorSet(ctx)
		if err != nil {
			return nil, err
		}
		return &set, nil
	case storeURL != "" && storeURL != "sqlite":
		return nil, fmt.Errorf("--store %q: want a postgres:// URL (SQLite anchors are read from the data directory)", store.RedactURL(storeURL))
	case dataDir != "":
		set, err := store.ReadAuditAnchors(ctx, dataDir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return &set, nil
	}
	return nil, nil
}

// printAuditReport prints the verdict: problems first (one line per chain and kind unless
// verbose), then warnings grouped by kind, the pruned gaps, what could not be checked,
// and a last line saying OK or FAILED.
func printAuditReport(w io.Writer, rep *audit.Report, verbose bool) {
	if verbose {
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
	}
	type group struct{ chain, kind string }
	shown, more := map[group]bool{}, map[string]int{}
	for _, p := range rep.Problems {
		g := group{p.Chain, string(p.Kind)}
		if !verbose && shown[g] {
			more[p.Chain]++
			continue
		}
		shown[g] = true
		fmt.Fprintf(w, "TAMPERED: %s\n", p)
	}
	for _, c := range slices.Sorted(maps.Keys(more)) {
		fmt.Fprintf(w, "  and %s more in chain %s (--verbose lists them)\n", plural(more[c], "problem"), c)
	}
	ws := rep.Warnings
	if rep.Keys == "unpinned" && !verbose {
		// One "not checked" line below says it for every chain.
		ws = slices.DeleteFunc(slices.Clone(ws), func(p audit.Problem) bool { return p.Kind == audit.Unpinned })
	}
	printWarnings(w, ws, verbose)
	for _, p := range rep.Pruned {
		fmt.Fprintf(w, "pruned: %s\n", p)
	}
	for _, l := range rep.Limits {
		if strings.HasPrefix(l, "records written after") && !verbose {
			continue // the not-covered warnings say it when it matters
		}
		fmt.Fprintf(w, "not checked: %s\n", l)
	}
	keys := map[string]string{"certified": "keys certified by the perimeter CA", "pinned": "keys pinned", "unpinned": "keys unpinned"}[rep.Keys]
	if rep.Anchors != "" {
		keys += "; anchors " + rep.Anchors
	} else {
		keys += "; no anchors"
	}
	if rep.OK() {
		fmt.Fprintf(w, "OK: %d records in %s verified (%s)\n", rep.Records, plural(len(rep.Chains), "chain"), keys)
		return
	}
	chains := map[string]bool{}
	for _, p := range rep.Problems {
		chains[p.Chain] = true
	}
	fmt.Fprintf(w, "FAILED: %s in %s (%s); %d records in %s verified (%s)\n", plural(len(rep.Problems), "problem"), plural(len(chains), "chain"),
		strings.Join(slices.Sorted(maps.Keys(chains)), ", "), rep.Records, plural(len(rep.Chains), "chain"), keys)
}

// printWarnings prints the warnings, one line per kind that recurs across chains.
func printWarnings(w io.Writer, ws []audit.Problem, verbose bool) {
	byKind := map[audit.Kind][]audit.Problem{}
	var kinds []audit.Kind
	for _, p := range ws {
		if _, ok := byKind[p.Kind]; !ok {
			kinds = append(kinds, p.Kind)
		}
		byKind[p.Kind] = append(byKind[p.Kind], p)
	}
	for _, k := range kinds {
		ps := byKind[k]
		if verbose || len(ps) == 1 {
			for _, p := range ps {
				fmt.Fprintf(w, "warning: %s\n", p)
			}
			continue
		}
		names := make([]string, len(ps))
		for i, p := range ps {
			names[i] = p.Chain
			if p.Kind == audit.NotCovered && p.Seq > 0 {
				names[i] += fmt.Sprintf(" from seq %d", p.Seq)
			}
		}
		fmt.Fprintf(w, "warning: %s, %d chains (%s): %s\n", k, len(ps), strings.Join(names, ", "), ps[0].Message)
	}
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
		Short: "Print the key older audit chains were signed with, to pin in audit verify",
		Long: `Public-key prints, as a PEM "PUBLIC KEY", the Ed25519 key every Phantom process used to
derive from the perimeter's master key to sign audit digests ($PHANTOM_MASTER_KEY, else
the data directory's master.key, which must exist: this command never creates one).
Writers now sign with keys of their own that the perimeter CA certifies for one chain
each, which verification checks against the CA; chains written before that verify with
this key pinned ("phantom audit verify --public-key"). Keep its output where whoever can
write the audit log cannot.`,
		Example: `  phantom audit public-key --data-dir /var/lib/phantom > audit-signer.pem`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditPublicKey(cmd.OutOrStdout(), datadir.Dir(dataDir, os.Getenv))
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
	signer, err := keys.DeriveEd25519(mk, keys.AuditLegacy)
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
