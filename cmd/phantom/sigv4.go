package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/sigv4"
	"github.com/phantom-perimeter/phantom/internal/sigv4/rawhttp"
)

func newSigv4Cmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sigv4", Short: "AWS Signature Version 4 tools"}
	cmd.AddCommand(newSigv4VerifyCmd())
	return cmd
}

// maxRequestFile bounds what verify reads: a saved request is headers and a modest body.
const maxRequestFile = 64 << 20

type sigv4VerifyFlags struct {
	request, accessKeyID, secretAccessKey, sessionToken string
	region, service, at                                 string
	unsignedPayload, s3                                 bool
}

func newSigv4VerifyCmd() *cobra.Command {
	var f sigv4VerifyFlags
	cmd := &cobra.Command{
		Use:   "verify --request FILE --access-key-id ID --secret-access-key SECRET",
		Short: "Verify the SigV4 signature of a saved HTTP request and explain a mismatch",
		Long: `Verify reads one HTTP request and checks its AWS Signature Version 4 (Authorization
header or presigned URL) with the given key, exactly as Phantom's gateway does. The
request may be raw (request line, headers, blank line, body; HTTP/1.x, HTTP/2 or HTTP/3
request line), as saved from a proxy or aws --debug, or curl's own debug output, whose
first request is used:
  curl -v ... 2> req.txt            the headers (for a request without a body)
  curl --trace-ascii req.txt ...    headers and body
  curl --trace req.txt ...          headers and body, every byte exact (bodies with
                                    non-ASCII bytes or bare line feeds, which
                                    --trace-ascii prints as '.')

It prints JSON. A valid request:
  {"valid": true, "accessKeyId": ..., "region": ..., "service": ..., "signedHeaders": [...]}
and exit status 0. An invalid one:
  {"valid": false, "code": ..., "message": ..., "hint": ...,
   "canonicalRequest": ..., "stringToSign": ...}
and exit status 1. On SignatureDoesNotMatch, canonicalRequest and stringToSign are what
the server computed: compare them line by line with the client's (botocore and the AWS CLI
log them with --debug, aws-sdk-go-v2 with the LogSigning option; print ours with
"| jq -r .canonicalRequest"); the first line that differs is the cause. The hint names the
likeliest one (clock skew, scope, an unsigned or missing header, the body hash, curl 7's
unencoded path and query). Exit status 2 means the input could not be used (unreadable
file, not an HTTP request, bad flags).

--region and --service default to the region and service of the request's own credential
scope, so a request signed for the wrong region or service still verifies as far as the
scope goes. Give them to check the request against what your endpoint expects: then a
wrong scope is reported (with the scope the request names).

--time is "now" for the clock checks (X-Amz-Date within 5 minutes; presigned URLs not
expired), in ISO 8601 basic format as in X-Amz-Date; it defaults to the real clock, so
set it to verify an old saved request.

--session-token, when given, must be the token the request carries; when omitted, the
request's token (if any) is accepted as is, since only its signature can be checked here.`,
		Example: `  phantom sigv4 verify --request req.txt --access-key-id AKIDEXAMPLE \
    --secret-access-key "$SECRET" --time 20150830T123600Z
  curl --trace-ascii req.txt --aws-sigv4 "aws:amz:$AWS_REGION:execute-api" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" ...
  phantom sigv4 verify --request req.txt --access-key-id "$AWS_ACCESS_KEY_ID" --secret-access-key "$AWS_SECRET_ACCESS_KEY"
  pbpaste | phantom sigv4 verify --request - --access-key-id AKID --secret-access-key "$SECRET" \
    --region eu-west-1 --service execute-api`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSigv4Verify(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.request, "request", "", "file holding one HTTP request (raw, or curl -v / --trace-ascii / --trace output), or - for stdin (required)")
	fl.StringVar(&f.accessKeyID, "access-key-id", "", "access key id the request should be signed with (required)")
	fl.StringVar(&f.secretAccessKey, "secret-access-key", "", "its secret access key (required)")
	fl.StringVar(&f.sessionToken, "session-token", "", "session token the request must carry (default: not checked)")
	fl.StringVar(&f.region, "region", "", "expected credential-scope region (default: the request's own)")
	fl.StringVar(&f.service, "service", "", "expected credential-scope service, e.g. execute-api, sts (default: the request's own)")
	fl.StringVar(&f.at, "time", "", "verify as if now were this time, e.g. 20150830T123600Z (default: the real clock)")
	fl.BoolVar(&f.unsignedPayload, "unsigned-payload", false, "accept x-amz-content-sha256: UNSIGNED-PAYLOAD (a signature that does not cover the body)")
	fl.BoolVar(&f.s3, "s3", false, "S3-style canonical URI: the path as sent, encoded once, no dot-segment removal")
	for _, name := range []string{"request", "access-key-id", "secret-access-key"} {
		cmd.MarkFlagRequired(name)
	}
	// Flag errors are usage errors: exit 2, like unusable input.
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	return cmd
}

// verifyOutput is the JSON verify prints. Field names follow AWS's error documents.
type verifyOutput struct {
	Valid         bool     `json:"valid"`
	AccessKeyID   string   `json:"accessKeyId,omitempty"`
	Region        string   `json:"region,omitempty"`
	Service       string   `json:"service,omitempty"`
	SignedHeaders []string `json:"signedHeaders,omitempty"`
	Presigned     bool     `json:"presigned,omitempty"`
	SigningTime   string   `json:"signingTime,omitempty"`
	// UnsignedPayload: the signature does not cover the body.
	UnsignedPayload bool `json:"unsignedPayload,omitempty"`

	Code             string `json:"code,omitempty"`
	Message          string `json:"message,omitempty"`
	Hint             string `json:"hint,omitempty"`
	CanonicalRequest string `json:"canonicalRequest,omitempty"`
	StringToSign     string `json:"stringToSign,omitempty"`
	// Scope is the credential scope the request names, and CheckedAgainst what it was
	// checked against: the first thing to compare when a signature does not match.
	Scope          string `json:"credentialScope,omitempty"`
	CheckedAgainst string `json:"checkedAgainst,omitempty"`
}

func runSigv4Verify(ctx context.Context, stdin io.Reader, stdout io.Writer, f sigv4VerifyFlags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	data, err := readRequestFile(f.request, stdin)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	r, body, format, err := rawhttp.ParseCapture(data)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("%s is not a usable HTTP request (read as %s): %w", displayName(f.request), format, err)}
	}

	now := time.Now
	if f.at != "" {
		t, err := time.Parse("20060102T150405Z", f.at)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--time %q: want ISO 8601 basic format in UTC, e.g. 20150830T123600Z", f.at)}
		}
		now = func() time.Time { return t }
	}

	scope := requestScope(r)
	region, service := f.region, f.service
	if region == "" {
		region = scope.region
	}
	if service == "" {
		service = scope.service
	}
	// A request with no readable scope fails before its scope is compared; the verifier
	// still needs a well-formed expectation.
	if region == "" {
		region = "unknown-region"
	}
	if service == "" {
		service = "unknown-service"
	}

	cred := cliCredential{id: f.accessKeyID, secret: f.secretAccessKey, token: f.sessionToken}
	cfg := sigv4.Config{
		Region:                   region,
		Service:                  service,
		AllowUnsignedPayload:     f.unsignedPayload,
		DisablePathNormalization: f.s3,
		Now:                      now,
	}
	v, err := sigv4.New(cfg, cred)
	if err != nil && f.region == "" && f.service == "" {
		// The request's own scope cannot be a verifier's expectation (it holds a space, a
		// comma ...): verify against placeholders, so the scope is reported as wrong.
		cfg.Region, cfg.Service = "unknown-region", "unknown-service"
		region, service = cfg.Region, cfg.Service
		v, err = sigv4.New(cfg, cred)
	}
	if err != nil {
		return &exitError{code: 2, err: err}
	}

	var out verifyOutput
	res, err := v.Verify(ctx, r, body)
	var e *sigv4.Error
	switch {
	case err == nil:
		out = verifyOutput{
			Valid: true, AccessKeyID: res.AccessKeyID, Region: res.Region, Service: res.Service,
			SignedHeaders: res.SignedHeaders, Presigned: res.Presigned,
			SigningTime: res.SigningTime.UTC().Format("20060102T150405Z"), UnsignedPayload: res.UnsignedPayload,
		}
	case errors.As(err, &e):
		out = verifyOutput{
			Code: e.Code, Message: e.Message, Hint: e.Hint,
			CanonicalRequest: e.CanonicalRequest, StringToSign: e.StringToSign,
			Scope:          scope.String(),
			CheckedAgainst: region + "/" + service + " at " + now().UTC().Format("20060102T150405Z"),
		}
		if scope.accessKeyID != "" && scope.accessKeyID != f.accessKeyID {
			out.Hint = "the request is signed with access key id '" + scope.accessKeyID + "' but --access-key-id is '" + f.accessKeyID + "'"
		}
	default:
		return &exitError{code: 2, err: err}
	}

	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return &exitError{code: 2, err: err}
	}
	if !out.Valid {
		return &exitError{code: 1}
	}
	return nil
}

func readRequestFile(name string, stdin io.Reader) ([]byte, error) {
	var src io.Reader
	if name == "-" {
		src = stdin
	} else {
		fh, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("read request: %w", err)
		}
		defer fh.Close()
		src = fh
	}
	data, err := io.ReadAll(io.LimitReader(src, maxRequestFile+1))
	if err != nil {
		return nil, fmt.Errorf("read request from %s: %w", displayName(name), err)
	}
	if len(data) > maxRequestFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", displayName(name), maxRequestFile)
	}
	return data, nil
}

func displayName(name string) string {
	if name == "-" {
		return "stdin"
	}
	return name
}

// cliCredential is the one key given on the command line.
type cliCredential struct{ id, secret, token string }

func (c cliCredential) LookupCredential(_ context.Context, akid, token string) (sigv4.Credential, error) {
	if akid != c.id {
		return sigv4.Credential{}, sigv4.ErrUnknownAccessKey
	}
	cred := sigv4.Credential{AccessKeyID: c.id, SecretAccessKey: c.secret, SessionToken: c.token}
	if c.token == "" {
		// Not given: accept the request's token (or its absence) as is.
		cred.SessionToken = token
	}
	return cred, nil
}

// credentialScope is the scope a request names, read without judging it, so that the
// defaults and the report can show it; the verifier does the real parsing.
type credentialScope struct{ accessKeyID, date, region, service, terminator string }

func (s credentialScope) String() string {
	if s.accessKeyID == "" {
		return ""
	}
	return strings.Join([]string{s.accessKeyID, s.date, s.region, s.service, s.terminator}, "/")
}

func requestScope(r *http.Request) credentialScope {
	var cred string
	if h := r.Header.Get("Authorization"); h != "" {
		if _, after, ok := strings.Cut(h, "Credential="); ok {
			cred, _, _ = strings.Cut(after, ",")
			cred = strings.TrimSpace(cred)
		}
	} else if q, err := url.ParseQuery(r.URL.RawQuery); err == nil {
		cred = q.Get("X-Amz-Credential")
	} else {
		// ParseQuery stops at the first malformed pair; find the parameter by hand.
		for _, p := range strings.Split(r.URL.RawQuery, "&") {
			if k, val, _ := strings.Cut(p, "="); k == "X-Amz-Credential" {
				cred, _ = url.QueryUnescape(val)
			}
		}
	}
	parts := strings.Split(cred, "/")
	if len(parts) != 5 {
		return credentialScope{}
	}
	return credentialScope{parts[0], parts[1], parts[2], parts[3], parts[4]}
}
