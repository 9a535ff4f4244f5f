package sigv4

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Verify checks r (header or presigned form); body is the complete request body (nil =
// empty). On success it returns the result; otherwise a *Error.
//
// Every check that needs no secret runs first (form, scope, time, signed-header rules), so
// malformed or stale requests cost no credential lookup and no HMAC.
func (v *Verifier) Verify(ctx context.Context, r *http.Request, body []byte) (*Result, error) {
	p, err := v.Begin(ctx, r)
	if err != nil {
		return nil, err
	}
	return p.Verify(body)
}

// Pending is a request whose authentication is checked as far as it can be without its
// body: the Authorization header or presigned query parsed, the credential scope, the
// date and the signed-header rules checked, the credential looked up (known, not expired,
// its session token matching). Only the signature remains, which covers the body's hash.
// A Pending holds pooled buffers: finish it with Verify or VerifyDeclared, or Release it.
type Pending struct {
	v    *Verifier
	s    *scratch
	r    *http.Request
	a    authInfo
	cred Credential
	now  time.Time

	rawPath, rawQuery string
	hdrHash           string // x-amz-content-sha256 when it is the payload hash the signature covers
	unsigned          bool   // that header says UNSIGNED-PAYLOAD (allowed by the config)
	hashSigned        bool   // x-amz-content-sha256 is in SignedHeaders
}

// Begin runs every check of r that does not need its body, so a request that cannot be
// authenticated is refused before a byte of its body is read. On success the caller
// decides what to do with the claimed identity (AccessKeyID, Credential), then finishes
// with Verify(body), or VerifyDeclared when DeclaredHash reports a hash, or Release.
func (v *Verifier) Begin(ctx context.Context, r *http.Request) (*Pending, error) {
	if r == nil || r.URL == nil {
		return nil, missingToken()
	}
	s := v.getScratch()
	p := &s.pending
	*p = Pending{v: v, s: s, r: r}
	if e := p.begin(ctx); e != nil {
		p.Release()
		return nil, e
	}
	return p, nil
}

func (p *Pending) begin(ctx context.Context) *Error {
	v, s, r := p.v, p.s, p.r
	p.rawPath, p.rawQuery, _ = RequestTarget(r)
	if e := s.parseQuery(p.rawQuery); e != nil {
		return e
	}
	presigned := false
	for _, q := range s.pairs {
		if i := presignIndex(s.key(q)); i == pAlgorithm || i == pCredential || i == pSignature {
			presigned = true
			break
		}
	}
	authz := r.Header["Authorization"]
	var e *Error
	switch {
	case len(authz) == 0 && !presigned:
		return missingToken()
	case len(authz) > 0 && presigned:
		e := incomplete("Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified")
		e.Hint = "the request carries both an Authorization header and presigned X-Amz-* query parameters"
		return e
	case len(authz) > 1:
		return incomplete("The request carries more than one Authorization header.")
	case presigned:
		p.a, e = s.parsePresigned()
	default:
		p.a, e = v.parseHeaderForm(r, authz[0])
	}
	if e != nil {
		return e
	}
	a := &p.a
	p.now = v.now()
	if e := v.checkScopeAndTime(a, p.now); e != nil {
		return e
	}
	s.names = s.names[:0]
	if e := s.splitSignedHeaders(a); e != nil {
		return e
	}
	if len(a.token) > maxTokenLen {
		return invalidToken("the session token is longer than " + strconv.Itoa(maxTokenLen) + " bytes")
	}
	if e := p.payloadHeader(); e != nil {
		return e
	}
	p.cred, e = v.lookup(ctx, a, p.now)
	return e
}

// payloadHeader reads x-amz-content-sha256 where it names the payload hash the signature
// covers ("Signature Calculations for the Authorization Header", Amazon S3 API Reference;
// the same header for every service): always in the header form, in a presigned URL only
// when SignedHeaders lists it.
func (p *Pending) payloadHeader() *Error {
	p.hashSigned = p.s.signed("x-amz-content-sha256")
	vs := p.r.Header["X-Amz-Content-Sha256"]
	if len(vs) == 0 || (p.a.presigned && !p.hashSigned) {
		return nil
	}
	if len(vs) > 1 {
		return incomplete("The request carries more than one x-amz-content-sha256 header.")
	}
	h := vs[0]
	switch {
	case h == unsignedPayload:
		if !p.v.cfg.AllowUnsignedPayload {
			return accessDenied("UNSIGNED-PAYLOAD is not accepted: this endpoint requires the payload to be signed.",
				"the client sent x-amz-content-sha256: UNSIGNED-PAYLOAD; sign the body, or enable AllowUnsignedPayload for this endpoint")
		}
		p.unsigned = true
	case len(h) == 64 && isLowerHex(h):
	default:
		e := bodyHashMismatch("x-amz-content-sha256 must be 64 lower-case hex digits or UNSIGNED-PAYLOAD (streaming payloads are not supported), got '" + truncate(h, 80) + "'")
		e.Message = "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a valid sha256 value."
		return e
	}
	p.hdrHash = h
	return nil
}

// AccessKeyID is the access key the request claims, which Begin found active.
func (p *Pending) AccessKeyID() string { return p.a.accessKeyID }

// Credential is the claimed access key's credential. Until Verify or VerifyDeclared
// succeeds nothing shows the caller holds its secret.
func (p *Pending) Credential() Credential { return p.cred }

// DeclaredHash returns the body's SHA-256 (64 lower-case hex digits) as the request
// declares it in a signed x-amz-content-sha256. Then VerifyDeclared checks the signature
// before the body is read, and the caller must compare the body's hash with this one as
// it reads it, refusing the request on a difference.
func (p *Pending) DeclaredHash() (string, bool) {
	return p.hdrHash, p.hdrHash != "" && !p.unsigned
}

// Release returns the pending verification's buffers; p must not be used afterwards.
// Verify and VerifyDeclared release it themselves.
func (p *Pending) Release() {
	if s, v := p.s, p.v; s != nil {
		*p = Pending{}
		v.putScratch(s)
	}
}

// Verify finishes the verification with the complete body (nil = empty) and releases p.
// A presigned request with a body must sign the body's hash: an UNSIGNED-PAYLOAD
// signature in a URL would otherwise carry any body for as long as the URL lives.
func (p *Pending) Verify(body []byte) (*Result, error) {
	defer p.Release()
	var bodyHash [64]byte
	if len(body) == 0 {
		copy(bodyHash[:], emptyPayloadHash) // a GET's: not hashed again per request
	} else {
		sum := sha256.Sum256(body)
		hex.Encode(bodyHash[:], sum[:])
	}
	if p.hdrHash != "" && !p.unsigned && p.hdrHash != string(bodyHash[:]) { // both public: no constant-time need
		return nil, bodyHashMismatch("x-amz-content-sha256 is " + p.hdrHash + " but the body's SHA-256 is " + string(bodyHash[:]) + " (the body changed after signing, or was hashed differently)")
	}
	return p.finish(bodyHash[:], len(body))
}

// VerifyDeclared finishes the verification against the declared body hash (DeclaredHash
// must have reported one) without the body, and releases p. The body is not checked: the
// caller checks it against DeclaredHash as it reads it.
func (p *Pending) VerifyDeclared() (*Result, error) {
	defer p.Release()
	if _, ok := p.DeclaredHash(); !ok {
		return nil, internalFailure("VerifyDeclared without a declared payload hash")
	}
	return p.finish([]byte(p.hdrHash), -1)
}

// finish checks the signature; bodyHash is the body's SHA-256 in hex and bodyLen its
// length (-1: not read, the hash is the declared one).
func (p *Pending) finish(bodyHash []byte, bodyLen int) (*Result, error) {
	v, s, r, a, cred := p.v, p.s, p.r, &p.a, p.cred
	rawPath, rawQuery, unsigned, hdrHash := p.rawPath, p.rawQuery, p.unsigned, p.hdrHash
	alt := "" // a second payload hash to try when the first does not match
	if hdrHash == "" && ((a.presigned && bodyLen == 0) || v.cfg.AllowUnsignedPayload) {
		// Presigned URLs are signed either over the body hash (aws-c-auth, botocore's
		// SigV4QueryAuth) or over UNSIGNED-PAYLOAD (S3-style presigners, as AWS does for
		// query auth). The signature decides which the signer chose; an attacker cannot
		// turn one into the other. UNSIGNED-PAYLOAD is tried only for an empty body: with
		// a body it would authorize any body. In the header form UNSIGNED-PAYLOAD without
		// the header is allowed only where the config allows unsigned payloads.
		alt = unsignedPayload
	}

	// The canonical headers and signed-header list are the same for every variant below:
	// build them once into s.tail.
	s.sortQuery()
	t := s.tail[:0]
	for _, name := range s.names {
		t = append(t, name...)
		t = append(t, ':')
		if name == "host" {
			t = appendHeaderValue(t, hostOf(r))
		} else {
			vs := s.headerValues(r.Header, name)
			if len(vs) == 0 && name == "content-length" && r.ContentLength >= 0 {
				// net/http keeps Content-Length in the field, not the map, for requests
				// built in process.
				t = strconv.AppendInt(t, r.ContentLength, 10)
			}
			for i, hv := range vs {
				if i > 0 {
					t = append(t, ',')
				}
				t = appendHeaderValue(t, hv)
			}
		}
		t = append(t, '\n')
		if len(t) > maxCanonicalLen {
			s.tail = t
			return nil, incomplete("The signed headers are too large.")
		}
	}
	t = append(t, '\n')
	t = append(t, a.signedHeaders...)
	t = append(t, '\n')
	s.tail = t

	var primary canonOpts
	primary.normalize = !v.cfg.DisablePathNormalization
	switch {
	case unsigned:
		primary.payload = unsignedPayload
	case hdrHash != "":
		primary.payload = hdrHash
	default:
		primary.body = true
	}
	if !s.buildCanonical(r.Method, rawPath, rawQuery, a, primary, bodyHash) {
		return nil, malformedQuery("The request path contains a malformed percent-encoding.")
	}

	key := v.signingKey(s, cred.SecretAccessKey, a.scopeDate, a.region, a.service)
	if len(a.signature) != 64 || !isLowerHex(a.signature) {
		// A signature that is not 64 lower-case hex digits, as every signer writes it,
		// cannot match; report it like any mismatch so the caller sees what we computed.
		// (Accepting upper case would let one signature travel in 2^64 spellings.)
		return nil, v.mismatch(s, a, r, bodyLen, "the signature is not 64 lower-case hex digits")
	}
	hex.Decode(s.want[:], []byte(a.signature)) // cannot fail: checked above
	if s.check(a, key[:]) {
		v.observe(s)
		return v.result(a, cred, unsigned, payloadOf(primary, bodyHash[:])), nil
	}

	// Other canonical forms that real clients sign. Accepting one must never accept a
	// request the signer did not sign, so each is admitted only where no request that
	// means something else can have the same canonical form:
	//  - the payload as UNSIGNED-PAYLOAD (see above): the signer chose not to sign the
	//    body, and the string cannot be mistaken for a hash;
	//  - the path as sent, encoded again but not normalized (aws-sdk-go-v2 neither removes
	//    dot segments nor collapses slashes): encoding is injective, so this equals the
	//    normalized form of another path only if this path is that path normalized, which
	//    means the same resource; S3-style, the path as sent with its escapes kept (see
	//    appendRawURI);
	//  - presigned: the query without X-Amz-Security-Token, which some signers append after
	//    signing (aws-c-auth's omit_session_token, for AWS IoT). The token is still bound
	//    to the credential by the lookup above, exactly as an unsigned header token is;
	var rawOK bool
	s.msg, rawOK = appendRawURI(s.msg[:0], rawPath, primary.normalize)
	tryRaw := rawOK && !bytes.Equal(s.canon[len(r.Method)+1:len(r.Method)+1+s.uriLen], s.msg)
	tryAlt := alt != "" && primary.body
	tryNoToken := a.presigned && a.hasToken
	for variant := 1; variant < 8; variant++ {
		o := primary
		if variant&1 != 0 {
			if !tryAlt {
				continue
			}
			o.body, o.payload = false, alt
		}
		if variant&2 != 0 {
			if !tryRaw {
				continue
			}
			o.raw = true
		}
		if variant&4 != 0 {
			if !tryNoToken {
				continue
			}
			o.omitToken = true
		}
		s.buildCanonical(r.Method, rawPath, rawQuery, a, o, bodyHash)
		if s.check(a, key[:]) {
			v.observe(s)
			return v.result(a, cred, unsigned || o.payload == unsignedPayload, payloadOf(o, bodyHash[:])), nil
		}
	}
	// Diagnose, never accept: curl 7.x's --aws-sigv4 signs the path and query exactly as
	// sent instead of canonicalizing them. Accepting that form would let a signature over
	// "/a%20b" also pass for the path "/a%2520b", another resource, so such requests are
	// refused; the hint tells the user why.
	hint := ""
	// (Not offered for a path holding "%25": that as-sent form is also the AWS form of
	// another path, and the user would be told the wrong story.)
	if !a.presigned && uriChars(rawPath) && uriChars(rawQuery) && !strings.Contains(rawPath, "%25") {
		o := primary
		o.asSent = true
		s.buildCanonical(r.Method, rawPath, rawQuery, a, o, bodyHash)
		if s.check(a, key[:]) {
			rule := "SigV4 encodes the path a second time and sorts and encodes the query"
			if !primary.normalize {
				rule = "SigV4 sorts and encodes the query"
			}
			hint = "the signature is valid for the path and query exactly as sent, not canonicalized " +
				"(curl 7.x --aws-sigv4 signs them so): " + rule + "; send a path of unreserved characters " +
				"and a sorted, encoded query, or use a client that follows SigV4 (curl 8 or later, an AWS " +
				"SDK, the AWS CLI)"
		}
	}
	// Report the form AWS documents.
	s.buildCanonical(r.Method, rawPath, rawQuery, a, primary, bodyHash)
	if a.presigned && bodyLen > 0 && hdrHash == "" {
		// Name the likeliest cause: a URL presigned over UNSIGNED-PAYLOAD, used with a body.
		o := primary
		o.body, o.payload = false, unsignedPayload
		s.buildCanonical(r.Method, rawPath, rawQuery, a, o, bodyHash)
		if s.check(a, key[:]) {
			return nil, accessDenied("A presigned request with a body must sign the body's hash; UNSIGNED-PAYLOAD is accepted only without a body.",
				"the URL was presigned over UNSIGNED-PAYLOAD and the request carries a body: presign with the body's SHA-256 (or sign x-amz-content-sha256)")
		}
		s.buildCanonical(r.Method, rawPath, rawQuery, a, primary, bodyHash)
	}
	return nil, v.mismatch(s, a, r, bodyLen, hint)
}

// uriChars reports whether s holds only RFC 3986 unreserved, reserved and '%' characters.
func uriChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) || strings.IndexByte(":/?#[]@!$&'()*+,;=%", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// canonOpts selects one canonical form of a request.
type canonOpts struct {
	normalize bool   // normalize the path (every service but S3)
	raw       bool   // path as sent, encoded again, not normalized
	omitToken bool   // presigned: leave X-Amz-Security-Token out of the query
	asSent    bool   // path and query exactly as sent (diagnosis only)
	body      bool   // payload hash is the body's SHA-256
	payload   string // otherwise this payload hash
}

// buildCanonical writes the canonical request into s.canon from the request's method and
// path, the parsed query and s.tail (headers and signed-header list). It reports false for
// a path it cannot decode (S3-style only).
func (s *scratch) buildCanonical(method, rawPath, rawQuery string, a *authInfo, o canonOpts, bodyHash []byte) bool {
	c := append(s.canon[:0], method...)
	c = append(c, '\n')
	start := len(c)
	ok := true
	switch {
	case o.asSent && rawPath == "":
		c = append(c, '/')
	case o.asSent:
		c = append(c, rawPath...)
	case o.raw:
		c, ok = appendRawURI(c, rawPath, o.normalize)
	default:
		c, ok = appendCanonicalURI(c, rawPath, o.normalize)
	}
	s.uriLen = len(c) - start
	c = append(c, '\n')
	if o.asSent {
		c = append(c, rawQuery...)
	} else {
		c = s.appendCanonicalQuery(c, a.presigned, o.omitToken)
	}
	c = append(c, '\n')
	c = append(c, s.tail...)
	if o.body {
		c = append(c, bodyHash...)
	} else {
		c = append(c, o.payload...)
	}
	s.canon = c
	return ok
}

// check computes the signature over s.canon and compares it with s.want in constant time.
func (s *scratch) check(a *authInfo, key []byte) bool {
	s.appendStringToSign(a)
	s.hmac(key, s.sts, &s.sig)
	return hmac.Equal(s.sig[:], s.want[:])
}

// appendStringToSign sets s.sts to the string-to-sign for s.canon ("Create a string to
// sign", IAM User Guide).
func (s *scratch) appendStringToSign(a *authInfo) {
	h := sha256.Sum256(s.canon)
	b := s.sts[:0]
	b = append(b, algorithm...)
	b = append(b, '\n')
	b = append(b, a.amzDate...)
	b = append(b, '\n')
	b = append(b, a.scopeDate...)
	b = append(b, '/')
	b = append(b, a.region...)
	b = append(b, '/')
	b = append(b, a.service...)
	b = append(b, '/')
	b = append(b, terminator...)
	b = append(b, '\n')
	b = hex.AppendEncode(b, h[:])
	s.sts = b
}

// observe hands the canonical request and string-to-sign that matched to the test hook.
func (v *Verifier) observe(s *scratch) {
	if v.matched != nil {
		v.matched(s.canon, s.sts)
	}
}

// resultBuf lets a Result and a typical SignedHeaders list share one allocation.
type resultBuf struct {
	res   Result
	names [8]string
}

// payloadOf is the payload hash a canonical form carries.
func payloadOf(o canonOpts, bodyHash []byte) []byte {
	if o.body {
		return bodyHash
	}
	return []byte(o.payload)
}

func (v *Verifier) result(a *authInfo, cred Credential, unsigned bool, payload []byte) *Result {
	rb := new(resultBuf)
	names := rb.names[:0]
	if n := strings.Count(a.signedHeaders, ";") + 1; n > len(rb.names) {
		names = make([]string, 0, n)
	}
	for rest := a.signedHeaders; ; {
		name, after, more := strings.Cut(rest, ";")
		names = append(names, name)
		if !more {
			break
		}
		rest = after
	}
	rb.res = Result{
		AccessKeyID:     a.accessKeyID,
		Credential:      cred,
		Region:          a.region,
		Service:         a.service,
		SignedHeaders:   names[:len(names):len(names)],
		SigningTime:     a.t,
		Presigned:       a.presigned,
		UnsignedPayload: unsigned,
		Signature:       a.signature,
		Expires:         a.t.Add(v.skew),
	}
	if a.presigned {
		rb.res.Expires = a.t.Add(time.Duration(a.expires) * time.Second)
	}
	rb.res.payloadLen = copy(rb.res.payload[:], payload)
	return &rb.res
}

// parseHeaderForm reads the Authorization header and the request date.
func (v *Verifier) parseHeaderForm(r *http.Request, h string) (authInfo, *Error) {
	xd := r.Header["X-Amz-Date"]
	dd := r.Header["Date"]
	a, e := parseAuthorization(h, len(xd) > 0 || len(dd) > 0)
	if e != nil {
		return a, e
	}
	switch {
	case len(xd) > 1:
		return a, incomplete("The request carries more than one X-Amz-Date header.")
	case len(xd) == 1:
		a.amzDate, a.dateHeader = xd[0], "x-amz-date"
	case len(dd) > 1:
		return a, incomplete("The request carries more than one Date header.")
	default:
		// "Date" in the HTTP form (RFC 9110 §5.6.7), or RFC 1123 with a numeric zone as
		// botocore writes it (email.utils.formatdate: "Sun, 29 Nov 2026 00:50:00 -0000");
		// the string-to-sign still uses ISO 8601.
		t, err := http.ParseTime(dd[0])
		if err != nil {
			t, err = time.Parse(time.RFC1123Z, dd[0])
		}
		if err != nil {
			e := incomplete("Date must be in ISO-8601 'basic format'. Got '" + dd[0] + "'. See http://en.wikipedia.org/wiki/ISO_8601")
			e.Hint = "the Date header is not an HTTP date; send X-Amz-Date: YYYYMMDDTHHMMSSZ instead"
			return a, e
		}
		a.t = t.UTC()
		a.amzDate = a.t.Format(iso8601Basic)
		a.dateHeader = "date"
	}
	if ts := r.Header["X-Amz-Security-Token"]; len(ts) > 0 {
		if len(ts) > 1 {
			return a, incomplete("The request carries more than one X-Amz-Security-Token header.")
		}
		a.token, a.hasToken = ts[0], true
	}
	return a, nil
}

// checkScopeAndTime applies the credential-scope and clock rules ("Troubleshoot signed
// requests for AWS APIs", IAM User Guide).
func (v *Verifier) checkScopeAndTime(a *authInfo, now time.Time) *Error {
	if a.dateHeader == "x-amz-date" {
		t, ok := parseBasic(a.amzDate)
		if !ok {
			e := incomplete("Date must be in ISO-8601 'basic format'. Got '" + a.amzDate + "'. See http://en.wikipedia.org/wiki/ISO_8601")
			e.Hint = "X-Amz-Date is YYYYMMDDTHHMMSSZ in UTC, e.g. 20150830T123600Z"
			return e
		}
		a.t = t
	}
	if a.region != v.cfg.Region {
		e := badSignature("Credential should be scoped to a valid region, not '" + a.region + "'. ")
		e.Hint = "the credential scope names region '" + a.region + "' but this endpoint is in '" + v.cfg.Region + "'; configure the client's region as '" + v.cfg.Region + "'"
		return e
	}
	if a.service != v.cfg.Service {
		e := badSignature("Credential should be scoped to correct service: '" + v.cfg.Service + "'. ")
		e.Hint = "the credential scope names service '" + a.service + "' but this endpoint signs as '" + v.cfg.Service + "'"
		return e
	}
	if a.term != terminator {
		return badSignature("Credential should be scoped with a valid terminator: 'aws4_request', not '" + a.term + "'. ")
	}
	if a.scopeDate != a.amzDate[:8] {
		e := badSignature("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '" + a.scopeDate + "' != '" + a.amzDate[:8] + "', from '" + a.amzDate + "'.")
		e.Hint = "the credential scope date must be the UTC date of the request time"
		return e
	}
	if a.presigned {
		// Not valid before its date (allowing the skew), expired after date+X-Amz-Expires.
		if now.Before(a.t.Add(-v.skew)) {
			return requestExpired(skewMessage(a.t, now, v.skew, true), clockHint(a.t, now))
		}
		if exp := a.t.Add(time.Duration(a.expires) * time.Second); now.After(exp) {
			return requestExpired(msgRequestExpired, "the presigned URL expired at "+exp.UTC().Format(iso8601Basic)+
				" (X-Amz-Date "+a.amzDate+" + X-Amz-Expires "+strconv.FormatInt(a.expires, 10)+"s); the server time is "+now.UTC().Format(iso8601Basic))
		}
		return nil
	}
	if d := now.Sub(a.t); d > v.skew {
		return requestExpired(skewMessage(a.t, now, v.skew, false), clockHint(a.t, now))
	} else if d < -v.skew {
		return requestExpired(skewMessage(a.t, now, v.skew, true), clockHint(a.t, now))
	}
	return nil
}

func clockHint(t, now time.Time) string {
	d := t.Sub(now).Round(time.Second)
	if d > 0 {
		return "the request time is " + d.String() + " ahead of the server clock; check the client's clock (NTP) or that the request is fresh"
	}
	return "the request time is " + (-d).String() + " behind the server clock; the request is stale (replayed?) or the client's clock is slow"
}

// splitSignedHeaders validates the SignedHeaders list into s.names: lower-case header names
// separated by ';', host always signed, and the date header signed in the header form.
func (s *scratch) splitSignedHeaders(a *authInfo) *Error {
	list := a.signedHeaders
	if list == "" {
		return incomplete("Authorization header requires 'SignedHeaders' parameter. Authorization=" + a.raw)
	}
	for list != "" {
		var n string
		if i := strings.IndexByte(list, ';'); i >= 0 {
			n, list = list[:i], list[i+1:]
			if list == "" {
				n = "" // trailing ';'
			}
		} else {
			n, list = list, ""
		}
		if !validHeaderName(n) {
			e := incomplete("SignedHeaders contains an invalid header name '" + n + "'.")
			e.Hint = "SignedHeaders is a ';'-separated list of lower-case header names, e.g. host;x-amz-date"
			return e
		}
		if len(s.names) >= maxSignedHeaders {
			return incomplete("SignedHeaders lists more than " + strconv.Itoa(maxSignedHeaders) + " headers.")
		}
		for _, p := range s.names {
			if p == n {
				return incomplete("SignedHeaders lists '" + n + "' more than once.")
			}
		}
		s.names = append(s.names, n)
	}
	if !s.signed("host") {
		e := incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
		e.Hint = "host is not in SignedHeaders: without it the signature could be replayed against another host"
		return e
	}
	if !a.presigned && !s.signed(a.dateHeader) {
		name := "X-Amz-Date"
		if a.dateHeader == "date" {
			name = "Date"
		}
		e := incomplete("'" + name + "' must be a 'SignedHeader' in the AWS Authorization.")
		e.Hint = a.dateHeader + " is not in SignedHeaders: without it the request time is not authenticated"
		return e
	}
	return nil
}

func (s *scratch) signed(name string) bool {
	for _, n := range s.names {
		if n == name {
			return true
		}
	}
	return false
}

// validHeaderName accepts lower-case RFC 9110 tokens, the only names SigV4 signs.
func validHeaderName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// lookup resolves the credential and applies expiry and session-token binding.
func (v *Verifier) lookup(ctx context.Context, a *authInfo, now time.Time) (Credential, *Error) {
	cred, err := v.creds.LookupCredential(ctx, a.accessKeyID, a.token)
	switch {
	case err == nil:
	case errors.Is(err, ErrAccessDenied):
		return cred, accessDenied("The credential for access key id '"+a.accessKeyID+"' is denied.", "the credential source refused the credential: "+err.Error())
	case errors.Is(err, ErrUnknownAccessKey):
		return cred, invalidToken("access key id '" + a.accessKeyID + "' is not known")
	case errors.Is(err, ErrExpiredToken):
		return cred, expiredToken("the credential for '" + a.accessKeyID + "' has expired")
	case errors.Is(err, ErrInvalidToken):
		return cred, invalidToken("the session token does not belong to access key id '" + a.accessKeyID + "'")
	case ctx.Err() != nil:
		return cred, internalFailure("credential lookup was cancelled: " + ctx.Err().Error())
	default:
		// Fail closed; the cause stays in server logs, not in the response.
		return cred, internalFailure("credential lookup failed")
	}
	if cred.AccessKeyID != a.accessKeyID || cred.SecretAccessKey == "" {
		return Credential{}, internalFailure("the credential source returned a credential for a different access key, or without a secret")
	}
	if !cred.Expires.IsZero() && !now.Before(cred.Expires) {
		return Credential{}, expiredToken("the credential for '" + a.accessKeyID + "' expired at " + cred.Expires.UTC().Format(time.RFC3339))
	}
	switch {
	case cred.SessionToken != "" && !a.hasToken:
		return Credential{}, invalidToken("access key id '" + a.accessKeyID + "' is temporary: the request must carry its session token (X-Amz-Security-Token)")
	case cred.SessionToken != "" && subtle.ConstantTimeCompare([]byte(cred.SessionToken), []byte(a.token)) != 1:
		return Credential{}, invalidToken("the session token does not match access key id '" + a.accessKeyID + "'")
	case cred.SessionToken == "" && a.hasToken:
		return Credential{}, invalidToken("access key id '" + a.accessKeyID + "' is a long-term key but the request carries a session token")
	}
	return cred, nil
}

// mismatch builds the SignatureDoesNotMatch error with what the server computed, as AWS
// does, and a hint at the likeliest cause.
func (v *Verifier) mismatch(s *scratch, a *authInfo, r *http.Request, bodyLen int, hint string) *Error {
	s.appendStringToSign(a)
	e := badSignature(msgSignatureMismatch)
	e.CanonicalRequest = string(s.canon)
	e.StringToSign = string(s.sts)
	// API Gateway appends both to the message it returns to the caller.
	e.GatewayMessage = msgSignatureMismatch + "\n\nThe Canonical String for this request should have been\n'" +
		e.CanonicalRequest + "'\n\nThe String-to-Sign should have been\n'" + e.StringToSign + "'\n"
	if hint == "" {
		hint = mismatchHint(s, a, r, v.cfg, bodyLen)
	}
	e.Hint = hint
	return e
}

// mismatchHint names what most likely differs between the client's canonical request and
// ours, most specific first.
func mismatchHint(s *scratch, a *authInfo, r *http.Request, cfg Config, bodyLen int) string {
	var hints []string
	for _, n := range s.names {
		if n == "host" || n == "content-length" {
			continue
		}
		if len(s.headerValues(r.Header, n)) == 0 {
			hints = append(hints, "signed header '"+n+"' is not in the request (removed by a proxy?)")
		}
	}
	if bodyLen > 0 && !s.signed("x-amz-content-sha256") {
		hints = append(hints, "the payload hash (last line) is the SHA-256 of the "+strconv.Itoa(bodyLen)+
			"-byte body received; a body changed after signing, or a client that signed another hash, does not match")
	}
	if a.presigned {
		hints = append(hints, "tried both the body's SHA-256 and UNSIGNED-PAYLOAD as the payload hash")
	}
	path, _, _ := RequestTarget(r)
	if !cfg.DisablePathNormalization && strings.ContainsAny(path, "%.") {
		hints = append(hints, "the path is normalized (dot segments removed, repeated slashes collapsed) and encoded a second time; S3-style signers need DisablePathNormalization")
	}
	hints = append(hints, "otherwise the secret access key differs: compare this canonical request and string-to-sign with the client's (aws --debug, botocore or SDK signing logs)")
	return strings.Join(hints, "; ")
}

func hostOf(r *http.Request) string {
	if r.Host != "" {
		return r.Host
	}
	return r.URL.Host
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// parseBasic parses an ISO 8601 basic format UTC time, YYYYMMDDTHHMMSSZ (iso8601Basic),
// accepting exactly what time.Parse(iso8601Basic, s) accepts with len(s) ==
// len(iso8601Basic), without its general layout machinery (X-Amz-Date of every request).
func parseBasic(s string) (time.Time, bool) {
	if len(s) != len(iso8601Basic) || s[8] != 'T' || s[15] != 'Z' {
		return time.Time{}, false
	}
	num := func(b string) (int, bool) {
		n := 0
		for i := 0; i < len(b); i++ {
			c := b[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	y, ok1 := num(s[0:4])
	mo, ok2 := num(s[4:6])
	d, ok3 := num(s[6:8])
	h, ok4 := num(s[9:11])
	mi, ok5 := num(s[11:13])
	sec, ok6 := num(s[13:15])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || mo < 1 || mo > 12 || d < 1 || d > daysIn(time.Month(mo), y) ||
		h > 23 || mi > 59 || sec > 59 {
		return time.Time{}, false
	}
	return time.Date(y, time.Month(mo), d, h, mi, sec, 0, time.UTC), true
}

// daysIn is the number of days of month m of year y (proleptic Gregorian).
func daysIn(m time.Month, y int) int {
	switch m {
	case time.February:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}
