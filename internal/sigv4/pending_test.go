package sigv4

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestBeginBeforeBody: everything but the signature is checked without the body, and a
// request that declares its body's hash (x-amz-content-sha256) is verified completely
// before the body is read; the caller then holds the body to that hash.
func TestBeginBeforeBody(t *testing.T) {
	v := newTestVerifier(t, nil)
	body := []byte(`{"order":1}`)

	t.Run("declared hash", func(t *testing.T) {
		r := testRequest(t, body)
		r.Header.Set("X-Amz-Content-Sha256", hashHex(body))
		sdkSign(t, r, body, signOpts{})
		p, err := v.Begin(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		if p.AccessKeyID() != testAKID || p.Credential().Principal != "arn:aws:iam::123456789012:user/alice" {
			t.Errorf("claimed %s %+v", p.AccessKeyID(), p.Credential())
		}
		h, ok := p.DeclaredHash()
		if !ok || h != hashHex(body) {
			t.Fatalf("declared hash %q %v", h, ok)
		}
		res, err := p.VerifyDeclared()
		if err != nil {
			t.Fatalf("VerifyDeclared: %v", err)
		}
		if res.Signature == "" || !res.Expires.Equal(testNow.Add(defaultMaxSkew)) {
			t.Errorf("result signature %q expires %s", res.Signature, res.Expires)
		}
	})
	t.Run("declared hash, wrong signature", func(t *testing.T) {
		r := testRequest(t, body)
		r.Header.Set("X-Amz-Content-Sha256", hashHex(body))
		sdkSign(t, r, body, signOpts{secret: "not-the-secret", akid: testAKID})
		p, err := v.Begin(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.VerifyDeclared()
		wantCode(t, err, CodeSignatureDoesNotMatch)
	})
	t.Run("body hash signed, not declared", func(t *testing.T) {
		r := testRequest(t, body)
		sdkSign(t, r, body, signOpts{})
		p, err := v.Begin(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.DeclaredHash(); ok {
			t.Fatal("a hash is declared")
		}
		if _, err := p.VerifyDeclared(); err == nil {
			t.Fatal("VerifyDeclared without a declared hash succeeded")
		}
		p, _ = v.Begin(context.Background(), r)
		if _, err := p.Verify([]byte(`{"order":2}`)); err == nil {
			t.Fatal("another body verified")
		}
		p, _ = v.Begin(context.Background(), r)
		mustPending(t, p, body)
	})
	t.Run("refused before the body", func(t *testing.T) {
		for name, mod := range map[string]func(r *http.Request){
			"unknown key": func(r *http.Request) { sdkSign(t, r, body, signOpts{akid: "AKIAUNKNOWNKEY000000", secret: "x"}) },
			"wrong scope": func(r *http.Request) { sdkSign(t, r, body, signOpts{region: "us-west-2"}) },
			"expired":     func(r *http.Request) { sdkSign(t, r, body, signOpts{at: testNow.Add(-time.Hour)}) },
			"no auth":     func(*http.Request) {},
		} {
			r := testRequest(t, body)
			mod(r)
			r.Body = failingBody{t}
			if _, err := v.Begin(context.Background(), r); err == nil {
				t.Errorf("%s: Begin accepted it", name)
			}
		}
	})
}

func mustPending(t *testing.T, p *Pending, body []byte) {
	t.Helper()
	if _, err := p.Verify(body); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

// failingBody fails the test if anything reads it.
type failingBody struct{ t *testing.T }

func (b failingBody) Read([]byte) (int, error) {
	b.t.Error("the body was read")
	return 0, nil
}

func (failingBody) Close() error { return nil }

// TestPresignedBodyMustBeSigned (issue 15, attack 5): a URL presigned over
// UNSIGNED-PAYLOAD authorizes no body: with one it is refused, whatever the body. Without
// a body it still works, and a URL presigned over the body's hash carries that body only.
func TestPresignedBodyMustBeSigned(t *testing.T) {
	v := newTestVerifier(t, nil)
	week := func() *http.Request {
		r := testRequest(t, nil)
		r.URL.RawQuery += "&X-Amz-Expires=604800"
		return r
	}
	unsigned := func(body []byte) *http.Request {
		return sdkPresign(t, week(), body, signOpts{payloadHash: unsignedPayload})
	}
	for _, body := range [][]byte{[]byte(`{"amount":1}`), []byte(`{"amount":1000000}`)} {
		_, err := v.Verify(context.Background(), unsigned(body), body)
		e := wantCode(t, err, CodeAccessDenied)
		if e.HTTPStatus != http.StatusForbidden {
			t.Errorf("status %d", e.HTTPStatus)
		}
	}
	mustVerify(t, v, unsigned(nil), nil)

	body := []byte(`{"amount":1}`)
	signed := sdkPresign(t, week(), body, signOpts{})
	mustVerify(t, v, signed, body)
	_, err := v.Verify(context.Background(), sdkPresign(t, week(), body, signOpts{}), []byte(`{"amount":2}`))
	wantCode(t, err, CodeSignatureDoesNotMatch)
}
