package sigv4_test

// Round trips with real signers we did not write: aws-sdk-go-v2 (client_sdk_test.go),
// botocore (client_botocore_test.go) and curl --aws-sigv4 (client_curl_test.go). This file
// holds what they share: credentials, the deterministic request generator and an
// in-process server that verifies what arrives on the wire.
//
// Besides "it verifies", every round trip also compares the client's own canonical request
// (from its debug output) with the one the verifier computes per AWS's spec, so a request
// that only verifies through one of the verifier's alternative canonical forms (the
// unnormalized path, UNSIGNED-PAYLOAD) is noticed instead of silently passing.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/sigv4"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

const (
	clientRegion     = "eu-central-1"
	clientService    = "execute-api"
	clientAKID       = "AKIAQ3EGRCLIENTKEY01"
	clientSecret     = "kJ8x/Fq2wT+9vZbN1mR3sLp0eYcU7hG4dA6iOoXw"
	clientTempAKID   = "ASIAQ3EGRCLIENTTEMP1"
	clientTempSecret = "Tq9/aZ+0bYcX1wVuT2sRq3PoN4mLkJ5iHgF6eDcB"
	// Session tokens are base64: '+', '/' and '=' must survive headers and query strings.
	clientToken = "IQoJb3JpZ2luX2VjEHoaCWV1LWNlbnRyYWwtMSJHMEUCIQD+example/token+with/slashes=="
)

// clientTime is the signing time of every generated request signed in process (SDK,
// botocore); curl signs with the real clock.
var clientTime = time.Date(2026, 11, 29, 0, 50, 0, 0, time.UTC)

// clientCreds is a CredentialSource over a fixed map.
type clientCreds map[string]sigv4.Credential

func (c clientCreds) LookupCredential(_ context.Context, akid, _ string) (sigv4.Credential, error) {
	cred, ok := c[akid]
	if !ok {
		return sigv4.Credential{}, sigv4.ErrUnknownAccessKey
	}
	return cred, nil
}

// realCreds holds the keys the clients sign with; wrongCreds the same key ids with other
// secrets, so that verifying with them always fails with SignatureDoesNotMatch and reports
// the canonical request the verifier computed per spec.
func realCreds() clientCreds {
	return clientCreds{
		clientAKID:     {AccessKeyID: clientAKID, SecretAccessKey: clientSecret, Principal: "arn:aws:iam::111122223333:user/client"},
		clientTempAKID: {AccessKeyID: clientTempAKID, SecretAccessKey: clientTempSecret, SessionToken: clientToken, Principal: "arn:aws:sts::111122223333:assumed-role/app/client"},
	}
}

func wrongCreds() clientCreds {
	c := realCreds()
	for k, v := range c {
		v.SecretAccessKey = "not-the-" + v.SecretAccessKey
		c[k] = v
	}
	return c
}

// verifierPair is a verifier holding the real secrets and one holding wrong secrets.
type verifierPair struct {
	real, wrong *sigv4.Verifier
}

func newVerifierPair(t testing.TB, now func() time.Time, mods ...func(*sigv4.Config)) verifierPair {
	t.Helper()
	cfg := sigv4.Config{Region: clientRegion, Service: clientService, Now: now}
	for _, m := range mods {
		m(&cfg)
	}
	real, err := sigv4.New(cfg, realCreds())
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := sigv4.New(cfg, wrongCreds())
	if err != nil {
		t.Fatal(err)
	}
	return verifierPair{real: real, wrong: wrong}
}

// verdict is what the verifier said about one request.
type verdict struct {
	Valid         bool     `json:"valid"`
	AccessKeyID   string   `json:"accessKeyId,omitempty"`
	Region        string   `json:"region,omitempty"`
	Service       string   `json:"service,omitempty"`
	SignedHeaders []string `json:"signedHeaders,omitempty"`
	Presigned     bool     `json:"presigned,omitempty"`
	Code          string   `json:"code,omitempty"`
	Message       string   `json:"message,omitempty"`
	Hint          string   `json:"hint,omitempty"`
	// SpecCanonical is the canonical request per AWS's spec for the request as received,
	// as the verifier computes it (reported by the wrong-secret verifier).
	SpecCanonical string `json:"specCanonical,omitempty"`
	// AmzDate and Signature are the request's X-Amz-Date and Authorization signature, for
	// tests that recompute what a client signed.
	AmzDate   string `json:"amzDate,omitempty"`
	Signature string `json:"signature,omitempty"`
}

func (p verifierPair) judge(r *http.Request, body []byte) verdict {
	var v verdict
	res, err := p.real.Verify(r.Context(), r, body)
	var e *sigv4.Error
	switch {
	case err == nil:
		v = verdict{Valid: true, AccessKeyID: res.AccessKeyID, Region: res.Region, Service: res.Service, SignedHeaders: res.SignedHeaders, Presigned: res.Presigned}
	case errors.As(err, &e):
		v = verdict{Code: e.Code, Message: e.Message, Hint: e.Hint}
	default:
		v = verdict{Code: "not-a-sigv4-Error", Message: err.Error()}
	}
	if _, err := p.wrong.Verify(r.Context(), r, body); errors.As(err, &e) {
		v.SpecCanonical = e.CanonicalRequest
	}
	return v
}

// verifyServer is an in-process HTTP server whose handler verifies every request with the
// sigv4 Verifier over the raw body it received, and answers the verdict as JSON.
type verifyServer struct {
	*httptest.Server
	mu       sync.Mutex
	verdicts []verdict
}

func newVerifyServer(t testing.TB, p verifierPair) *verifyServer {
	t.Helper()
	s := &verifyServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		v := p.judge(r, body)
		v.AmzDate = r.Header.Get("X-Amz-Date")
		if _, sig, ok := strings.Cut(r.Header.Get("Authorization"), "Signature="); ok {
			v.Signature = sig
		}
		s.mu.Lock()
		s.verdicts = append(s.verdicts, v)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !v.Valid {
			w.WriteHeader(http.StatusForbidden)
		}
		json.NewEncoder(w).Encode(v)
	}))
	t.Cleanup(s.Close)
	return s
}

// checkVerdict fails unless v is a successful verification by akid in the client scope
// and, when clientCanonical is known, the client signed exactly the spec's canonical
// request.
func checkVerdict(t testing.TB, v verdict, akid, clientCanonical string) {
	t.Helper()
	checkVerdictFor(t, v, akid, clientService, clientCanonical)
}

func checkVerdictFor(t testing.TB, v verdict, akid, service, clientCanonical string) {
	t.Helper()
	if !v.Valid {
		t.Errorf("rejected: %s: %s\nhint: %s\nspec canonical request:\n%s\nclient canonical request:\n%s", v.Code, v.Message, v.Hint, v.SpecCanonical, clientCanonical)
		return
	}
	if v.AccessKeyID != akid || v.Region != clientRegion || v.Service != service {
		t.Errorf("result = %s/%s/%s, want %s/%s/%s", v.AccessKeyID, v.Region, v.Service, akid, clientRegion, service)
	}
	if clientCanonical != "" && v.SpecCanonical != clientCanonical {
		t.Errorf("verified, but the client did not sign the spec's canonical request:\nspec:\n%s\nclient:\n%s", v.SpecCanonical, clientCanonical)
	}
}

// needTool skips when an external signer is missing, except in CI (CI=true), which
// installs them: there a missing tool is a failure, not a reason to pass.
func needTool(t testing.TB, name string, args ...string) {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil && len(args) > 0 {
		var out []byte
		out, err = exec.Command(path, args...).CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	if err != nil {
		testenv.Skipf(t, "%s is not available: %v", name, err)
	}
}

// kv is one query parameter (decoded) or header field.
type kv struct {
	k, v string
	bare bool // query: sent as "k" without '=' (the value is empty)
}

// genRequest is one generated request, described as a client would be asked to send it.
type genRequest struct {
	name   string
	method string
	path   string // as sent on the wire: ASCII, percent-encoded where needed
	query  []kv   // decoded parameters in the order sent
	plus   bool   // the wire query encodes spaces as '+' instead of %20
	header []kv   // in order; names may repeat
	body   []byte
	temp   bool // sign with the temporary key and its session token
}

// akid returns the access key the request is signed with.
func (g genRequest) akid() string {
	if g.temp {
		return clientTempAKID
	}
	return clientAKID
}

func (g genRequest) secret() string {
	if g.temp {
		return clientTempSecret
	}
	return clientSecret
}

func (g genRequest) token() string {
	if g.temp {
		return clientToken
	}
	return ""
}

// rawQuery renders the query as sent: every byte outside RFC 3986's unreserved set
// percent-encoded (spaces as '+' when g.plus), in the generated order.
func (g genRequest) rawQuery() string {
	var b strings.Builder
	for i, p := range g.query {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(queryEscape(p.k, g.plus))
		if p.bare && p.v == "" {
			continue
		}
		b.WriteByte('=')
		b.WriteString(queryEscape(p.v, g.plus))
	}
	return b.String()
}

// canonicalQuery is the query in SigV4 canonical form: encoded, sorted by name then value,
// every parameter with '='. curl 7.88 signs the query as sent, so it is sent this way.
func (g genRequest) canonicalQuery() string {
	pairs := make([]string, 0, len(g.query))
	for _, p := range g.query {
		pairs = append(pairs, queryEscape(p.k, false)+"="+queryEscape(p.v, false))
	}
	sort.Slice(pairs, func(i, j int) bool {
		ki, vi, _ := strings.Cut(pairs[i], "=")
		kj, vj, _ := strings.Cut(pairs[j], "=")
		if ki != kj {
			return ki < kj
		}
		return vi < vj
	})
	return strings.Join(pairs, "&")
}

func queryEscape(s string, plus bool) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
			b.WriteByte(c)
		case c == ' ' && plus:
			b.WriteByte('+')
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// genProfile says which inputs a client signs per spec; the generator stays within it.
// What each restriction hides is written down in the client's test file.
type genProfile struct {
	dotSegments     bool // ".", ".." and empty ("//") path segments
	reservedPath    bool // sub-delims, ':' and '@' unencoded in the path
	escapedPath     bool // percent-escapes in the path (space, UTF-8, %2F, %25, %7E)
	lowerHexPath    bool // percent-escapes with lower-case hex digits in the path
	escapedSlash    bool // "%2F" and "%7E" (an escaped '/' and an escaped unreserved '~') in the path
	emptyHeader     bool // headers with an empty value
	repeatedHeaders bool // the same header name more than once
	bareQueryKeys   bool // "k" without '=' in the query
	presignBodies   bool // presigned requests may carry a body
}

var fullProfile = genProfile{dotSegments: true, reservedPath: true, escapedPath: true, lowerHexPath: true, escapedSlash: true, emptyHeader: true, repeatedHeaders: true, bareQueryKeys: true, presignBodies: true}

// gen is the deterministic request generator: the same seed gives the same requests.
type gen struct {
	rnd *rand.Rand
	p   genProfile
	n   int
}

func newGen(seed uint64, p genProfile) *gen {
	return &gen{rnd: rand.New(rand.NewPCG(seed, seed^0x5eed)), p: p}
}

func (g *gen) pick(xs []string) string { return xs[g.rnd.IntN(len(xs))] }

var (
	genMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch}
	// Path segments as sent on the wire.
	segPlain    = []string{"v1", "items", "prod", "a-b_c.d~e", "~user", "UPPER", "x.json", "0123456789"}
	segReserved = []string{"a:b", "user@host", "p!q", "it's", "(paren)", "a*b", "a+b", "k=v", "a,b", "$cost", "a&b", "semi;colon"}
	segEscaped  = []string{"a%20b", "%20lead", "trail%20", "%C3%A9t%C3%A9", "%E2%9C%93check", "%F0%9F%94%91", "100%25", "%3Fnot-a-query", "%23hash"}
	segSlash    = []string{"a%2Fb", "%7Etilde"}
	segLowerHex = []string{"lower%2fhex", "%c3%a9t%c3%a9"}
	segDots     = []string{".", "..", ""}
	// Query names and values, decoded.
	qNames  = []string{"a", "b", "Action", "Version", "key with space", "ключ", "k~e.y_-", "a&b=c", "Z", "x/y", "%", "plus+sign", ""}
	qValues = []string{"", "1", "two words", "x+y", "ü", "/path?x=1#f", "=&", "~.-_", "%", "*", "a  b", "日本", "semi;colon", "tab\tsep", "EOF"}
	hNames  = []string{"X-Custom", "X-Amz-Meta-Note", "Content-Type", "X-Trace-Tag", "Accept", "X-Api-Key", "Cache-Control"}
	hValues = []string{"plain", "  leading", "trailing  ", "inner   run   of    spaces", "  all   three  ", "a,b", "application/json; charset=utf-8", "q=\"quoted  string\"", "no-cache"}
)

// next returns the next generated request; presign says it will be presigned.
func (g *gen) next(presign bool) genRequest {
	g.n++
	r := genRequest{method: g.pick(genMethods), temp: g.rnd.IntN(3) == 0, plus: g.rnd.IntN(2) == 0}
	r.name = fmt.Sprintf("%03d-%s", g.n, r.method)

	// Path: 0-4 segments, optional trailing slash.
	var segs []string
	for i, n := 0, g.rnd.IntN(5); i < n; i++ {
		pool := segPlain
		switch k := g.rnd.IntN(8); {
		case k == 0 && g.p.dotSegments:
			pool = segDots
		case k <= 2 && g.p.reservedPath:
			pool = segReserved
		case k <= 4 && g.p.escapedPath:
			pool = segEscaped
			switch k := g.rnd.IntN(8); {
			case k == 0 && g.p.lowerHexPath:
				pool = segLowerHex
			case k <= 2 && g.p.escapedSlash:
				pool = segSlash
			}
		}
		segs = append(segs, g.pick(pool))
	}
	r.path = "/" + strings.Join(segs, "/")
	if len(segs) > 0 && g.rnd.IntN(4) == 0 {
		r.path += "/"
	}

	// Query: 0-5 parameters, names repeat often.
	for i, n := 0, g.rnd.IntN(6); i < n; i++ {
		p := kv{k: g.pick(qNames), v: g.pick(qValues)}
		if i > 0 && g.rnd.IntN(3) == 0 {
			p.k = r.query[g.rnd.IntN(i)].k // repeated name
		}
		if p.v == "" && g.p.bareQueryKeys {
			p.bare = g.rnd.IntN(2) == 0
		}
		r.query = append(r.query, p)
	}

	// Headers: 0-4 fields.
	for i, n := 0, g.rnd.IntN(5); i < n; i++ {
		h := kv{k: g.pick(hNames), v: g.pick(hValues)}
		if g.p.emptyHeader && g.rnd.IntN(10) == 0 {
			h.v = ""
		}
		if g.p.repeatedHeaders && i > 0 && g.rnd.IntN(3) == 0 {
			h.k = r.header[g.rnd.IntN(i)].k
		}
		if !g.p.repeatedHeaders && hasHeader(r.header, h.k) {
			continue
		}
		r.header = append(r.header, h)
	}

	// Body: none for GET; otherwise empty, binary or 1 KiB.
	if r.method != http.MethodGet && (!presign || g.p.presignBodies) {
		switch g.rnd.IntN(3) {
		case 1:
			r.body = make([]byte, 1+g.rnd.IntN(64))
			for i := range r.body {
				r.body[i] = byte(g.rnd.IntN(256))
			}
		case 2:
			r.body = make([]byte, 1024)
			for i := range r.body {
				r.body[i] = "abcdefghijklmnopqrstuvwxyz\n{}\":, "[g.rnd.IntN(33)]
			}
		}
	}
	return r
}

func hasHeader(h []kv, name string) bool {
	for _, f := range h {
		if strings.EqualFold(f.k, name) {
			return true
		}
	}
	return false
}
