package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/atomicfile"
	"github.com/phantom-perimeter/phantom/internal/iamimport"
)

func newImportCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "import", Short: "Import a perimeter from other platforms: aws-iam"}
	cmd.AddCommand(newImportAWSIAMCmd())
	return cmd
}

func newImportAWSIAMCmd() *cobra.Command {
	var input, output, region, account string
	var oidc []string
	cmd := &cobra.Command{
		Use:   "aws-iam --input FILE [--output FILE]",
		Short: "Write a perimeter spec holding an AWS account's IAM (users, groups, roles, policies)",
		Long: `aws-iam reads what "aws iam get-account-authorization-details" prints (its JSON,
all pages merged, as the AWS CLI and boto3's paginator give it; policy documents as JSON
objects, JSON strings or IAM's URL-encoded strings) and writes a perimeter spec that
"phantom config validate" accepts: the account's customer managed policies (their default
versions), the AWS managed policies something attaches (copied), groups with their
members, users and roles with their inline and managed policies, permissions boundaries,
trust policies and tags. Every policy document is the input's, unchanged. (RoleDetail has
no description or maximum session duration: imported roles get the spec's 1h unless the
input has them.)

What the spec cannot hold is listed, in the spec's opening comment and on standard error,
never dropped silently: service-linked roles, instance profiles (Phantom's nodes name
their roles), non-default policy versions, AWS managed policies attached but missing from
the input (--filter), and anything the spec's loader refuses. Leaving something out fails
closed: a policy that only allows may be left out of its principal (who then has less
access than on AWS), but a principal whose deny, boundary, or tested tag cannot be carried
is left out entirely.

Access keys are not in the input: create new ones with "phantom iam create-access-key".
IAM is global, so the region is --region. OIDC providers are named in trust policies but
not described in the input: give each with --oidc-provider so that the roles they may
assume (GitHub Actions, Kubernetes service accounts) are imported. The output has no APIs,
endpoints or nodes: add them (docs/spec.md) and validate again.`,
		Example: `  aws iam get-account-authorization-details > account.json
  phantom import aws-iam --input account.json --output perimeter.yaml
  phantom import aws-iam --input account.json --region eu-west-1 \
    --oidc-provider https://token.actions.githubusercontent.com=sts.amazonaws.com
  phantom config validate perimeter.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in io.Reader = cmd.InOrStdin()
			if input != "-" {
				f, err := os.Open(input)
				if err != nil {
					return &exitError{code: 1, err: err}
				}
				defer f.Close()
				in = f
			}
			d, err := iamimport.Parse(in)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("%s: %w", input, err)}
			}
			opts := iamimport.Options{Region: region, Account: account, Source: input}
			for _, o := range oidc {
				url, ids, ok := strings.Cut(o, "=")
				if !ok || ids == "" {
					return &exitError{code: 2, err: fmt.Errorf("--oidc-provider %q: write URL=CLIENT_ID[,CLIENT_ID...]", o)}
				}
				opts.OIDCProviders = append(opts.OIDCProviders, iamimport.OIDCProvider{URL: url, ClientIDs: strings.Split(ids, ",")})
			}
			res, err := iamimport.Import(d, opts)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("%s: %w", input, err)}
			}
			stderr := cmd.ErrOrStderr()
			for _, n := range res.Notes {
				fmt.Fprintln(stderr, "phantom import: not carried as it was:", n)
			}
			s := res.Spec
			fmt.Fprintf(stderr, "phantom import: account %s: %d managed policies, %d groups, %d users, %d roles carried; %d notes\n",
				s.Account, len(s.ManagedPolicies), len(s.Groups), len(s.Users), len(s.Roles), len(res.Notes))
			if output == "" || output == "-" {
				_, err = cmd.OutOrStdout().Write(res.YAML)
				return err
			}
			if err := atomicfile.Write(output, res.YAML, 0o644); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("write %s: %w", output, err)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&input, "input", "", `the JSON of "aws iam get-account-authorization-details" (- for standard input)`)
	cmd.Flags().StringVar(&output, "output", "", "write the spec to this file (default: standard output)")
	cmd.Flags().StringVar(&region, "region", "us-east-1", "the spec's region (IAM is global; the input does not say)")
	cmd.Flags().StringVar(&account, "account", "", "the account id (default: the one the input's ARNs name)")
	cmd.Flags().StringArrayVar(&oidc, "oidc-provider", nil, "an OIDC provider trust policies name: URL=CLIENT_ID[,CLIENT_ID...] (repeatable; aws iam get-open-id-connect-provider shows both)")
	_ = cmd.MarkFlagRequired("input")
	return cmd
}
