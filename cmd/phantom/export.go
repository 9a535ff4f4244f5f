package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/atomicfile"
	"github.com/phantom-perimeter/phantom/internal/cfn"
	"github.com/phantom-perimeter/phantom/internal/config"
)

func newExportCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "export", Short: "Export the perimeter for other platforms: cloudformation"}
	cmd.AddCommand(newExportCloudFormationCmd())
	return cmd
}

func newExportCloudFormationCmd() *cobra.Command {
	var file, output string
	cmd := &cobra.Command{
		Use:   "cloudformation --config FILE [--output FILE]",
		Short: "Write the perimeter as an AWS CloudFormation template (JSON) that builds it on AWS",
		Long: `cloudformation translates a perimeter spec into a CloudFormation template (JSON) for
AWS itself: per API a private REST API (AWS_IAM authorization, NONE where the spec says so,
HTTP_PROXY integrations to the backends, a deployment and stage per spec stage) with the
spec's resource policy; per endpoint an execute-api interface VPC endpoint with private
DNS, the spec's endpoint policy and a security group admitting only HTTPS (TCP 443) from
the spec's ingress CIDRs; IAM managed policies, users (no access keys), roles, OIDC
providers and an instance profile per node role; per node role and VPC a workload
security group whose egress is only what the spec's egress rules allow; a GuardDuty
detector. The VPCs and subnets are template parameters: the spec does not own networks.

The output is byte-identical for the same spec. What AWS cannot express is translated
fail closed and listed in the template's Metadata (Metadata.Phantom.NotExpressed):
Phantom's own listen ports (AWS serves 443), host-name egress rules, loopback ingress.
phantom:* condition keys (phantom:RiskLevel) have no meaning on AWS: an Allow that
depends on one is dropped, a Deny that depends on one keeps only its AWS conditions.

Deploy it with CAPABILITY_NAMED_IAM (the IAM names are the spec's, so the policies that
name them keep working).`,
		Example: `  phantom export cloudformation --config perimeter.yaml --output perimeter.template.json
  cfn-lint perimeter.template.json
  aws cloudformation deploy --template-file perimeter.template.json --stack-name phantom \
    --capabilities CAPABILITY_NAMED_IAM \
    --parameter-overrides VpcIdVpc0a1b2c3d4e5f60718=vpc-... SubnetIdsVpc0a1b2c3d4e5f60718=subnet-...,subnet-...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := config.Load(file)
			var cerr *config.Error
			if errors.As(err, &cerr) {
				for _, p := range cerr.Problems {
					fmt.Fprintln(cmd.ErrOrStderr(), p)
				}
				return &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s); run phantom config validate", file, len(cerr.Problems))}
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			t, err := cfn.Translate(s)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("translate %s: %w", file, err)}
			}
			b, err := cfn.Marshal(t)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if output == "" || output == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			if err := atomicfile.Write(output, b, 0o644); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("write %s: %w", output, err)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "the perimeter spec (YAML)")
	cmd.Flags().StringVar(&output, "output", "", "write the template to this file (default: standard output)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
