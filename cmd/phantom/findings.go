package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/admin"
	"github.com/phantom-perimeter/phantom/internal/datadir"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/export"
	"github.com/phantom-perimeter/phantom/internal/detect/respond"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// findingsFlags are the flags every findings command shares.
type findingsFlags struct {
	dataDir string
	output  string
	format  string
	store   string
}

const findingsHelp = `
Every command works on the store of one data directory: --data-dir, else $PHANTOM_DATA_DIR,
else ./phantom-data — the directory a running 'phantom up --data-dir DIR' uses (the commands
share its database safely while it runs). --output table (the default for list) or json;
--format guardduty (GuardDuty's finding JSON, the default), ocsf (OCSF 1.1 Detection
Finding, class 2004) or asff (AWS Security Finding Format, as Security Hub's
BatchImportFindings takes it) selects the JSON shape and implies --output json. A finding
may be named by a unique prefix of its id (the table shows 12 characters). A finding that
does not exist is reported as the AWS CLI reports a service error, with exit status 254;
other failures exit 1, usage errors 2.`

func newFindingsCmd() *cobra.Command {
	f := new(findingsFlags)
	cmd := &cobra.Command{
		Use:   "findings",
		Short: "List, show, archive and export the detector's findings",
		Long: `List, show and archive the GuardDuty-style findings the detector raised, and export
them as OCSF or ASFF for a SIEM or Security Hub.` + findingsHelp,
	}
	p := cmd.PersistentFlags()
	p.StringVar(&f.dataDir, "data-dir", "", "data directory (default $PHANTOM_DATA_DIR or ./phantom-data)")
	p.StringVar(&f.output, "output", "", "output: table or json (default: table for list, json for show)")
	p.StringVar(&f.format, "format", "", "JSON shape: guardduty, ocsf or asff (implies --output json)")
	p.StringVar(&f.store, "store", os.Getenv("PHANTOM_STORE"), "store URL: empty for SQLite in the data directory, or the postgres://… the components share (default $PHANTOM_STORE)")
	cmd.AddCommand(newFindingsListCmd(f), newFindingsShowCmd(f), newFindingsArchiveCmd(f), newFindingsRiskCmd(f), newFindingsLiftCmd(f))
	return cmd
}

// outputMode resolves --output and --format: table, or JSON in one of the formats.
func (f *findingsFlags) outputMode(defaultOutput string) (table bool, format string, err error) {
	format = f.format
	switch format {
	case "", "guardduty", "ocsf", "asff":
	default:
		return false, "", &exitError{code: 2, err: fmt.Errorf("--format %q: want guardduty, ocsf or asff", format)}
	}
	out := f.output
	if out == "" {
		out = defaultOutput
		if format != "" {
			out = "json"
		}
	}
	switch out {
	case "table":
		if format != "" && format != "guardduty" {
			return false, "", &exitError{code: 2, err: fmt.Errorf("--format %s is JSON: drop --output table", format)}
		}
		return true, "", nil
	case "json":
		if format == "" {
			format = "guardduty"
		}
		return false, format, nil
	}
	return false, "", &exitError{code: 2, err: fmt.Errorf("--output %q: want table or json", out)}
}

// open opens the data directory's store; the directory must hold a perimeter already.
func (f *findingsFlags) open(ctx context.Context) (store.Store, error) {
	dir := datadir.Dir(f.dataDir, os.Getenv)
	if f.store != "" && !store.IsPostgresURL(f.store) {
		return nil, &exitError{code: 2, err: errors.New("--store: want a postgres:// URL, or none for the data directory's SQLite store")}
	}
	if _, err := os.Stat(filepath.Join(dir, store.DBFile)); err != nil && f.store == "" {
		return nil, &exitError{code: 1, err: fmt.Errorf("no perimeter in %s (%s not found): pass the --data-dir that 'phantom up' uses", dir, store.DBFile)}
	}
	mk, err := store.LoadOrCreateMasterKey(dir)
	if err != nil {
		return nil, &exitError{code: 1, err: err}
	}
	st, err := store.Open(ctx, store.OpenConfig{URL: f.store, DataDir: dir, MasterKey: mk})
	if err != nil {
		return nil, &exitError{code: 1, err: err}
	}
	return st, nil
}

// findingsError prints a finding that cannot be found as the AWS CLI prints GuardDuty's
// errors, exit 254; anything else exits 1.
func findingsError(cmd *cobra.Command, op string, err error) error {
	var nf *findingNotFound
	if errors.As(err, &nf) {
		fmt.Fprintf(cmd.ErrOrStderr(), "An error occurred (BadRequestException) when calling the %s operation: %s\n", op, nf.msg)
		return &exitError{code: admin.ServiceErrorExitCode}
	}
	return &exitError{code: 1, err: err}
}

type findingNotFound struct{ msg string }

func (e *findingNotFound) Error() string { return e.msg }

// resolveFinding returns the finding with this id or, failing that, the one finding
// whose id starts with it.
func resolveFinding(ctx context.Context, st store.Store, id string) (store.Finding, error) {
	rec, err := st.GetFinding(ctx, id)
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		return rec, err
	}
	if len(id) >= 4 {
		all, err := st.ListFindings(ctx, store.FindingFilter{})
		if err != nil {
			return store.Finding{}, err
		}
		var match []store.Finding
		for _, r := range all {
			if strings.HasPrefix(r.ID, id) {
				match = append(match, r)
			}
		}
		switch len(match) {
		case 1:
			return match[0], nil
		case 0:
		default:
			return store.Finding{}, &findingNotFound{fmt.Sprintf("The finding id prefix %s matches %d findings; give more of the id.", id, len(match))}
		}
	}
	return store.Finding{}, &findingNotFound{fmt.Sprintf("The finding %s does not exist.", id)}
}

func newFindingsListCmd(f *findingsFlags) *cobra.Command {
	var (
		archived, all bool
		typ           string
		minSeverity   float64
		limit         int
	)
	cmd := &cobra.Command{
		Use:   "list [--archived|--all] [--type TYPE] [--min-severity N] [--limit N]",
		Short: "List findings, most recently updated first (current ones unless --archived or --all)",
		Long: `List findings, most recently updated first: the current (unarchived) ones, only the
archived ones with --archived, or both with --all. The table shows id (12 characters),
type, severity, count, principal, last seen and archived; --output json prints
{"findings": [...]} in GuardDuty's shape, --format ocsf a JSON array of OCSF Detection
Findings, --format asff {"Findings": [...]} for Security Hub.` + findingsHelp,
		Example: `  phantom findings list --data-dir phantom-data
  phantom findings list --min-severity 7 --type UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS
  phantom findings list --all --output json | jq -r '.findings[] | [.id, .type, .severity] | @tsv'
  phantom findings list --format asff > findings.asff.json   # for Security Hub's BatchImportFindings`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			table, format, err := f.outputMode("table")
			if err != nil {
				return err
			}
			if archived && all {
				return &exitError{code: 2, err: errors.New("--archived and --all exclude each other")}
			}
			if limit < 0 || minSeverity < 0 {
				return &exitError{code: 2, err: errors.New("--limit and --min-severity must not be negative")}
			}
			st, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			flt := store.FindingFilter{Type: typ, MinSeverity: minSeverity, Limit: limit}
			if !all {
				flt.Archived = &archived
			}
			recs, err := st.ListFindings(cmd.Context(), flt)
			if err != nil {
				return findingsError(cmd, "ListFindings", err)
			}
			fs := make([]detect.Finding, 0, len(recs))
			for _, r := range recs {
				d, err := export.FromStore(r)
				if err != nil {
					return findingsError(cmd, "ListFindings", err)
				}
				fs = append(fs, d)
			}
			if table {
				return writeFindingsTable(cmd.OutOrStdout(), fs)
			}
			return writeJSON(cmd.OutOrStdout(), export.List(format, fs))
		},
	}
	cmd.Flags().BoolVar(&archived, "archived", false, "list only archived findings")
	cmd.Flags().BoolVar(&all, "all", false, "list archived and current findings")
	cmd.Flags().StringVar(&typ, "type", "", "only findings of this type (exact)")
	cmd.Flags().Float64Var(&minSeverity, "min-severity", 0, "only findings of at least this severity (1 to 8.9)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many findings (0: all)")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func severityText(sev float64) string {
	return export.SeverityLabel(sev) + " " + strconv.FormatFloat(sev, 'f', 1, 64)
}

// orDash is s, or "-" for a table cell or a line field with nothing to show.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shortTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func writeFindingsTable(w io.Writer, fs []detect.Finding) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSEVERITY\tCOUNT\tPRINCIPAL\tLAST SEEN\tARCHIVED")
	for _, f := range fs {
		id := f.ID
		if len(id) > 12 {
			id = id[:12]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%v\n", id, f.Type, severityText(f.Severity), f.Service.Count,
			orDash(export.Principal(f)), shortTime(f.Service.EventLastSeen), f.Service.Archived)
	}
	return tw.Flush()
}

func writeFindingDetail(w io.Writer, f detect.Finding) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("Id", f.ID)
	row("Type", f.Type)
	row("Severity", severityText(f.Severity))
	row("Title", f.Title)
	row("Description", f.Description)
	row("Principal", export.Principal(f))
	if d := f.Resource.AccessKeyDetails; d != nil {
		row("AccessKeyId", d.AccessKeyID)
	}
	if c := f.Service.Action.AWSAPICallAction; c != nil {
		row("Api", c.ServiceName+" "+c.API)
		if ip := c.RemoteIPDetails; ip != nil {
			row("RemoteIp", ip.IPAddressV4+ip.IPAddressV6)
		}
	}
	row("Count", strconv.Itoa(f.Service.Count))
	row("FirstSeen", shortTime(f.Service.EventFirstSeen))
	row("LastSeen", shortTime(f.Service.EventLastSeen))
	row("Archived", strconv.FormatBool(f.Service.Archived))
	if rs, ok := f.Service.AdditionalInfo["phantomResponses"].([]any); ok {
		var names []string
		for _, r := range rs {
			names = append(names, fmt.Sprint(r))
		}
		row("Responses", strings.Join(names, ", "))
	}
	if len(f.Service.Evidence) > 0 {
		row("Evidence", strings.Join(f.Service.Evidence, ", "))
	}
	return tw.Flush()
}

func newFindingsShowCmd(f *findingsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one finding (JSON by default; --output table for a summary)",
		Long: `Print one finding: its GuardDuty JSON (type, severity, resource with the access key and
principal, action with the API and remote address, count, first and last seen, and the
responses applied to it), or with --format its OCSF or ASFF form; --output table prints a
summary instead.` + findingsHelp,
		Example: `  phantom findings show 3f9c2a1b7d4e
  phantom findings show 3f9c2a1b7d4e --output table
  phantom findings show 3f9c2a1b7d4e --format ocsf | jq .finding_info`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			table, format, err := f.outputMode("json")
			if err != nil {
				return err
			}
			st, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			rec, err := resolveFinding(cmd.Context(), st, args[0])
			if err != nil {
				return findingsError(cmd, "GetFindings", err)
			}
			fd, err := export.FromStore(rec)
			if err != nil {
				return findingsError(cmd, "GetFindings", err)
			}
			if table {
				return writeFindingDetail(cmd.OutOrStdout(), fd)
			}
			return writeJSON(cmd.OutOrStdout(), export.One(format, fd))
		},
	}
}

func newFindingsArchiveCmd(f *findingsFlags) *cobra.Command {
	var unarchive bool
	cmd := &cobra.Command{
		Use:   "archive ID... [--unarchive]",
		Short: "Archive findings (or bring them back with --unarchive)",
		Long: `Archive findings, as GuardDuty's ArchiveFindings does: they leave the default list
but are kept, and keep being updated when their activity repeats (still archived). Prints
one line per finding: "archived ID TYPE PRINCIPAL" ("unarchived …" with --unarchive).
Every id is checked before any is changed.` + findingsHelp,
		Example: `  phantom findings archive 3f9c2a1b7d4e 8e71d0c2a9b5
  phantom findings archive --unarchive 3f9c2a1b7d4e`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			op := "ArchiveFindings"
			if unarchive {
				op = "UnarchiveFindings"
			}
			st, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			recs := make([]store.Finding, 0, len(args))
			for _, a := range args {
				rec, err := resolveFinding(cmd.Context(), st, a)
				if err != nil {
					return findingsError(cmd, op, err)
				}
				recs = append(recs, rec)
			}
			done := "archived"
			if unarchive {
				done = "unarchived"
			}
			for _, rec := range recs {
				if err := st.ArchiveFinding(cmd.Context(), rec.ID, !unarchive); err != nil {
					return findingsError(cmd, op, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s %s\n", done, rec.ID, rec.Type, orDash(rec.Principal))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&unarchive, "unarchive", false, "unarchive instead")
	return cmd
}

func newFindingsRiskCmd(f *findingsFlags) *cobra.Command {
	var clear string
	cmd := &cobra.Command{
		Use:   "risk-levels [--clear PRINCIPAL_ARN]",
		Short: "List principals' raised phantom:RiskLevel, or clear one",
		Long: `List the phantom:RiskLevel that responses raised, per principal ARN, with the finding
that raised it. Responses only ever raise a level; --clear PRINCIPAL_ARN lowers it back to
none (running gateways apply it within a second).` + findingsHelp,
		Example: `  phantom findings risk-levels
  phantom findings risk-levels --clear arn:aws:iam::123456789012:role/app`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			table, _, err := f.outputMode("table")
			if err != nil {
				return err
			}
			st, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			if clear != "" {
				if err := st.DeleteRiskLevel(cmd.Context(), clear); err != nil {
					if errors.Is(err, store.ErrNotFound) {
						err = &findingNotFound{fmt.Sprintf("The principal %s has no risk level.", clear)}
					}
					return findingsError(cmd, "ClearRiskLevel", err)
				}
				return nil
			}
			levels, err := st.ListRiskLevels(cmd.Context())
			if err != nil {
				return findingsError(cmd, "ListRiskLevels", err)
			}
			if !table {
				type level struct {
					Principal string `json:"principal"`
					RiskLevel string `json:"riskLevel"`
					FindingID string `json:"findingId"`
					SetAt     string `json:"setAt"`
				}
				out := make([]level, 0, len(levels))
				for _, l := range levels {
					out = append(out, level{l.Principal, l.Level, l.FindingID, l.SetAt.UTC().Format(time.RFC3339)})
				}
				return writeJSON(cmd.OutOrStdout(), map[string]any{"riskLevels": out})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PRINCIPAL\tRISK LEVEL\tFINDING\tSET AT")
			for _, l := range levels {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.Principal, l.Level, l.FindingID, shortTime(l.SetAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&clear, "clear", "", "clear this principal's risk level")
	return cmd
}

func newFindingsLiftCmd(f *findingsFlags) *cobra.Command {
	var reason, auditDir string
	cmd := &cobra.Command{
		Use:   "lift ID --reason TEXT",
		Short: "Break glass: lift the effects of the responses applied to a finding",
		Long: `Lift what the automatic responses did to a finding's principal, when they hit the wrong
one: a disabled access key is made Active again, a raised phantom:RiskLevel is cleared
(when it is still the one this finding raised). Revoked sessions cannot be lifted: they
include the session that was stolen, and lifting would let it in again; their holders get
new ones (a node's agent already has, people assume the role again). The finding keeps its
record of the actions, so its repeats do not apply them again; to keep new findings off
the principal, add it to detection.protectedPrincipals.

The command is audited in the chain "admin" (in --audit-dir, default DATA_DIR/audit: the
spec's audit.dir): who ran it (the operating-system user and host), the finding, the
--reason, and what was lifted. Prints {"FindingId", "Lifted": [{"Action", "Result",
"Detail"}]}; Result is Lifted, NotLiftable or NothingToLift.` + findingsHelp,
		Example: `  phantom findings lift 3f9c2a1b7d4e --reason "INC-4711: alice's key disabled by a false positive"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return &exitError{code: 2, err: errors.New("--reason is required: say why the glass is broken")}
			}
			st, err := f.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			rec, err := resolveFinding(cmd.Context(), st, args[0])
			if err != nil {
				return findingsError(cmd, "LiftResponses", err)
			}
			fd, err := export.FromStore(rec)
			if err != nil {
				return findingsError(cmd, "LiftResponses", err)
			}
			dir := datadir.Dir(f.dataDir, os.Getenv)
			if auditDir == "" {
				auditDir = filepath.Join(dir, "audit")
			}
			mk, err := store.LoadOrCreateMasterKey(dir)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			// The chain is held before anything is lifted: a lift that could not be
			// recorded does not happen.
			rec2, err := admin.OpenRecorder(admin.AuditTarget{Dir: auditDir, MasterKey: mk, Account: fd.AccountID, Region: fd.Region})
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("break glass refused: the admin audit chain cannot be written: %w", err)}
			}
			defer rec2.Close()
			res, err := respond.Lift(cmd.Context(), st, rec.ID, time.Now())
			lifted := make([]map[string]any, 0, len(res))
			for _, r := range res {
				lifted = append(lifted, map[string]any{"action": r.Action, "result": r.Result, "detail": r.Detail})
			}
			params := map[string]any{"findingId": rec.ID, "findingType": fd.Type, "principal": export.Principal(fd), "reason": reason}
			resp := map[string]any{"lifted": lifted}
			if err != nil {
				resp["error"] = err.Error()
			}
			if aerr := rec2.Record(cmd.Context(), "LiftResponses", params, resp); aerr != nil {
				return &exitError{code: 1, err: fmt.Errorf("the lift of finding %s could not be audited: %w", rec.ID, errors.Join(aerr, err))}
			}
			if err != nil {
				return findingsError(cmd, "LiftResponses", err)
			}
			type item struct{ Action, Result, Detail string }
			out := struct {
				FindingId string
				Lifted    []item
			}{FindingId: rec.ID, Lifted: []item{}}
			for _, r := range res {
				out.Lifted = append(out.Lifted, item{r.Action, r.Result, r.Detail})
			}
			return writeJSON(cmd.OutOrStdout(), out)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit event; required)")
	cmd.Flags().StringVar(&auditDir, "audit-dir", "", "audit directory for the admin chain (default DATA_DIR/audit)")
	return cmd
}
