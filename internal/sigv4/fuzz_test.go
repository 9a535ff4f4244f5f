package sigv4

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/sigv4/rawhttp"
)

// FuzzParseAuthorization: the header parser never panics, and what it accepts is exactly
// what the header says.
func FuzzParseAuthorization(f *testing.F) {
	for _, c := range optionalSuite(f) {
		r, _, err := rawhttp.Parse(c.read(f, "header-signed-request.txt"))
		if err == nil {
			f.Add(r.Header.Get("Authorization"), true)
		}
	}
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/e,SignedHeaders=host,Signature=00", false)
	f.Add("AWS4-HMAC-SHA256 Credential=, SignedHeaders=, Signature=", true)
	f.Add("Bearer x", true)
	f.Fuzz(func(t *testing.T, h string, hasDate bool) {
		a, e := parseAuthorization(h, hasDate)
		if e != nil {
			if e.Code != CodeIncompleteSignature || e.Message == "" || e.HTTPStatus != http.StatusBadRequest {
				t.Fatalf("error %+v", e)
			}
			return
		}
		if !hasDate {
			t.Fatal("accepted without a date header")
		}
		if !strings.HasPrefix(h, algorithm+" ") && !strings.HasPrefix(strings.TrimLeft(h, " "), algorithm+" ") {
			t.Fatalf("accepted %q without the algorithm", h)
		}
		if a.accessKeyID == "" || a.credential != a.accessKeyID+"/"+a.scopeDate+"/"+a.region+"/"+a.service+"/"+a.term {
			t.Fatalf("credential %q split as %+v", a.credential, a)
		}
		for _, part := range []string{"Credential=" + a.credential, "SignedHeaders=" + a.signedHeaders, "Signature=" + a.signature} {
			if !strings.Contains(h, part) {
				t.Fatalf("%q does not contain %q", h, part)
			}
		}
		if len(h) > maxAuthorizationLen {
			t.Fatal("accepted an oversized header")
		}
	})
}

// fuzzTarget is one canonical request and string-to-sign that the suite signed.
type fuzzTarget struct{ canonical, sts string }

// sameRequest reports whether got carries the method, query parameters (decoded, the
// session token aside: some cases leave it unsigned) and body of the signed request want.
// It catches a verifier that leaves a part of the request out of what it checks, which the
// canonical-request comparison alone would not.
func sameRequest(got *http.Request, gotBody []byte, want []byte) bool {
	w, wantBody, err := rawhttp.Parse(want)
	if err != nil || got.Method != w.Method || string(gotBody) != string(wantBody) {
		return false
	}
	gq, err1 := url.ParseQuery(got.URL.RawQuery)
	wq, err2 := url.ParseQuery(w.URL.RawQuery)
	if err1 != nil || err2 != nil {
		return false
	}
	gq.Del("X-Amz-Security-Token")
	wq.Del("X-Amz-Security-Token")
	for _, q := range []url.Values{gq, wq} {
		for k := range q {
			slices.Sort(q[k])
		}
	}
	return reflect.DeepEqual(gq, wq)
}

// FuzzVerify feeds mutated signed requests from the AWS suite to the verifier. It must never
// panic, and it must never accept a request unless the canonical request and string-to-sign
// it accepted are ones the secret's holder signed: the fuzzer does not know the secret, so
// any acceptance of a changed request must be for an unchanged canonical form (e.g. a header
// that is not signed, or whitespace that canonicalizes away).
func FuzzVerify(f *testing.F) {
	cases := loadSuite(f)
	signed := map[fuzzTarget][]byte{} // -> the signed request
	tokens := map[string]bool{}
	var secret string
	for _, c := range cases {
		secret = c.ctx.Credentials.SecretAccessKey
		if c.ctx.Credentials.Token != "" {
			tokens[c.ctx.Credentials.Token] = true
		}
		for _, form := range []string{"header", "query"} {
			f.Add(c.read(f, form+"-signed-request.txt"), !c.ctx.Normalize)
			signed[fuzzTarget{string(c.read(f, form+"-canonical-request.txt")), string(c.read(f, form+"-string-to-sign.txt"))}] = c.read(f, form+"-signed-request.txt")
		}
	}
	src := fuzzCreds{secret: secret, tokens: tokens}
	at := cases[0].ctx.Timestamp
	verifiers := map[bool]*Verifier{}
	var accepted *fuzzTarget
	for _, s3 := range []bool{false, true} {
		v, err := New(Config{Region: "us-east-1", Service: "service", DisablePathNormalization: s3, Now: func() time.Time { return at }}, src)
		if err != nil {
			f.Fatal(err)
		}
		v.matched = func(c, s []byte) { accepted = &fuzzTarget{string(c), string(s)} }
		verifiers[s3] = v
	}
	f.Fuzz(func(t *testing.T, raw []byte, s3 bool) {
		r, body, err := rawhttp.Parse(raw)
		if err != nil {
			return
		}
		accepted = nil
		res, err := verifiers[s3].Verify(context.Background(), r, body)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code == "" || e.Message == "" || e.HTTPStatus == 0 {
				t.Fatalf("untyped or incomplete error %#v", err)
			}
			if res != nil {
				t.Fatal("result with an error")
			}
			if strings.Contains(e.Error()+e.CanonicalRequest+e.StringToSign+e.Hint, secret) {
				t.Fatal("error leaks the secret")
			}
			return
		}
		if accepted == nil {
			t.Fatal("accepted without a signature match")
		}
		orig, ok := signed[*accepted]
		if !ok {
			t.Fatalf("accepted a canonical request nobody signed:\n%s\n--\n%s", accepted.canonical, accepted.sts)
		}
		if !sameRequest(r, body, orig) {
			t.Fatalf("accepted a request that differs from the signed one:\n%q\nsigned:\n%q", raw, orig)
		}
		if res.AccessKeyID != "AKIDEXAMPLE" {
			t.Fatalf("result %+v", res)
		}
	})
}

type fuzzCreds struct {
	secret string
	tokens map[string]bool
}

func (s fuzzCreds) LookupCredential(_ context.Context, id, token string) (Credential, error) {
	if id != "AKIDEXAMPLE" {
		return Credential{}, ErrUnknownAccessKey
	}
	if token != "" && !s.tokens[token] {
		return Credential{}, ErrInvalidToken
	}
	return Credential{AccessKeyID: id, SecretAccessKey: s.secret, SessionToken: token}, nil
}
