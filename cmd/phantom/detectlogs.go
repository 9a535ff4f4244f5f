package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/sigma"
)

type detectFlags struct {
	input          string
	output         string
	threatLists    []string
	adminUsers     []string
	learningPeriod time.Duration
	config         string
	sigmaRules     string
	stats          bool
}

func newDetectCmd() *cobra.Command {
	f := new(detectFlags)
	cmd := &cobra.Command{
		Use:   "detect --input FILE|DIR",
		Short: "Run the detector over CloudTrail log files (batch)",
		Long: `Run the detector's rules over CloudTrail events after the fact: CloudTrail log files
({"Records":[...]}), JSON arrays or JSON lines of events, or Phantom audit chain records,
gzipped or not; a directory is read in name order. Prints the findings (deduplicated: a
repeat raises the count) as a table or, with --output json, a JSON array of GuardDuty
findings.

Every file it can read is read: a file it cannot read or parse, and records it cannot
use (a field in a format CloudTrail does not write, a value that is not an event), are
counted and named on stderr, and the rest is still analysed. Files that are JSON but hold
no CloudTrail event (a dataset's labels.json, CloudTrail digest files) are skipped, and
named. Exit status: 0 no findings, everything read; 1 findings, everything read; 2 input
that could not be used (no readable CloudTrail at all, some files or records unreadable
without findings, or bad usage); 3 findings, but some input could not be read.

--config takes the account, region, learning period and threat lists of a spec; flags
override it. --threat-list NAME=FILE adds a list (one address or CIDR a line, # comments;
a NAME containing "tor" raises TorIPCaller, any other MaliciousIPCaller.Custom).
--learning-period 0 scores from each principal's first event.

--sigma-rules DIR runs the Sigma rules for AWS CloudTrail under DIR (logsource product
aws, service cloudtrail; e.g. SigmaHQ's rules/cloud/aws/cloudtrail) on every event: a
match is a <Tactic>:IAMUser/Sigma!<rule id> finding with the rule's title, level, author
and source. Rules that cannot be loaded are listed on stderr with the reason; the others
run. It overrides the spec's detection.sigmaRules.

A run holds its findings and baselines in memory and garbage-collects at GOGC=200
(5-10% less CPU for about a sixth more memory) unless GOGC is set.`,
		Example: `  phantom detect --input ./AWSLogs/123456789012/CloudTrail/ --output json
  phantom detect --input trail.json.gz --threat-list tor=tor-exits.txt --stats
  phantom detect --input ./AWSLogs/ --sigma-rules ./sigma/rules/cloud/aws/cloudtrail`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDetect(cmd.OutOrStdout(), cmd.ErrOrStderr(), f, cmd.Flags().Changed("learning-period"))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.input, "input", "", "CloudTrail log file or directory (required)")
	fl.StringVar(&f.output, "output", "table", "output: table or json")
	fl.StringArrayVar(&f.threatLists, "threat-list", nil, "threat list NAME=FILE (repeatable)")
	fl.StringArrayVar(&f.adminUsers, "admin-user", nil, "IAM user name or ARN whose long-term keys are administrator keys (repeatable)")
	fl.DurationVar(&f.learningPeriod, "learning-period", 7*24*time.Hour, "per-principal learning period before anomalies are scored")
	fl.StringVar(&f.config, "config", "", "spec file for account, region, learning period, threat lists, Sigma rules and peer groups")
	fl.StringVar(&f.sigmaRules, "sigma-rules", "", "directory of Sigma rules for AWS CloudTrail to run on every event")
	fl.BoolVar(&f.stats, "stats", false, "print events, findings and throughput on stderr")
	auditUsageErrors(cmd)
	return cmd
}

func runDetect(stdout, stderr io.Writer, f *detectFlags, lpSet bool) error {
	if f.input == "" {
		return &exitError{code: 2, err: fmt.Errorf("--input is required")}
	}
	if f.output != "table" && f.output != "json" {
		return &exitError{code: 2, err: fmt.Errorf("--output %q: want table or json", f.output)}
	}
	cfg := detect.Config{LearningPeriod: f.learningPeriod, AdminUsers: f.adminUsers}
	if f.config != "" {
		spec, err := config.Load(f.config)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		cfg.Account, cfg.Region = spec.Account, spec.Region
		cfg.ThreatLists = spec.Detection.ThreatLists
		cfg.SigmaRules = spec.Detection.SigmaRules
		cfg.PeerGroups = detect.PeerGroups(spec)
		cfg.AdminUsers = append(cfg.AdminUsers, detect.AdminUsers(spec)...)
		if !lpSet {
			cfg.LearningPeriod = spec.Detection.LearningPeriod
		}
	}
	for _, tl := range f.threatLists {
		name, file, ok := strings.Cut(tl, "=")
		if !ok || name == "" || file == "" {
			return &exitError{code: 2, err: fmt.Errorf("--threat-list %q: want NAME=FILE", tl)}
		}
		cfg.ThreatLists = append(cfg.ThreatLists, config.ThreatList{Name: name, File: file})
	}
	if f.sigmaRules != "" {
		cfg.SigmaRules = f.sigmaRules
	}
	det, err := detect.New(cfg)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	reportSigma(stderr, det.SigmaRules())
	if os.Getenv("GOGC") == "" {
		// A batch run's live heap is its findings and baselines, which only grow:
		// collecting at three times the live heap instead of twice costs about a sixth
		// more peak memory (about 550 instead of 470 MB over a 600k-event trail with
		// SigmaHQ's rules) and saves 5-10% of the CPU. The operator's GOGC decides.
		defer debug.SetGCPercent(debug.SetGCPercent(detectGCPercent))
	}
	start := time.Now()
	rep, err := detect.ReadEvents(f.input, func(ev *audit.Event) error {
		det.Feed(ev)
		return nil
	})
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	n := rep.Events
	inputProblem := reportInput(stderr, f.input, rep)
	if rep.Files == 0 {
		return &exitError{code: 2, err: fmt.Errorf("no CloudTrail events could be read from %s", f.input)}
	}
	elapsed := time.Since(start)
	findings := det.Findings()
	sort.Slice(findings, func(i, j int) bool {
		a, b := findings[i], findings[j]
		if !a.Service.EventFirstSeen.Equal(b.Service.EventFirstSeen) {
			return a.Service.EventFirstSeen.Before(b.Service.EventFirstSeen)
		}
		return a.ID < b.ID
	})
	if f.stats {
		rate := float64(n) / elapsed.Seconds()
		fmt.Fprintf(stderr, "phantom detect: %d events, %d findings in %s (%.0f events/s)\n", n, len(findings), elapsed.Round(time.Millisecond), rate)
	}
	if f.output == "json" {
		if findings == nil {
			findings = []detect.Finding{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(findings); err != nil {
			return &exitError{code: 1, err: err}
		}
	} else {
		bw := bufio.NewWriterSize(stdout, 64<<10) // a table of many findings: not a write per cell
		tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEVERITY\tTYPE\tPRINCIPAL\tAPI\tCOUNT\tFIRST SEEN\tID")
		for _, x := range findings {
			principal := ""
			if k := x.Resource.AccessKeyDetails; k != nil {
				principal = k.PrincipalARN
				if principal == "" {
					principal = k.AccessKeyID
				}
			}
			api := ""
			if a := x.Service.Action.AWSAPICallAction; a != nil {
				api = a.API
			}
			fmt.Fprintf(tw, "%.1f\t%s\t%s\t%s\t%d\t%s\t%s\n", x.Severity, x.Type, principal, api, x.Service.Count,
				x.Service.EventFirstSeen.Format(time.RFC3339), x.ID[:12])
		}
		tw.Flush()
		if err := bw.Flush(); err != nil {
			return &exitError{code: 1, err: err}
		}
	}
	switch {
	case len(findings) > 0 && inputProblem:
		return &exitError{code: 3}
	case len(findings) > 0:
		return &exitError{code: 1}
	case inputProblem:
		return &exitError{code: 2}
	}
	return nil
}

// detectGCPercent is phantom detect's GC target (GOGC) unless the environment sets one.
const detectGCPercent = 200

// reportSigma says how many Sigma rules loaded and names each one that did not, with
// the reason; rules for other log sources are only counted.
func reportSigma(w io.Writer, s *sigma.Set) {
	if s == nil || s.Dir == "" {
		return
	}
	bad, other := s.Unloaded()
	fmt.Fprintf(w, "phantom detect: %d Sigma rules loaded from %s", len(s.Rules), s.Dir)
	if other > 0 {
		fmt.Fprintf(w, " (%d for other log sources skipped)", other)
	}
	fmt.Fprintln(w)
	for _, p := range bad {
		fmt.Fprintf(w, "phantom detect: Sigma rule not loaded: %s\n", p)
	}
}

// reportInput names on w what detect skipped and could not read, and reports whether any
// input could not be read (skipped non-CloudTrail files are not a problem).
func reportInput(w io.Writer, input string, rep detect.ReadReport) bool {
	for _, f := range rep.NotCloudTrail {
		fmt.Fprintf(w, "phantom detect: skipped %s: %v\n", f, detect.ErrNotCloudTrail)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "phantom detect: could not read %s\n", p)
	}
	files, records := rep.Unreadable()
	if files == 0 && records == 0 {
		return false
	}
	fmt.Fprintf(w, "phantom detect: read %d events from %d files of %s; could not read %d file(s) and %d record(s) (above)\n",
		rep.Events, rep.Files, input, files, records)
	return true
}
