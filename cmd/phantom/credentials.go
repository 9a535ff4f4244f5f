package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/login"
)

// credentialsChainEnv lists the role ARNs of the phantom credentials processes above this
// one. The SDK runs a profile's credential_process with this process's environment, so a
// source profile whose credential_process is phantom credentials for the same role would
// otherwise start processes without end.
const credentialsChainEnv = "PHANTOM_CREDENTIALS_CHAIN"

// maxCredentialsChain bounds legitimate chains (phantom credentials for role B sourced from
// a profile that runs phantom credentials for role A, ...).
const maxCredentialsChain = 5

// AWS CLI return codes ("AWS CLI return codes" in the AWS CLI User Guide): the command
// line is invalid, the configuration or environment is invalid, a service returned an
// error, anything else. The commands shaped like the AWS CLI's (credentials, iam, keys,
// node) use them; see awsExitCodes.
const (
	exitUsage   = 252
	exitConfig  = 253
	exitService = 254
	exitOther   = 255
)

// awsExitCodesAnnotation marks a command (or a group of them) that exits with the AWS
// CLI's return codes: run maps its usage errors to exitUsage instead of 2.
const awsExitCodesAnnotation = "phantom/aws-cli-exit-codes"

// awsExitCodes reports whether cmd or a parent carries awsExitCodesAnnotation.
func awsExitCodes(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		if c.Annotations[awsExitCodesAnnotation] != "" {
			return true
		}
	}
	return false
}

type credentialsFlags struct {
	role, sts, caBundle, sessionName, externalID, sourceProfile, region string
	duration                                                            time.Duration
	login                                                               bool
	ssoSession                                                          string
}

func newCredentialsCmd() *cobra.Command {
	var f credentialsFlags
	cmd := &cobra.Command{
		Use:   "credentials (--role ARN [--sts URL] [--ca-bundle FILE] [--source-profile NAME] | --login [--sso-session NAME])",
		Short: "Print credential_process JSON for a session of a role, from Phantom's STS",
		Long: `credentials calls AssumeRole on Phantom's STS for --role, signed with your long-term
credentials, and prints the session in the JSON the AWS CLI and SDKs read from a profile's
credential_process:

  {"Version": 1, "AccessKeyId": "ASIA...", "SecretAccessKey": "...",
   "SessionToken": "...", "Expiration": "2025-01-02T15:04:05Z"}

The STS is --sts or $PHANTOM_STS_URL; the CA that signed its certificate is --ca-bundle or
$AWS_CA_BUNDLE (phantom up writes both to demo.env; phantom sts writes DIR/ca.pem).

The signing credentials come from the usual places (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, the shared credentials and config files, ...), or from the profile
named by --source-profile. Name a source profile whenever AWS_PROFILE might point at the
profile that runs this command: its credential_process would call phantom credentials
again. Such a loop is detected ($` + credentialsChainEnv + `) and refused.

With --login the session comes from a phantom login instead, with no long-term key at
all: the cached session while it has more than five minutes left, else a new one from STS
(AssumeRoleWithWebIdentity) with the cached ID token, renewed at the identity provider with
the refresh token when it has expired. When the provider no longer accepts the refresh
token it fails (253) asking you to run phantom login again.

Errors are printed as the AWS CLI prints them and end the process with its return codes:
252 bad usage, 253 missing or invalid configuration or credentials, 254 an error from STS
(e.g. AccessDenied when the role's trust policy does not admit you), 255 anything else.`,
		Example: `  # ~/.aws/credentials: the long-term key of your Phantom user
  [phantom-user]
  aws_access_key_id = AKIA...
  aws_secret_access_key = ...

  # ~/.aws/config: a profile whose credentials are sessions of a Phantom role
  [profile demo-role]
  region = us-east-1
  credential_process = phantom credentials --role arn:aws:iam::123456789012:role/service-a --source-profile phantom-user --sts https://127.0.0.1:8444 --ca-bundle /path/to/phantom-data/ca.pem

  # or, after phantom login, a profile with no long-term key anywhere
  [profile phantom]
  credential_process = phantom credentials --login --sso-session default

  aws sts get-caller-identity --profile demo-role --endpoint-url https://127.0.0.1:8444
  python3 -c 'import boto3; print(boto3.Session(profile_name="demo-role").client("sts", endpoint_url="https://127.0.0.1:8444").get_caller_identity()["Arn"])'
  AWS_PROFILE=demo-role go run ./your-app   # aws-sdk-go-v2's config.LoadDefaultConfig reads the same profile
  eval "$(phantom credentials --role ARN | jq -r '"export AWS_ACCESS_KEY_ID=\(.AccessKeyId) AWS_SECRET_ACCESS_KEY=\(.SecretAccessKey) AWS_SESSION_TOKEN=\(.SessionToken)"')"
  curl --aws-sigv4 "aws:amz:us-east-1:execute-api" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-security-token: $AWS_SESSION_TOKEN" --cacert "$AWS_CA_BUNDLE" "$PHANTOM_API_URL"`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{awsExitCodesAnnotation: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.login {
				return runLoginCredentials(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
			}
			if f.role == "" {
				return awsFail(cmd.ErrOrStderr(), exitUsage, "phantom credentials: pass --role ARN, or --login to use a phantom login")
			}
			return runCredentials(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.role, "role", "", "ARN of the role to assume")
	fl.StringVar(&f.sts, "sts", "", "Phantom's STS URL (default $PHANTOM_STS_URL)")
	fl.StringVar(&f.caBundle, "ca-bundle", "", "PEM file of the CA that signed the STS certificate (default $AWS_CA_BUNDLE)")
	fl.DurationVar(&f.duration, "duration", 0, "session duration, 15m to 12h and at most the role's maximum (default: STS's, 1h)")
	fl.StringVar(&f.sessionName, "session-name", "", "role session name (default phantom-credentials-UNIXTIME)")
	fl.StringVar(&f.externalID, "external-id", "", "external id the role's trust policy asks for (sts:ExternalId)")
	fl.StringVar(&f.sourceProfile, "source-profile", "", "profile with the long-term credentials that sign AssumeRole (default: the SDK's default chain)")
	fl.StringVar(&f.region, "region", "", "region to sign for (default: the source profile's or $AWS_REGION, else us-east-1)")
	fl.BoolVar(&f.login, "login", false, "serve the session of a phantom login (no long-term key) instead of calling AssumeRole")
	fl.StringVar(&f.ssoSession, "sso-session", "default", "with --login: the cached sign-in (phantom login --sso-session)")
	cmd.MarkFlagsMutuallyExclusive("login", "role")
	return cmd
}

// processCredentials is the credential_process output ("Sourcing credentials with an
// external process"); the field order is the documented one.
type processCredentials struct {
	Version         int
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string
	SessionToken    string
	Expiration      string
}

// awsFail prints msg the way the AWS CLI prints errors and ends with code.
func awsFail(stderr io.Writer, code int, format string, args ...any) error {
	fmt.Fprintf(stderr, "\n"+format+"\n", args...)
	return &exitError{code: code}
}

// runLoginCredentials serves a phantom login's session (login.Fresh).
func runLoginCredentials(ctx context.Context, stdout, stderr io.Writer, f credentialsFlags) error {
	dir, err := login.CacheDir(os.Getenv)
	if err != nil {
		return awsFail(stderr, exitConfig, "phantom credentials: %v", err)
	}
	c, err := login.Fresh(ctx, dir, f.ssoSession, nil, nil)
	var se *login.STSError
	switch {
	case errors.Is(err, login.ErrNotSignedIn), errors.Is(err, login.ErrSignInExpired):
		return awsFail(stderr, exitConfig, "phantom credentials: sso session %s: %v: run phantom login --sso-session %s", f.ssoSession, err, f.ssoSession)
	case errors.As(err, &se):
		return awsFail(stderr, exitService, "%v", se)
	case err != nil:
		return awsFail(stderr, exitOther, "phantom credentials: %v", err)
	}
	return writeProcessCredentials(stdout, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, c.Expiration)
}

// writeProcessCredentials prints credential_process JSON.
func writeProcessCredentials(w io.Writer, id, secret, token string, exp time.Time) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(processCredentials{
		Version:         1,
		AccessKeyID:     id,
		SecretAccessKey: secret,
		SessionToken:    token,
		Expiration:      exp.UTC().Format(time.RFC3339),
	})
}

func runCredentials(ctx context.Context, stdout, stderr io.Writer, f credentialsFlags) error {
	stsURL := f.sts
	if stsURL == "" {
		stsURL = os.Getenv("PHANTOM_STS_URL")
	}
	if stsURL == "" {
		return awsFail(stderr, exitUsage, "phantom credentials: no STS URL: pass --sts https://HOST:PORT or set PHANTOM_STS_URL")
	}
	if u, err := url.Parse(stsURL); err != nil || u.Scheme != "https" || u.Host == "" {
		return awsFail(stderr, exitUsage, "phantom credentials: the STS URL %q is not https://HOST:PORT (Phantom's STS serves only HTTPS)", stsURL)
	}
	if f.duration != 0 && (f.duration < 15*time.Minute || f.duration > 12*time.Hour) {
		return awsFail(stderr, exitUsage, "phantom credentials: --duration %s is outside STS's 15m to 12h", f.duration)
	}
	session := f.sessionName
	if session == "" {
		session = fmt.Sprintf("phantom-credentials-%d", time.Now().Unix())
	}

	chain := strings.Fields(os.Getenv(credentialsChainEnv))
	if slices.Contains(chain, f.role) {
		return awsFail(stderr, exitConfig, "phantom credentials: the credentials to sign AssumeRole for %s come from phantom credentials for the same role "+
			"(a credential_process loop, usually AWS_PROFILE naming the profile that runs this command): pass --source-profile naming a profile with long-term keys", f.role)
	}
	if len(chain) >= maxCredentialsChain {
		return awsFail(stderr, exitConfig, "phantom credentials: %d nested phantom credentials processes (%s): pass --source-profile naming a profile with long-term keys",
			len(chain), strings.Join(chain, " -> "))
	}
	// Children the SDK starts for a credential_process inherit the environment.
	if err := os.Setenv(credentialsChainEnv, strings.Join(append(chain, f.role), " ")); err != nil {
		return awsFail(stderr, exitOther, "phantom credentials: %v", err)
	}

	var opts []func(*awsconfig.LoadOptions) error
	if ca := cmp.Or(f.caBundle, os.Getenv("AWS_CA_BUNDLE")); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return awsFail(stderr, exitConfig, "phantom credentials: read the CA bundle: %v", err)
		}
		opts = append(opts, awsconfig.WithCustomCABundle(strings.NewReader(string(pem))))
	}
	if f.sourceProfile != "" {
		opts = append(opts, awsconfig.WithSharedConfigProfile(f.sourceProfile))
	}
	if f.region != "" {
		opts = append(opts, awsconfig.WithRegion(f.region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return awsFail(stderr, exitConfig, "phantom credentials: load the AWS configuration: %v", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	// Retrieve first, so that missing credentials are reported as such rather than as a
	// failed AssumeRole.
	if cfg.Credentials == nil {
		return awsFail(stderr, exitConfig, "Unable to locate credentials to sign AssumeRole. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --source-profile naming a profile with access keys.")
	}
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return awsFail(stderr, exitConfig, "Unable to locate credentials to sign AssumeRole. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --source-profile naming a profile with access keys.\n(%v)", err)
	}

	client := awssts.NewFromConfig(cfg, func(o *awssts.Options) { o.BaseEndpoint = aws.String(stsURL) })
	in := &awssts.AssumeRoleInput{RoleArn: aws.String(f.role), RoleSessionName: aws.String(session)}
	if f.duration != 0 {
		in.DurationSeconds = aws.Int32(int32(f.duration / time.Second))
	}
	if f.externalID != "" {
		in.ExternalId = aws.String(f.externalID)
	}
	out, err := client.AssumeRole(ctx, in)
	var ae smithy.APIError
	switch {
	case errors.As(err, &ae):
		return awsFail(stderr, exitService, "An error occurred (%s) when calling the AssumeRole operation: %s", ae.ErrorCode(), ae.ErrorMessage())
	case err != nil:
		return awsFail(stderr, exitOther, "phantom credentials: AssumeRole at %s: %v", stsURL, err)
	case out.Credentials == nil || out.Credentials.Expiration == nil:
		return awsFail(stderr, exitOther, "phantom credentials: AssumeRole at %s returned no credentials", stsURL)
	}
	c := out.Credentials
	return writeProcessCredentials(stdout, aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken), *c.Expiration)
}
