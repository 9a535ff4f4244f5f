package sigv4

import (
	"net/url"
	"strconv"
	"strings"
	"time"
)

// authInfo is what the Authorization header or the presigned query parameters say. Strings
// are substrings of the request where possible.
type authInfo struct {
	presigned     bool
	raw           string // Authorization header value, for AWS's messages
	credential    string
	accessKeyID   string
	scopeDate     string
	region        string
	service       string
	term          string
	signedHeaders string
	signature     string
	amzDate       string // request time as it goes into the string-to-sign
	dateHeader    string // the header that carried the date: "x-amz-date" or "date"
	t             time.Time
	expires       int64 // presigned only
	token         string
	hasToken      bool
}

// parseAuthorization parses "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request,
// SignedHeaders=host;x-amz-date, Signature=<64 hex>" ("Authorization header", IAM User
// Guide). hasDate says whether the request carries X-Amz-Date or Date, which AWS reports in
// the same message as the missing parameters.
func parseAuthorization(h string, hasDate bool) (authInfo, *Error) {
	a := authInfo{raw: h}
	if len(h) > maxAuthorizationLen {
		return a, incomplete("The Authorization header is longer than " + strconv.Itoa(maxAuthorizationLen) + " bytes.")
	}
	alg, rest, _ := strings.Cut(strings.TrimLeft(h, " "), " ")
	if alg != algorithm {
		if strings.HasPrefix(alg, "AWS4-") {
			e := incomplete("Unsupported AWS 'algorithm': '" + alg + "'.")
			e.Hint = "only AWS4-HMAC-SHA256 is supported (SigV4A and other algorithms are not)"
			return a, e
		}
		// Not SigV4 at all (Bearer, Basic, SigV2 "AWS AKID:sig"): API Gateway answers by
		// listing every missing SigV4 part followed by the header as sent.
		e := incomplete(missingParts(true, true, true, hasDate) + "Authorization=" + h)
		e.Hint = "the Authorization header is not AWS Signature Version 4 (expected \"AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...\")"
		return a, e
	}
	var haveCred, haveSH, haveSig bool
	for rest != "" {
		var part string
		if i := strings.IndexByte(rest, ','); i >= 0 {
			part, rest = rest[:i], rest[i+1:]
		} else {
			part, rest = rest, ""
		}
		part = strings.Trim(part, " ")
		if part == "" {
			continue
		}
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			return a, incomplete("'" + part + "' not a valid key=value pair (missing equal-sign) in Authorization header: '" + h + "'.")
		}
		var dup bool
		switch k {
		case "Credential":
			dup, haveCred, a.credential = haveCred, true, val
		case "SignedHeaders":
			dup, haveSH, a.signedHeaders = haveSH, true, val
		case "Signature":
			dup, haveSig, a.signature = haveSig, true, val
		default:
			// Unknown components are refused rather than ignored: nothing signs them.
			return a, incomplete("Authorization header contains an unknown parameter '" + k + "'. Authorization=" + h)
		}
		if dup {
			return a, incomplete("Authorization header contains the '" + k + "' parameter more than once. Authorization=" + h)
		}
	}
	if !haveCred || !haveSH || !haveSig || !hasDate {
		return a, incomplete(missingParts(!haveCred, !haveSig, !haveSH, hasDate) + "Authorization=" + h)
	}
	if e := a.parseCredential(); e != nil {
		return a, e
	}
	return a, nil
}

func missingParts(cred, sig, sh, hasDate bool) string {
	var b strings.Builder
	if cred {
		b.WriteString("Authorization header requires 'Credential' parameter. ")
	}
	if sig {
		b.WriteString("Authorization header requires 'Signature' parameter. ")
	}
	if sh {
		b.WriteString("Authorization header requires 'SignedHeaders' parameter. ")
	}
	if !hasDate {
		b.WriteString("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ")
	}
	return b.String()
}

// parseCredential splits AKID/YYYYMMDD/region/service/aws4_request.
func (a *authInfo) parseCredential() *Error {
	c := a.credential
	if strings.Count(c, "/") != 4 || strings.HasPrefix(c, "/") {
		e := incomplete("Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '" + a.credential + "'")
		e.Hint = "the credential is access-key-id/YYYYMMDD/region/service/aws4_request"
		return e
	}
	a.accessKeyID, c, _ = strings.Cut(c, "/")
	a.scopeDate, c, _ = strings.Cut(c, "/")
	a.region, c, _ = strings.Cut(c, "/")
	a.service, a.term, _ = strings.Cut(c, "/")
	return nil
}

// presignParams are the query parameters of a presigned URL ("Authenticating Requests:
// Using Query Parameters", Amazon S3 API Reference; the same names for every service).
var presignParams = [...]string{
	"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
	"X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token",
}

const (
	pAlgorithm = iota
	pCredential
	pDate
	pExpires
	pSignedHeaders
	pSignature
	pToken
)

// presignIndex returns the index in presignParams of an encoded query name, or -1.
func presignIndex(k []byte) int {
	if len(k) < 10 || string(k[:6]) != "X-Amz-" {
		return -1
	}
	for i, p := range presignParams {
		if string(k) == p {
			return i
		}
	}
	return -1
}

// parsePresigned reads the X-Amz-* parameters from the parsed query.
func (s *scratch) parsePresigned() (authInfo, *Error) {
	var a authInfo
	a.presigned = true
	var raw [len(presignParams)]string
	var seen [len(presignParams)]bool
	for _, p := range s.pairs {
		i := presignIndex(s.key(p))
		if i < 0 {
			continue
		}
		if seen[i] {
			// Two values for one auth parameter: which one did the signer mean? Refuse.
			e := incomplete("The query parameter '" + presignParams[i] + "' appears more than once. Re-examine the query-string parameters.")
			e.Hint = "a presigned URL carries each X-Amz-* authentication parameter exactly once"
			return a, e
		}
		seen[i] = true
		// The encoded value decodes without error: it was produced by appendDecodedEncoded.
		v, err := url.PathUnescape(string(s.val(p)))
		if err != nil {
			return a, malformedQuery("The query parameter '" + presignParams[i] + "' is malformed.")
		}
		raw[i] = v
	}
	if !seen[pAlgorithm] || !seen[pCredential] || !seen[pSignature] || !seen[pSignedHeaders] || !seen[pDate] || !seen[pExpires] {
		var missing []string
		for _, i := range []int{pAlgorithm, pCredential, pSignature, pSignedHeaders, pDate, pExpires} {
			if !seen[i] {
				missing = append(missing, presignParams[i])
			}
		}
		e := incomplete("AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Signature', 'X-Amz-SignedHeaders', 'X-Amz-Date' and 'X-Amz-Expires'. Re-examine the query-string parameters.")
		e.Hint = "missing: " + strings.Join(missing, ", ")
		return a, e
	}
	if raw[pAlgorithm] != algorithm {
		return a, incomplete("X-Amz-Algorithm only supports \"" + algorithm + "\", not \"" + raw[pAlgorithm] + "\".")
	}
	exp := raw[pExpires]
	n, err := strconv.ParseInt(exp, 10, 64)
	switch {
	case err != nil && strings.HasPrefix(exp, "-") && isDigits(exp[1:]):
		return a, incomplete("X-Amz-Expires must be non-negative")
	case err != nil && isDigits(exp):
		return a, incomplete("X-Amz-Expires must be less than a week (in seconds) that is 604800")
	case err != nil:
		return a, incomplete("X-Amz-Expires should be a number")
	case n < 0:
		return a, incomplete("X-Amz-Expires must be non-negative")
	case n > maxPresignExpires:
		return a, incomplete("X-Amz-Expires must be less than a week (in seconds) that is 604800")
	}
	a.expires = n
	a.credential = raw[pCredential]
	a.signedHeaders = raw[pSignedHeaders]
	a.signature = raw[pSignature]
	a.amzDate = raw[pDate]
	a.dateHeader = "x-amz-date"
	a.token, a.hasToken = raw[pToken], seen[pToken]
	if e := a.parseCredential(); e != nil {
		return a, e
	}
	return a, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
