package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// The attacks of issue 15, each against the real listeners: the gateway directly and
// through the endpoint, over HTTP/1.1 and HTTP/2.

const uploadSize = 10 << 20

// signFor signs r as creds at the env's clock over a body whose SHA-256 is sum; declare
// also sends the hash as x-amz-content-sha256 (which the signature then covers).
func (e *env) signFor(t testing.TB, r *http.Request, creds aws.Credentials, sum [32]byte, declare bool) {
	t.Helper()
	h := hex.EncodeToString(sum[:])
	if declare {
		r.Header.Set("X-Amz-Content-Sha256", h)
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, h, "execute-api", "us-east-1", e.clock.Now()); err != nil {
		t.Fatal(err)
	}
}

// TestHostileBodyBeforeAuthorization (attack 1): a POST that announces 10 MiB and sends
// 64 KiB of it, holding the rest back, is answered as soon as its headers are read when
// the caller is anonymous, signs as a principal whose policies deny the call, or signs
// with an unknown key, a wrong scope, an expired date or a malformed Authorization: the
// gateway never waits for (or buffers) the body of a call it refuses.
func TestHostileBodyBeforeAuthorization(t *testing.T) {
	h := newHostile(t)
	zero := make([]byte, uploadSize)
	sum := sha256.Sum256(zero)
	callers := []struct {
		name    string
		sign    func(r *http.Request)
		code    string
		errType string
	}{
		{"anonymous", func(*http.Request) {}, "MissingAuthenticationToken", "MissingAuthenticationTokenException"},
		{"denied", func(r *http.Request) { h.signFor(t, r, h.keys["bob"], sum, false) }, "AccessDenied", "AccessDeniedException"},
		{"denied-declared-hash", func(r *http.Request) { h.signFor(t, r, h.keys["bob"], sum, true) }, "AccessDenied", "AccessDeniedException"},
		{"unknown-key", func(r *http.Request) {
			h.signFor(t, r, aws.Credentials{AccessKeyID: "AKIAUNKNOWNKEY000000", SecretAccessKey: "x"}, sum, false)
		}, "InvalidClientTokenId", "UnrecognizedClientException"},
		{"wrong-scope", func(r *http.Request) {
			if err := v4.NewSigner().SignHTTP(context.Background(), h.keys["alice"], r, hex.EncodeToString(sum[:]), "execute-api", "us-west-2", h.clock.Now()); err != nil {
				t.Fatal(err)
			}
		}, "SignatureDoesNotMatch", "InvalidSignatureException"},
		{"expired-date", func(r *http.Request) {
			if err := v4.NewSigner().SignHTTP(context.Background(), h.keys["alice"], r, hex.EncodeToString(sum[:]), "execute-api", "us-east-1", h.clock.Now().Add(-time.Hour)); err != nil {
				t.Fatal(err)
			}
		}, "RequestExpired", "InvalidSignatureException"},
		{"malformed-authorization", func(r *http.Request) {
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIA/garbage")
		}, "IncompleteSignature", "IncompleteSignatureException"},
	}
	for _, tr := range transports {
		for _, c := range callers {
			t.Run(tr.name+"/"+c.name, func(t *testing.T) {
				pr, pw := io.Pipe()
				defer pw.Close()
				go pw.Write(zero[:64<<10])
				// The old gateway waited for the body (60 s); the answer needs no body at all.
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
				defer cancel()
				// The client's write of the held-back body ends with the wait, or it would
				// keep the request from returning.
				context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
				r, err := http.NewRequestWithContext(ctx, "POST", h.base(tr)+"/prod/orders", pr)
				if err != nil {
					t.Fatal(err)
				}
				r.ContentLength = uploadSize
				c.sign(r)
				start := time.Now()
				resp, err := h.client(tr).Do(r)
				if err != nil {
					t.Fatalf("no answer while the body is held back (after %s): %v", time.Since(start).Round(time.Millisecond), err)
				}
				resp.Body.Close()
				testenv.Latency(t, "the refusal of a held-back upload", time.Since(start), time.Second, 20*time.Second)
				if resp.StatusCode/100 != 4 || resp.Header.Get("X-Amzn-Errortype") != c.errType {
					t.Fatalf("%d %s, want 4xx %s", resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), c.errType)
				}
				ev := h.oneEvent(t)
				if ev.ErrorCode != c.code {
					t.Errorf("audit errorCode %q, want %q", ev.ErrorCode, c.code)
				}
				h.noHit(t)
			})
		}
	}
}

// TestHostileUpgradeTunnel (attack 2): an Upgrade on a route that does not allow one is
// refused, so no tunnel opens and no unsigned request rides one to the backend. (HTTP/2
// has no Upgrade: RFC 9113 §8.2.2 makes the header malformed there.)
func TestHostileUpgradeTunnel(t *testing.T) {
	h := newHostile(t)
	for _, tr := range transports {
		if tr.h2 {
			continue
		}
		t.Run(tr.name, func(t *testing.T) {
			c := h.dial(t, tr)
			r := newRequest(t, "GET", h.base(tr)+"/prod/public/chat", nil)
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			r.Header.Set("Sec-WebSocket-Version", "13")
			h.sign(r, h.keys["alice"], nil)
			if err := r.Write(c); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, body := readResponse(t, br, "GET")
			if resp.StatusCode == http.StatusSwitchingProtocols {
				// The tunnel is open: smuggle an unsigned DELETE through it.
				io.WriteString(c, "DELETE /private/everything HTTP/1.1\r\nHost: backend\r\nContent-Length: 0\r\n\r\n")
				if resp, _ := readResponse(t, br, "DELETE"); resp.StatusCode == http.StatusOK {
					t.Errorf("an unsigned DELETE went through the upgrade tunnel to the backend")
				}
				t.Fatalf("the upgrade was allowed on a route that does not opt in")
			}
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Amzn-Errortype") != "BadRequestException" {
				t.Fatalf("%d %s %s, want 400 BadRequestException", resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), body)
			}
			ev := h.oneEvent(t)
			if ev.ErrorCode != "BadRequest" || !strings.Contains(ev.AdditionalEventData["reason"].(string), "Upgrade") {
				t.Errorf("audit %s %v", ev.ErrorCode, ev.AdditionalEventData)
			}
			h.noHit(t)
		})
	}
}

// TestHostilePathForms (attack 3): paths that one decoding authorizes as /public/… and
// another reads as something else are refused with 400 and audited, never forwarded.
func TestHostilePathForms(t *testing.T) {
	h := newHostile(t)
	paths := []string{
		"/prod/public/..;/private/x",      // servlet containers read "..;" as ".."
		"/prod/public/a;jsessionid=1/x",   // a matrix parameter
		"/prod/public/%252e%252e/private", // double encoding: %2e%2e after one decode
		"/prod/public/%c0%ae%c0%ae/private/x",
		"/prod/public/%2e%2e/private/x",    // an encoded dot segment
		"/prod/public/%252fprivate/x",      // a double-encoded separator
		"/prod/public/%e0%80%af../private", // overlong "/"
	}
	for _, tr := range transports {
		for _, p := range paths {
			t.Run(tr.name+p, func(t *testing.T) {
				r := newRequest(t, "GET", h.base(tr)+p, nil)
				h.sign(r, h.keys["alice"], nil)
				code, body, hdr := do(t, h.client(tr), r)
				if code != http.StatusBadRequest || hdr.Get("X-Amzn-Errortype") != "BadRequestException" {
					t.Fatalf("%d %s %s, want 400 BadRequestException", code, hdr.Get("X-Amzn-Errortype"), body)
				}
				ev := h.oneEvent(t)
				if ev.ErrorCode != "BadRequest" {
					t.Errorf("audit errorCode %q", ev.ErrorCode)
				}
				h.noHit(t)
			})
		}
	}
}

// TestHostileOverrideHeaders (attack 4): method and URL override headers and
// caller-supplied address headers never reach the backend; the gateway tells the backend
// the caller's address itself.
func TestHostileOverrideHeaders(t *testing.T) {
	h := newHostile(t)
	forged := []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X-Original-URL", "X-Rewrite-URL",
		"X-Real-IP", "True-Client-IP", "X-Client-IP", "CF-Connecting-IP", "X-Forwarded-For", "Forwarded"}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			body := []byte(`{"item":1}`)
			r := newRequest(t, "POST", h.base(tr)+"/prod/orders", body)
			h.sign(r, h.keys["alice"], body)
			for _, k := range forged { // unsigned, as an attacker adds them
				r.Header.Set(k, "DELETE /private/everything 203.0.113.9")
			}
			code, out, _ := do(t, h.client(tr), r)
			if code != http.StatusOK {
				t.Fatalf("%d %s", code, out)
			}
			hit := h.hit(t)
			for _, k := range forged {
				if v := hit.Header.Values(k); len(v) > 0 && (k != "X-Forwarded-For" || strings.Contains(v[0], "203.0.113.9")) {
					t.Errorf("the backend received %s: %q", k, v)
				}
			}
			if got := hit.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
				t.Errorf("X-Forwarded-For %q, want the caller's address 127.0.0.1", got)
			}
			h.audit.take()
		})
	}
}

// TestHostilePresignedUnsignedPayload (attack 5): a presigned POST signed over
// UNSIGNED-PAYLOAD does not authorize whatever body comes with it.
func TestHostilePresignedUnsignedPayload(t *testing.T) {
	h := newHostile(t)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			r := newRequest(t, "POST", h.base(tr)+"/prod/orders", nil)
			q := r.URL.Query()
			q.Set("X-Amz-Expires", "604800")
			r.URL.RawQuery = q.Encode()
			signed, hdr, err := v4.NewSigner().PresignHTTP(t.Context(), h.keys["alice"], r, "UNSIGNED-PAYLOAD", "execute-api", "us-east-1", h.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			for _, body := range []string{`{"amount":1}`, `{"amount":1000000}`} {
				req := newRequest(t, "POST", signed, []byte(body))
				for k, v := range hdr {
					if !strings.EqualFold(k, "Host") {
						req.Header[k] = v
					}
				}
				code, out, _ := do(t, h.client(tr), req)
				if code == http.StatusOK {
					t.Fatalf("the presigned POST over UNSIGNED-PAYLOAD carried body %s to the backend: %s", body, out)
				}
				if code != http.StatusForbidden {
					t.Errorf("%d %s, want 403", code, out)
				}
			}
			h.noHit(t)
			h.audit.take()
		})
	}
}

// bodyOf is a reader of n zero bytes.
func bodyOf(n int) io.Reader { return bytes.NewReader(make([]byte, n)) }
