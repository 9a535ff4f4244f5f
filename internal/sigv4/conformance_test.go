package sigv4

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/sigv4/rawhttp"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// suiteRel is the AWS SigV4 signing test suite (awslabs/aws-c-auth,
// tests/aws-signing-test-suite/v4) in ../shared, read in place.
const suiteRel = "conformance/sigv4/aws-c-auth-v4"

type suiteContext struct {
	Credentials struct {
		AccessKeyID     string `json:"access_key_id"`
		SecretAccessKey string `json:"secret_access_key"`
		Token           string `json:"token"`
	} `json:"credentials"`
	ExpirationInSeconds int64     `json:"expiration_in_seconds"`
	Normalize           bool      `json:"normalize"`
	Region              string    `json:"region"`
	Service             string    `json:"service"`
	SignBody            bool      `json:"sign_body"`
	Timestamp           time.Time `json:"timestamp"`
	OmitSessionToken    bool      `json:"omit_session_token"`
}

type suiteCase struct {
	name string
	dir  string
	ctx  suiteContext
}

func (c suiteCase) read(t testing.TB, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return b
}

// loadSuite returns every case of the suite; without ../shared the test is skipped
// (testenv.Shared).
func loadSuite(t testing.TB) []suiteCase {
	t.Helper()
	return readSuite(t, testenv.Shared(t, suiteRel))
}

// optionalSuite is loadSuite for tests that only take seeds from the suite: nil when
// ../shared is absent.
func optionalSuite(t testing.TB) []suiteCase {
	t.Helper()
	dir, ok := testenv.SharedOptional(t, suiteRel)
	if !ok {
		return nil
	}
	return readSuite(t, dir)
}

func readSuite(t testing.TB, suiteDir string) []suiteCase {
	t.Helper()
	entries, err := os.ReadDir(suiteDir)
	if err != nil {
		t.Fatalf("the AWS SigV4 conformance suite: %v", err)
	}
	var cases []suiteCase
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(suiteDir, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, "context.json"))
		if err != nil {
			t.Fatalf("case %s: %v", e.Name(), err)
		}
		var ctx suiteContext
		if err := json.Unmarshal(b, &ctx); err != nil {
			t.Fatalf("case %s: context.json: %v", e.Name(), err)
		}
		cases = append(cases, suiteCase{name: e.Name(), dir: dir, ctx: ctx})
	}
	sort.Slice(cases, func(i, j int) bool { return cases[i].name < cases[j].name })
	if len(cases) == 0 {
		t.Fatalf("the AWS SigV4 conformance suite at %s holds no cases", suiteDir)
	}
	return cases
}

// staticCreds is a CredentialSource over a fixed set of credentials.
type staticCreds map[string]Credential

func (s staticCreds) LookupCredential(_ context.Context, id, _ string) (Credential, error) {
	c, ok := s[id]
	if !ok {
		return Credential{}, ErrUnknownAccessKey
	}
	return c, nil
}

func (c suiteCase) verifier(t testing.TB, secret string) *Verifier {
	t.Helper()
	return c.verifierWith(t, secret, c.ctx.Credentials.Token)
}

func (c suiteCase) verifierWith(t testing.TB, secret, token string) *Verifier {
	t.Helper()
	cred := Credential{
		AccessKeyID:     c.ctx.Credentials.AccessKeyID,
		SecretAccessKey: secret,
		SessionToken:    token,
		Principal:       "arn:aws:iam::123456789012:user/example",
	}
	v, err := New(Config{
		Region:                   c.ctx.Region,
		Service:                  c.ctx.Service,
		DisablePathNormalization: !c.ctx.Normalize,
		Now:                      func() time.Time { return c.ctx.Timestamp },
	}, staticCreds{cred.AccessKeyID: cred})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestConformance verifies every signed request of the AWS suite, in both forms, with the
// case's credentials at the case's time, then forces a mismatch (wrong secret) and requires
// the canonical request and string-to-sign we report to equal the case's byte for byte.
func TestConformance(t *testing.T) {
	cases := loadSuite(t)
	ran := 0
	for _, c := range cases {
		for _, form := range []string{"header", "query"} {
			t.Run(c.name+"/"+form, func(t *testing.T) {
				raw := c.read(t, form+"-signed-request.txt")
				r, body, err := rawhttp.Parse(raw)
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				v := c.verifier(t, c.ctx.Credentials.SecretAccessKey)
				var matched, matchedSTS string
				v.matched = func(c, s []byte) { matched, matchedSTS = string(c), string(s) }
				res, err := v.Verify(context.Background(), r, body)
				if err != nil {
					t.Fatalf("valid signed request rejected: %v\n%s", err, describe(err))
				}
				// The signature was accepted for exactly the suite's canonical request.
				if want := string(c.read(t, form+"-canonical-request.txt")); matched != want {
					t.Errorf("accepted canonical request:\n got %q\nwant %q", matched, want)
				}
				if want := string(c.read(t, form+"-string-to-sign.txt")); matchedSTS != want {
					t.Errorf("accepted string to sign:\n got %q\nwant %q", matchedSTS, want)
				}
				if res.AccessKeyID != c.ctx.Credentials.AccessKeyID || res.Region != c.ctx.Region || res.Service != c.ctx.Service {
					t.Errorf("result = %+v", res)
				}
				if res.Presigned != (form == "query") {
					t.Errorf("Presigned = %v for the %s form", res.Presigned, form)
				}
				if !res.SigningTime.Equal(c.ctx.Timestamp) {
					t.Errorf("SigningTime = %v, want %v", res.SigningTime, c.ctx.Timestamp)
				}
				// sign_body: the body hash travels in x-amz-content-sha256, signed, and
				// must have matched the body (TestPayloadHash shows a mismatch is refused).
				if c.ctx.SignBody && form == "header" && !slices.Contains(res.SignedHeaders, "x-amz-content-sha256") {
					t.Errorf("sign_body case, but x-amz-content-sha256 not signed: %v", res.SignedHeaders)
				}
				// A session token, signed or not (omit_session_token), is bound to the
				// credential.
				if res.Credential.SessionToken != c.ctx.Credentials.Token {
					t.Errorf("session token %q, want %q", res.Credential.SessionToken, c.ctx.Credentials.Token)
				}

				// Same request, wrong secret: the explanation must be the suite's.
				r, body, _ = rawhttp.Parse(raw)
				wrong := c.verifier(t, "wrong"+c.ctx.Credentials.SecretAccessKey)
				if form == "query" && c.ctx.OmitSessionToken {
					// The signer appended the token after signing; on a mismatch the server
					// cannot know that and explains the form with the token signed. Explain
					// the request as it was signed instead: without the token, by a long-term
					// credential (a valid signature was accepted above with the token).
					q := r.URL.Query()
					q.Del("X-Amz-Security-Token")
					r.URL.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
					r.RequestURI = r.URL.RequestURI()
					wrong = c.verifierWith(t, "wrong"+c.ctx.Credentials.SecretAccessKey, "")
				}
				_, err = wrong.Verify(context.Background(), r, body)
				var e *Error
				if !errors.As(err, &e) || e.Code != CodeSignatureDoesNotMatch {
					t.Fatalf("wrong secret: got %v, want SignatureDoesNotMatch", err)
				}
				if want := string(c.read(t, form+"-canonical-request.txt")); e.CanonicalRequest != want {
					t.Errorf("canonical request:\n got %q\nwant %q", e.CanonicalRequest, want)
				}
				if want := string(c.read(t, form+"-string-to-sign.txt")); e.StringToSign != want {
					t.Errorf("string to sign:\n got %q\nwant %q", e.StringToSign, want)
				}
			})
			ran++
		}
	}
	if ran != 2*len(cases) || ran < 70 {
		t.Fatalf("ran %d conformance checks over %d cases", ran, len(cases))
	}
	t.Logf("verified %d signed requests from %d AWS conformance cases", ran, len(cases))
}

func describe(err error) string {
	var e *Error
	if !errors.As(err, &e) {
		return ""
	}
	var b strings.Builder
	b.WriteString("hint: " + e.Hint + "\ncanonical request:\n" + e.CanonicalRequest + "\nstring to sign:\n" + e.StringToSign)
	return b.String()
}
