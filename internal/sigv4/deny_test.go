package sigv4

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const fakeSig = "0000000000000000000000000000000000000000000000000000000000000000"

// craft builds a header-form request with the given Authorization and X-Amz-Date (either may
// be empty to leave it out). Deny paths checked before any crypto need no real signature.
func craft(authz, amzDate string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "https://api.example.com/prod/x", nil)
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	if amzDate != "" {
		r.Header.Set("X-Amz-Date", amzDate)
	}
	return r
}

func authHeader(cred, signedHeaders, sig string) string {
	return "AWS4-HMAC-SHA256 Credential=" + cred + ", SignedHeaders=" + signedHeaders + ", Signature=" + sig
}

func scope(akid string, day time.Time, region, service, term string) string {
	return akid + "/" + day.Format(yyyymmdd) + "/" + region + "/" + service + "/" + term
}

// TestDenyHeaderForm covers every way the Authorization-header form is refused before the
// signature is computed, with AWS's code and, where AWS documents it, its exact text.
func TestDenyHeaderForm(t *testing.T) {
	now := testNow.Format(iso8601Basic)
	goodCred := scope(testAKID, testNow, testRegion, testService, terminator)
	v := newTestVerifier(t, nil)
	tests := []struct {
		name string
		r    *http.Request
		code string
		msg  string // exact message when non-empty
	}{
		{"no authentication at all", craft("", now), CodeMissingAuthToken, "Request is missing Authentication Token"},
		{"bearer token (not SigV4)", craft("Bearer abc.def", now), CodeIncompleteSignature,
			"Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization=Bearer abc.def"},
		{"SigV2", craft("AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=", now), CodeIncompleteSignature, ""},
		{"other SigV4 algorithm", craft("AWS4-ECDSA-P256-SHA256 Credential="+goodCred+", SignedHeaders=host;x-amz-date, Signature="+fakeSig, now), CodeIncompleteSignature,
			"Unsupported AWS 'algorithm': 'AWS4-ECDSA-P256-SHA256'."},
		{"algorithm case", craft("aws4-hmac-sha256 Credential="+goodCred+", SignedHeaders=host;x-amz-date, Signature="+fakeSig, now), CodeIncompleteSignature, ""},
		{"missing Credential", craft("AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature="+fakeSig, now), CodeIncompleteSignature,
			"Authorization header requires 'Credential' parameter. Authorization=AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=" + fakeSig},
		{"missing SignedHeaders", craft("AWS4-HMAC-SHA256 Credential="+goodCred+", Signature="+fakeSig, now), CodeIncompleteSignature,
			"Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256 Credential=" + goodCred + ", Signature=" + fakeSig},
		{"missing Signature", craft("AWS4-HMAC-SHA256 Credential="+goodCred+", SignedHeaders=host;x-amz-date", now), CodeIncompleteSignature,
			"Authorization header requires 'Signature' parameter. Authorization=AWS4-HMAC-SHA256 Credential=" + goodCred + ", SignedHeaders=host;x-amz-date"},
		{"missing date header", craft(authHeader(goodCred, "host;x-amz-date", fakeSig), ""), CodeIncompleteSignature,
			"Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=" + authHeader(goodCred, "host;x-amz-date", fakeSig)},
		{"empty SignedHeaders", craft(authHeader(goodCred, "", fakeSig), now), CodeIncompleteSignature, ""},
		{"missing equal sign", craft("AWS4-HMAC-SHA256 Credential="+goodCred+", SignedHeaders, Signature="+fakeSig, now), CodeIncompleteSignature,
			"'SignedHeaders' not a valid key=value pair (missing equal-sign) in Authorization header: 'AWS4-HMAC-SHA256 Credential=" + goodCred + ", SignedHeaders, Signature=" + fakeSig + "'."},
		{"duplicate Signature", craft(authHeader(goodCred, "host;x-amz-date", fakeSig)+", Signature="+fakeSig, now), CodeIncompleteSignature, ""},
		{"unknown parameter", craft(authHeader(goodCred, "host;x-amz-date", fakeSig)+", Extra=1", now), CodeIncompleteSignature, ""},
		{"credential with 4 parts", craft(authHeader(testAKID+"/20261129/"+testRegion+"/"+testService, "host;x-amz-date", fakeSig), now), CodeIncompleteSignature,
			"Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '" + testAKID + "/20261129/" + testRegion + "/" + testService + "'"},
		{"credential with 6 parts", craft(authHeader(goodCred+"/x", "host;x-amz-date", fakeSig), now), CodeIncompleteSignature, ""},
		{"credential with a trailing slash", craft(authHeader(goodCred+"/", "host;x-amz-date", fakeSig), now), CodeIncompleteSignature, ""},
		{"credential without key id", craft(authHeader("/20261129/"+testRegion+"/"+testService+"/aws4_request", "host;x-amz-date", fakeSig), now), CodeIncompleteSignature, ""},
		{"host not signed", craft(authHeader(goodCred, "x-amz-date", fakeSig), now), CodeIncompleteSignature,
			"'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."},
		{"x-amz-date not signed", craft(authHeader(goodCred, "host", fakeSig), now), CodeIncompleteSignature,
			"'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization."},
		{"upper-case signed header", craft(authHeader(goodCred, "Host;x-amz-date", fakeSig), now), CodeIncompleteSignature, ""},
		{"signed header listed twice", craft(authHeader(goodCred, "host;host;x-amz-date", fakeSig), now), CodeIncompleteSignature, ""},
		{"trailing semicolon", craft(authHeader(goodCred, "host;x-amz-date;", fakeSig), now), CodeIncompleteSignature, ""},
		{"too many signed headers", craft(authHeader(goodCred, "host;x-amz-date;"+manyHeaders(200), fakeSig), now), CodeIncompleteSignature, ""},
		{"oversized Authorization", craft(authHeader(goodCred, "host;x-amz-date", strings.Repeat("a", 9000)), now), CodeIncompleteSignature, ""},
		{"malformed X-Amz-Date", craft(authHeader(goodCred, "host;x-amz-date", fakeSig), "2026-11-29T01:30:00Z"), CodeIncompleteSignature,
			"Date must be in ISO-8601 'basic format'. Got '2026-11-29T01:30:00Z'. See http://en.wikipedia.org/wiki/ISO_8601"},
		{"skew: 5m1s in the past", craft(authHeader(goodCred, "host;x-amz-date", fakeSig), testNow.Add(-5*time.Minute-time.Second).Format(iso8601Basic)), CodeRequestExpired,
			"Signature expired: 20261129T012459Z is now earlier than 20261129T012500Z (20261129T013000Z - 5 min.)"},
		{"skew: 5m1s in the future", craft(authHeader(goodCred, "host;x-amz-date", fakeSig), testNow.Add(5*time.Minute+time.Second).Format(iso8601Basic)), CodeRequestExpired,
			"Signature not yet current: 20261129T013501Z is still later than 20261129T013500Z (20261129T013000Z + 5 min.)"},
		{"scope date differs from request date", craft(authHeader(scope(testAKID, testNow.AddDate(0, 0, -1), testRegion, testService, terminator), "host;x-amz-date", fakeSig), now), CodeSignatureDoesNotMatch,
			"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20261128' != '20261129', from '20261129T013000Z'."},
		{"wrong region", craft(authHeader(scope(testAKID, testNow, "us-east-1", testService, terminator), "host;x-amz-date", fakeSig), now), CodeSignatureDoesNotMatch,
			"Credential should be scoped to a valid region, not 'us-east-1'. "},
		{"wrong service", craft(authHeader(scope(testAKID, testNow, testRegion, "s3", terminator), "host;x-amz-date", fakeSig), now), CodeSignatureDoesNotMatch,
			"Credential should be scoped to correct service: 'execute-api'. "},
		{"wrong terminator", craft(authHeader(scope(testAKID, testNow, testRegion, testService, "aws4_requests"), "host;x-amz-date", fakeSig), now), CodeSignatureDoesNotMatch,
			"Credential should be scoped with a valid terminator: 'aws4_request', not 'aws4_requests'. "},
		{"unknown access key", craft(authHeader(scope("AKIANOTKNOWN", testNow, testRegion, testService, terminator), "host;x-amz-date", fakeSig), now), CodeInvalidClientTokenID,
			"The security token included in the request is invalid."},
		{"two Authorization headers", func() *http.Request {
			r := craft(authHeader(goodCred, "host;x-amz-date", fakeSig), now)
			r.Header.Add("Authorization", authHeader(goodCred, "host;x-amz-date", fakeSig))
			return r
		}(), CodeIncompleteSignature, ""},
		{"two X-Amz-Date headers", func() *http.Request {
			r := craft(authHeader(goodCred, "host;x-amz-date", fakeSig), now)
			r.Header.Add("X-Amz-Date", now)
			return r
		}(), CodeIncompleteSignature, ""},
		{"header and presigned at once", func() *http.Request {
			r := craft(authHeader(goodCred, "host;x-amz-date", fakeSig), now)
			r.URL.RawQuery = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=" + fakeSig
			return r
		}(), CodeIncompleteSignature, ""},
		{"malformed query escape", func() *http.Request {
			r := craft(authHeader(goodCred, "host;x-amz-date", fakeSig), now)
			r.URL.RawQuery = "a=%zz"
			return r
		}(), CodeMalformedQueryString, ""},
		{"signature not hex", craft(authHeader(goodCred, "host;x-amz-date", strings.Repeat("z", 64)), now), CodeSignatureDoesNotMatch, msgSignatureMismatch},
		{"signature too short", craft(authHeader(goodCred, "host;x-amz-date", fakeSig[:63]), now), CodeSignatureDoesNotMatch, msgSignatureMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := v.Verify(context.Background(), tt.r, nil)
			if res != nil {
				t.Fatalf("accepted: %+v", res)
			}
			if tt.msg != "" {
				wantCode(t, err, tt.code, tt.msg)
			} else {
				wantCode(t, err, tt.code)
			}
		})
	}
}

// TestUpperCaseSignature: signers write the signature in lower-case hex; the same bytes in
// upper case are refused (found by FuzzVerify), so a signature has one spelling only.
func TestUpperCaseSignature(t *testing.T) {
	v := newTestVerifier(t, nil)
	r := craft("", "")
	sdkSign(t, r, nil, signOpts{})
	mustVerify(t, v, r, nil)
	a := r.Header.Get("Authorization")
	i := strings.LastIndex(a, "=") + 1
	r.Header.Set("Authorization", a[:i]+strings.ToUpper(a[i:]))
	_, err := v.Verify(context.Background(), r, nil)
	wantCode(t, err, CodeSignatureDoesNotMatch, msgSignatureMismatch)
}

func manyHeaders(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(';')
		}
		fmt.Fprintf(&b, "x-h%03d", i)
	}
	return b.String()
}

// TestMissingTokenGatewayWording: API Gateway words the missing-token error differently.
func TestMissingTokenGatewayWording(t *testing.T) {
	_, err := newTestVerifier(t, nil).Verify(context.Background(), craft("", ""), nil)
	e := wantCode(t, err, CodeMissingAuthToken, "Request is missing Authentication Token")
	if e.GatewayType != GatewayMissingAuthToken || e.GatewayMessage != "Missing Authentication Token" || e.HTTPStatus != 403 {
		t.Errorf("error = %+v", e)
	}
}

// TestSkewBoundaries: exactly MaxSkew either way is accepted, a configured skew is honoured.
func TestSkewBoundaries(t *testing.T) {
	body := []byte("b")
	for _, tc := range []struct {
		name  string
		skew  time.Duration
		off   time.Duration
		valid bool
	}{
		{"default, -5m", 0, -5 * time.Minute, true},
		{"default, +5m", 0, 5 * time.Minute, true},
		{"default, +5m1s", 0, 5*time.Minute + time.Second, false},
		{"1m, -61s", time.Minute, -61 * time.Second, false},
		{"1m, -60s", time.Minute, -60 * time.Second, true},
		{"15m, -14m", 15 * time.Minute, -14 * time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, nil, func(c *Config) { c.MaxSkew = tc.skew })
			r := testRequest(t, body)
			sdkSign(t, r, body, signOpts{at: testNow.Add(tc.off)})
			_, err := v.Verify(context.Background(), r, body)
			if tc.valid && err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if !tc.valid {
				e := wantCode(t, err, CodeRequestExpired)
				if tc.skew == time.Minute && !strings.HasSuffix(e.Message, "- 1 min.)") {
					t.Errorf("message %q does not name the configured skew", e.Message)
				}
				if e.Hint == "" {
					t.Error("no clock-skew hint")
				}
			}
		})
	}
}

// TestDenyPresigned covers the presigned form's own rules.
func TestDenyPresigned(t *testing.T) {
	v := newTestVerifier(t, nil)
	presign := func(t *testing.T, expires string, at time.Time) *http.Request {
		r := testRequest(t, nil)
		r.Method = http.MethodGet
		if expires != "" {
			r.URL.RawQuery += "&X-Amz-Expires=" + expires
		}
		return sdkPresign(t, r, nil, signOpts{at: at})
	}
	tests := []struct {
		name string
		r    func(t *testing.T) *http.Request
		code string
		msg  string
	}{
		{"valid up to the last second", func(t *testing.T) *http.Request { return presign(t, "600", testNow.Add(-600*time.Second)) }, "", ""},
		{"valid at the maximum of seven days", func(t *testing.T) *http.Request { return presign(t, "604800", testNow.Add(-604000*time.Second)) }, "", ""},
		{"expired", func(t *testing.T) *http.Request { return presign(t, "600", testNow.Add(-601*time.Second)) }, CodeRequestExpired, "Request has expired."},
		{"not yet valid", func(t *testing.T) *http.Request { return presign(t, "600", testNow.Add(6*time.Minute)) }, CodeRequestExpired,
			"Signature not yet current: 20261129T013600Z is still later than 20261129T013500Z (20261129T013000Z + 5 min.)"},
		{"valid within the skew before its date", func(t *testing.T) *http.Request { return presign(t, "600", testNow.Add(4*time.Minute)) }, "", ""},
		{"X-Amz-Expires over a week", func(t *testing.T) *http.Request { return presign(t, "604801", testNow) }, CodeIncompleteSignature,
			"X-Amz-Expires must be less than a week (in seconds) that is 604800"},
		{"X-Amz-Expires huge", func(t *testing.T) *http.Request { return presign(t, "99999999999999999999999", testNow) }, CodeIncompleteSignature,
			"X-Amz-Expires must be less than a week (in seconds) that is 604800"},
		{"X-Amz-Expires negative", func(t *testing.T) *http.Request { return presign(t, "-1", testNow) }, CodeIncompleteSignature,
			"X-Amz-Expires must be non-negative"},
		{"X-Amz-Expires not a number", func(t *testing.T) *http.Request { return presign(t, "60s", testNow) }, CodeIncompleteSignature,
			"X-Amz-Expires should be a number"},
		{"X-Amz-Expires missing", func(t *testing.T) *http.Request { return presign(t, "", testNow) }, CodeIncompleteSignature, ""},
		{"wrong algorithm", func(t *testing.T) *http.Request {
			r := presign(t, "60", testNow)
			r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Algorithm=AWS4-HMAC-SHA1", 1)
			return r
		}, CodeIncompleteSignature, ""},
		{"missing X-Amz-Credential", func(t *testing.T) *http.Request {
			r := presign(t, "60", testNow)
			q := r.URL.Query()
			q.Del("X-Amz-Credential")
			r.URL.RawQuery = q.Encode()
			return r
		}, CodeIncompleteSignature, ""},
		{"host not signed", func(t *testing.T) *http.Request {
			r := presign(t, "60", testNow)
			q := r.URL.Query()
			q.Set("X-Amz-SignedHeaders", "x-custom")
			r.URL.RawQuery = q.Encode()
			return r
		}, CodeIncompleteSignature, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."},
		{"wrong region", func(t *testing.T) *http.Request {
			r := testRequest(t, nil)
			r.URL.RawQuery += "&X-Amz-Expires=60"
			return sdkPresign(t, r, nil, signOpts{region: "us-west-2"})
		}, CodeSignatureDoesNotMatch, "Credential should be scoped to a valid region, not 'us-west-2'. "},
	}
	for _, name := range presignParams {
		tests = append(tests, struct {
			name string
			r    func(t *testing.T) *http.Request
			code string
			msg  string
		}{"duplicate " + name, func(t *testing.T) *http.Request {
			r := testRequest(t, nil)
			r.URL.RawQuery += "&X-Amz-Expires=60"
			pr := sdkPresign(t, r, nil, signOpts{akid: testTempID, secret: testSecret + "temp", token: testToken})
			q := pr.URL.Query()
			if len(q[name]) != 1 {
				t.Fatalf("presigned URL has %d %s", len(q[name]), name)
			}
			pr.URL.RawQuery += "&" + name + "=" + q.Get(name)
			return pr
		}, CodeIncompleteSignature, ""})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := v.Verify(context.Background(), tt.r(t), nil)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if res != nil {
				t.Fatalf("accepted: %+v", res)
			}
			if tt.msg != "" {
				wantCode(t, err, tt.code, tt.msg)
			} else {
				wantCode(t, err, tt.code)
			}
		})
	}
}

// errSource returns a fixed error, or a fixed credential.
type errSource struct {
	cred Credential
	err  error
}

func (s errSource) LookupCredential(context.Context, string, string) (Credential, error) {
	return s.cred, s.err
}

// TestDenyCredentials covers what the credential lookup and binding refuse.
func TestDenyCredentials(t *testing.T) {
	body := []byte(`{}`)
	temp := signOpts{akid: testTempID, secret: testSecret + "temp", token: testToken}
	tests := []struct {
		name string
		src  CredentialSource
		sign signOpts
		edit func(r *http.Request)
		code string
		msg  string
	}{
		{"session token missing", nil, temp, func(r *http.Request) { r.Header.Del("X-Amz-Security-Token") }, CodeInvalidClientTokenID, msgInvalidToken},
		{"session token mismatch", nil, temp, func(r *http.Request) { r.Header.Set("X-Amz-Security-Token", testToken+"x") }, CodeInvalidClientTokenID, msgInvalidToken},
		{"session token on a long-term key", nil, signOpts{token: "some-token"}, nil, CodeInvalidClientTokenID, msgInvalidToken},
		{"two session tokens", nil, temp, func(r *http.Request) { r.Header.Add("X-Amz-Security-Token", testToken) }, CodeIncompleteSignature, ""},
		{"expired credential", errSource{cred: Credential{AccessKeyID: testAKID, SecretAccessKey: testSecret, Expires: testNow}}, signOpts{}, nil, CodeExpiredToken,
			"The security token included in the request is expired"},
		{"source says expired", errSource{err: fmt.Errorf("open token: %w", ErrExpiredToken)}, signOpts{}, nil, CodeExpiredToken, ""},
		{"source says invalid token", errSource{err: fmt.Errorf("open token: %w", ErrInvalidToken)}, signOpts{}, nil, CodeInvalidClientTokenID, msgInvalidToken},
		{"source says unknown key", errSource{err: ErrUnknownAccessKey}, signOpts{}, nil, CodeInvalidClientTokenID, msgInvalidToken},
		// A revoked role session: AWS denies its calls (AccessDenied, 403) rather than rejecting its token.
		{"source says access denied", errSource{err: fmt.Errorf("role sessions revoked: %w", ErrAccessDenied)}, signOpts{}, nil, CodeAccessDenied, ""},
		{"source fails", errSource{err: errors.New("database is down")}, signOpts{}, nil, CodeInternalFailure, ""},
		{"source returns another key", errSource{cred: Credential{AccessKeyID: "AKIAOTHER", SecretAccessKey: testSecret}}, signOpts{}, nil, CodeInternalFailure, ""},
		{"source returns no secret", errSource{cred: Credential{AccessKeyID: testAKID}}, signOpts{}, nil, CodeInternalFailure, ""},
		{"wrong secret", nil, signOpts{akid: testAKID, secret: "not-the-secret"}, nil, CodeSignatureDoesNotMatch, msgSignatureMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVerifier(t, tt.src)
			r := testRequest(t, body)
			sdkSign(t, r, body, tt.sign)
			if tt.edit != nil {
				tt.edit(r)
			}
			res, err := v.Verify(context.Background(), r, body)
			if res != nil {
				t.Fatalf("accepted: %+v", res)
			}
			if tt.msg != "" {
				wantCode(t, err, tt.code, tt.msg)
			} else {
				wantCode(t, err, tt.code)
			}
		})
	}
}

// TestPayloadHash covers x-amz-content-sha256 and UNSIGNED-PAYLOAD.
func TestPayloadHash(t *testing.T) {
	body := []byte("the body")
	tests := []struct {
		name       string
		allow      bool
		hdr        string // x-amz-content-sha256 set before signing; "" = none
		signedHash string // payload hash given to the signer; "" = the body's
		sendBody   []byte // body the server sees; nil = body
		code       string
		unsigned   bool
	}{
		{"header matches body", false, hashHex(body), "", nil, "", false},
		{"header does not match body", false, hashHex([]byte("other")), hashHex([]byte("other")), nil, CodeContentSHA256Mismatch, false},
		{"body changed after signing with header", false, hashHex(body), "", []byte("the bodY"), CodeContentSHA256Mismatch, false},
		{"header not hex", false, "not-a-hash", "not-a-hash", nil, CodeContentSHA256Mismatch, false},
		{"streaming payload unsupported", false, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", nil, CodeContentSHA256Mismatch, false},
		{"UNSIGNED-PAYLOAD refused by default", false, unsignedPayload, unsignedPayload, nil, CodeAccessDenied, false},
		{"UNSIGNED-PAYLOAD allowed", true, unsignedPayload, unsignedPayload, []byte("any body at all"), "", true},
		{"UNSIGNED-PAYLOAD without the header, refused by default", false, "", unsignedPayload, nil, CodeSignatureDoesNotMatch, false},
		{"UNSIGNED-PAYLOAD without the header, allowed", true, "", unsignedPayload, nil, "", true},
		{"allowed, but a signed body still binds", true, "", "", []byte("changed"), CodeSignatureDoesNotMatch, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVerifier(t, nil, func(c *Config) { c.AllowUnsignedPayload = tt.allow })
			r := testRequest(t, body)
			if tt.hdr != "" {
				r.Header.Set("X-Amz-Content-Sha256", tt.hdr)
			}
			sdkSign(t, r, body, signOpts{payloadHash: tt.signedHash})
			send := body
			if tt.sendBody != nil {
				send = tt.sendBody
			}
			res, err := v.Verify(context.Background(), r, send)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("rejected: %v\n%s", err, describe(err))
				}
				if res.UnsignedPayload != tt.unsigned {
					t.Errorf("UnsignedPayload = %v", res.UnsignedPayload)
				}
				// The payload hash the signature covers, for what the gateway vouches for.
				want := hashHex(body)
				if tt.unsigned {
					want = unsignedPayload
				}
				if got := res.PayloadHash(); got != want {
					t.Errorf("PayloadHash = %q, want %q", got, want)
				}
				return
			}
			if res != nil {
				t.Fatalf("accepted: %+v", res)
			}
			wantCode(t, err, tt.code)
		})
	}
}

// refSignature signs a canonical request written out by hand in the test, with crypto/hmac
// and the steps of "Calculate the signature" (IAM User Guide), independently of the
// verifier's code.
func refSignature(canonical, amzDate, scope, secret string) string {
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	parts := strings.Split(scope, "/")
	k := mac([]byte("AWS4"+secret), parts[0])
	k = mac(k, parts[1])
	k = mac(k, parts[2])
	k = mac(k, parts[3])
	sts := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hashHex([]byte(canonical))
	return hex.EncodeToString(mac(k, sts))
}

// TestDateHeader: the Date header (RFC 1123) stands in for X-Amz-Date; the string-to-sign
// still carries the ISO 8601 form, and Date must then be signed.
func TestDateHeader(t *testing.T) {
	v := newTestVerifier(t, nil)
	httpDate := testNow.Format(http.TimeFormat)
	canonical := "GET\n/prod/x\n\ndate:" + httpDate + "\nhost:api.example.com\n\ndate;host\n" + hashHex(nil)
	sc := testNow.Format(yyyymmdd) + "/" + testRegion + "/" + testService + "/" + terminator
	sig := refSignature(canonical, testNow.Format(iso8601Basic), sc, testSecret)

	r := craft(authHeader(testAKID+"/"+sc, "date;host", sig), "")
	r.Header.Set("Date", httpDate)
	res := mustVerify(t, v, r, nil)
	if !res.SigningTime.Equal(testNow) {
		t.Errorf("SigningTime = %v", res.SigningTime)
	}

	// The same instant with a numeric zone, as botocore writes it.
	r.Header.Set("Date", testNow.Format("Mon, 02 Jan 2006 15:04:05 -0000"))
	canonicalZ := strings.Replace(canonical, httpDate, testNow.Format("Mon, 02 Jan 2006 15:04:05 -0000"), 1)
	r.Header.Set("Authorization", authHeader(testAKID+"/"+sc, "date;host", refSignature(canonicalZ, testNow.Format(iso8601Basic), sc, testSecret)))
	mustVerify(t, v, r, nil)

	r.Header.Set("Date", testNow.Add(time.Second).Format(http.TimeFormat))
	_, err := v.Verify(context.Background(), r, nil)
	wantCode(t, err, CodeSignatureDoesNotMatch)

	r.Header.Set("Date", "yesterday")
	_, err = v.Verify(context.Background(), r, nil)
	wantCode(t, err, CodeIncompleteSignature)

	r2 := craft(authHeader(testAKID+"/"+sc, "host", sig), "")
	r2.Header.Set("Date", httpDate)
	_, err = v.Verify(context.Background(), r2, nil)
	wantCode(t, err, CodeIncompleteSignature, "'Date' must be a 'SignedHeader' in the AWS Authorization.")
}

// TestReferenceSignature cross-checks the hand-written reference signer against
// aws-sdk-go-v2 on one request, so TestDateHeader's signer is known to be right.
func TestReferenceSignature(t *testing.T) {
	r := craft("", "")
	sdkSign(t, r, nil, signOpts{})
	canonical := "GET\n/prod/x\n\nhost:api.example.com\nx-amz-date:" + testNow.Format(iso8601Basic) + "\n\nhost;x-amz-date\n" + hashHex(nil)
	sc := testNow.Format(yyyymmdd) + "/" + testRegion + "/" + testService + "/" + terminator
	want := refSignature(canonical, testNow.Format(iso8601Basic), sc, testSecret)
	if got := r.Header.Get("Authorization"); !strings.HasSuffix(got, "Signature="+want) {
		t.Fatalf("reference signature %s, SDK header %s", want, got)
	}
}

// TestNewRejectsBadConfig: configuration mistakes fail at New, not at the first request.
func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		src  CredentialSource
	}{
		{"no region", Config{Service: "s"}, testCreds()},
		{"no service", Config{Region: "r"}, testCreds()},
		{"slash in region", Config{Region: "us/east", Service: "s"}, testCreds()},
		{"negative skew", Config{Region: "r", Service: "s", MaxSkew: -1}, testCreds()},
		{"negative cache", Config{Region: "r", Service: "s", KeyCacheSize: -1}, testCreds()},
		{"nil source", Config{Region: "r", Service: "s"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, tc.src); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	v, err := New(Config{Region: "r", Service: "s"}, testCreds())
	if err != nil {
		t.Fatal(err)
	}
	if c := v.Config(); c.MaxSkew != 5*time.Minute || c.KeyCacheSize != 4096 || c.MaxBodyBytes != 10<<20 {
		t.Errorf("defaults = %+v", c)
	}
}

// TestAsSentFormRefused: a signature over the path and query exactly as sent (curl 7.x)
// is refused with a hint saying so. Accepting it would be a forgery: the AWS form of
// "/a%20b" is "/a%2520b", which is exactly the as-sent form of the path "/a%2520b".
func TestAsSentFormRefused(t *testing.T) {
	v := newTestVerifier(t, nil)
	now := testNow.Format(iso8601Basic)
	sc := testNow.Format(yyyymmdd) + "/" + testRegion + "/" + testService + "/" + terminator
	sign := func(canonicalPath, query string) string {
		return refSignature("GET\n"+canonicalPath+"\n"+query+"\nhost:api.example.com\nx-amz-date:"+now+"\n\nhost;x-amz-date\n"+hashHex(nil), now, sc, testSecret)
	}
	send := func(path, query, sig string) error {
		r := craft(authHeader(testAKID+"/"+sc, "host;x-amz-date", sig), now)
		r.URL.Path, _ = url.PathUnescape(path)
		r.URL.RawPath, r.URL.RawQuery = path, query
		if r.URL.EscapedPath() != path {
			t.Fatalf("test bug: path %q sent as %q", path, r.URL.EscapedPath())
		}
		_, err := v.Verify(context.Background(), r, nil)
		return err
	}

	// curl-style signature: refused, with the hint.
	err := send("/a%20b", "b=1&a=2", sign("/a%20b", "b=1&a=2"))
	e := wantCode(t, err, CodeSignatureDoesNotMatch)
	if !strings.Contains(e.Hint, "exactly as sent") || !strings.Contains(e.CanonicalRequest, "\n/a%2520b\na=2&b=1\n") {
		t.Errorf("hint %q\ncanonical request %q", e.Hint, e.CanonicalRequest)
	}

	// The forgery the refusal prevents: a valid AWS signature for "/a%20b" ...
	good := sign("/a%2520b", "")
	if err := send("/a%20b", "", good); err != nil {
		t.Fatalf("valid request rejected: %v", err)
	}
	// ... must not pass for "/a%2520b", whose as-sent form is the same string.
	err = send("/a%2520b", "", good)
	e = wantCode(t, err, CodeSignatureDoesNotMatch)
	if strings.Contains(e.Hint, "exactly as sent") {
		t.Errorf("hint %q", e.Hint)
	}
}

// TestS3StylePaths: in S3 mode a path signed as sent (escapes kept) verifies, and no
// signature passes for a path that names another key.
func TestS3StylePaths(t *testing.T) {
	v := newTestVerifier(t, nil, func(c *Config) { c.DisablePathNormalization = true })
	now := testNow.Format(iso8601Basic)
	sc := testNow.Format(yyyymmdd) + "/" + testRegion + "/" + testService + "/" + terminator
	sign := func(canonicalPath string) string {
		return refSignature("GET\n"+canonicalPath+"\n\nhost:api.example.com\nx-amz-date:"+now+"\n\nhost;x-amz-date\n"+hashHex(nil), now, sc, testSecret)
	}
	send := func(path, sig string) error {
		r := craft(authHeader(testAKID+"/"+sc, "host;x-amz-date", sig), now)
		r.RequestURI = path // as a server would see it
		_, err := v.Verify(context.Background(), r, nil)
		return err
	}
	for _, tc := range []struct {
		name, signed, sent string
		valid              bool
	}{
		{"AWS form", "/bkt/a~b", "/bkt/a~b", true},
		{"AWS form of an escaped unreserved byte", "/bkt/a~b", "/bkt/a%7Eb", true},
		{"escape kept as sent", "/bkt/a%7Eb", "/bkt/a%7Eb", true},
		{"escaped slash as sent", "/bkt/a%2Fb", "/bkt/a%2Fb", true},
		{"lower-case escaped slash as sent", "/bkt/a%2fb", "/bkt/a%2fb", true},
		{"a/b does not verify a%2Fb", "/bkt/a/b", "/bkt/a%2Fb", false},
		{"a%2Fb does not verify a/b", "/bkt/a%2Fb", "/bkt/a/b", false},
		{"a%2520b does not verify a%20b", "/bkt/a%2520b", "/bkt/a%20b", false},
		{"dot segments are part of the key", "/bkt/a/../b", "/bkt/b", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := send(tc.sent, sign(tc.signed))
			if tc.valid && err != nil {
				t.Fatalf("rejected: %v\n%s", err, describe(err))
			}
			if !tc.valid {
				wantCode(t, err, CodeSignatureDoesNotMatch)
			}
		})
	}
}
