package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/policy"
	"github.com/phantom-perimeter/phantom/internal/policy/simulate"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "IAM policy tools: validate and simulate"}
	cmd.AddCommand(newPolicyValidateCmd(), newPolicySimulateCmd())
	return cmd
}

// maxPolicyInput bounds what the policy tools read from one file: an IAM managed policy
// is at most 6,144 characters and a case file holds a few of them per case.
const maxPolicyInput = 16 << 20

// readInput reads a file, or stdin for "-", refusing more than maxPolicyInput bytes.
func readInput(name string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxPolicyInput+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxPolicyInput {
		return nil, fmt.Errorf("read %s: larger than %d bytes", name, maxPolicyInput)
	}
	return data, nil
}

var policyKinds = []policy.Kind{policy.Identity, policy.Resource, policy.Boundary, policy.Session, policy.SCP, policy.Endpoint}

type policyValidateFlags struct {
	output, kind string
}

// jsonFinding is one finding of `policy validate --output json`.
type jsonFinding struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Column   int    `json:"column"`
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Message  string `json:"message"`
	Path     string `json:"path"`
}

func newPolicyValidateCmd() *cobra.Command {
	var f policyValidateFlags
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check IAM policy documents like IAM Access Analyzer's policy validation",
		Long: `Validate checks each policy document against the IAM policy grammar and reports
findings like IAM Access Analyzer's policy validation: ERROR (the policy is not valid and
Phantom will refuse it), SECURITY_WARNING (it allows more than it seems to: Allow with
NotAction or NotResource, Principal "*" without a condition, iam:PassRole on "*" ...),
WARNING (it probably does not do what was meant) and SUGGESTION.

Each finding is printed as
  file:line:col: SEVERITY CODE: message (JSON path)
or, with --output json, as a JSON array of {"file", "line", "column", "severity", "code",
"message", "path"}.

--type names where the policies are attached (identity, resource, boundary, session, scp,
endpoint), which adds the checks that depend on it: a Principal in an identity policy, no
Principal in a resource policy, no Resource outside resource policies. Without it only what
holds for every kind is checked.

Exit status: 1 when any finding is an ERROR, 0 otherwise; 2 when a file cannot be read or
a flag is wrong. FILE "-" reads stdin.`,
		Example: `  phantom policy validate --type identity role-policy.json
  phantom policy validate --output json policies/*.json | jq '.[] | select(.severity != "SUGGESTION")'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPolicyValidate(cmd.InOrStdin(), cmd.OutOrStdout(), args, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	fl.StringVar(&f.kind, "type", "", "policy type: identity, resource, boundary, session, scp or endpoint (default: any)")
	return cmd
}

func runPolicyValidate(stdin io.Reader, stdout io.Writer, files []string, f policyValidateFlags) error {
	if f.output != "text" && f.output != "json" {
		return &exitError{2, fmt.Errorf("--output %q: want text or json", f.output)}
	}
	kind := policy.Kind(f.kind)
	if f.kind != "" {
		ok := false
		for _, k := range policyKinds {
			ok = ok || k == kind
		}
		if !ok {
			return &exitError{2, fmt.Errorf("--type %q: want identity, resource, boundary, session, scp or endpoint", f.kind)}
		}
	}
	// Read everything first: an unreadable file stops the run before any output, so a
	// partial report is never taken for a complete one.
	docs := make([][]byte, len(files))
	for i, name := range files {
		data, err := readInput(name, stdin)
		if err != nil {
			return &exitError{2, err}
		}
		docs[i] = data
	}
	out := []jsonFinding{}
	hasError := false
	for i, name := range files {
		name = policyInputName(name)
		for _, fd := range policy.ValidateKind(docs[i], kind) {
			hasError = hasError || fd.Severity == policy.SeverityError
			out = append(out, jsonFinding{File: name, Line: fd.Line, Column: fd.Column, Severity: string(fd.Severity),
				Code: fd.Code, Message: fd.Message, Path: fd.Path})
		}
	}
	if f.output == "json" {
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
			return err
		}
	} else {
		var b strings.Builder
		for _, fd := range out {
			b.WriteString(fd.File)
			if fd.Line > 0 {
				fmt.Fprintf(&b, ":%d:%d", fd.Line, fd.Column)
			}
			fmt.Fprintf(&b, ": %s %s: %s", fd.Severity, fd.Code, fd.Message)
			if fd.Path != "" {
				fmt.Fprintf(&b, " (%s)", fd.Path)
			}
			b.WriteByte('\n')
		}
		if _, err := io.WriteString(stdout, b.String()); err != nil {
			return err
		}
	}
	if hasError {
		return &exitError{code: 1}
	}
	return nil
}

func newPolicySimulateCmd() *cobra.Command {
	var input string
	cmd := &cobra.Command{
		Use:   "simulate --input FILE",
		Short: "Decide requests against sets of IAM policies, as the gateway would",
		Long: `Simulate evaluates requests against policy sets with Phantom's policy engine (AWS's
policy evaluation logic) and prints one result per case.

The input holds one case or a JSON array of cases:
  {"policies": [{"type": "identity|resource|boundary|session|scp|endpoint",
                 "document": {...policy JSON, or a string holding it...}}],
   "request": {"principal": "arn:...", "action": "svc:Action", "resource": "arn:...",
               "resourceAccount": "123456789012",
               "context": {"aws:SourceIp": "192.0.2.1", "aws:TagKeys": ["a", "b"]}}}
An empty or missing principal is an anonymous caller; resourceAccount defaults to the
principal's account; context values are strings, numbers, booleans or arrays of them (an
array is a multivalued key, even of one value: an operator without ForAnyValue: or
ForAllValues: does not match it). Unknown fields are errors.

The output is a JSON array, one result per case in order:
  {"decision": "Allow|ExplicitDeny|ImplicitDeny",
   "matched": [{"policy": index in "policies", "statement": Sid or statement index}],
   "reason": "..."}

Exit status: 0 when every case was evaluated, whatever the decisions; 2 when the input is
unusable (bad JSON, an unknown field or policy type, a policy that does not parse or that
IAM refuses for its type, such as a Principal in an identity policy or a resource or
endpoint policy statement without one, a request without action ...), with a message
naming the case. --input - reads stdin.`,
		Example: `  phantom policy simulate --input cases.json
  jq -n '{policies: [{type: "identity", document: $p}], request: {principal: "arn:aws:iam::111122223333:user/ana", action: "s3:GetObject", resource: "arn:aws:s3:::b/k"}}' \
    --argjson p "$(cat policy.json)" | phantom policy simulate --input -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPolicySimulate(cmd.InOrStdin(), cmd.OutOrStdout(), input)
		},
	}
	cmd.Flags().StringVar(&input, "input", "", "case file, or - for stdin (required)")
	return cmd
}

func runPolicySimulate(stdin io.Reader, stdout io.Writer, input string) error {
	if input == "" {
		return &exitError{2, errors.New("policy simulate: --input is required (a case file, or - for stdin)")}
	}
	data, err := readInput(input, stdin)
	if err != nil {
		return &exitError{2, fmt.Errorf("policy simulate: %w", err)}
	}
	cases, err := simulate.Load(data)
	if err != nil {
		return &exitError{2, fmt.Errorf("policy simulate: %s: %w", policyInputName(input), err)}
	}
	b, err := json.MarshalIndent(simulate.Run(cases), "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}

func policyInputName(name string) string {
	if name == "-" {
		return "<stdin>"
	}
	return name
}
