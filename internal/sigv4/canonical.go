package sigv4

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// This file builds the canonical request of "Create a canonical request" (IAM User Guide):
//
//	HTTPMethod \n CanonicalURI \n CanonicalQueryString \n CanonicalHeaders \n SignedHeaders \n HashedPayload
//
// Everything is appended to pooled buffers; nothing here calls fmt.

const upperhex = "0123456789ABCDEF"

// unreserved reports RFC 3986 §2.3 unreserved characters, the only ones SigV4 leaves
// unencoded ("URI-encode each parameter name and value ... Do not URI-encode any of the
// unreserved characters that RFC 3986 defines").
func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// appendEncoded URI-encodes s as SigV4 requires: unreserved bytes as is, everything else as
// %XX with upper-case hex; '/' is kept when keepSlash (paths).
func appendEncoded(dst []byte, s string, keepSlash bool) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) || keepSlash && c == '/' {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', upperhex[c>>4], upperhex[c&15])
	}
	return dst
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// appendDecodedEncoded percent-decodes s (and '+' as a space when plusSpace, as
// application/x-www-form-urlencoded query strings do) and appends it re-encoded. It fails on
// a malformed escape: a request whose parameters we cannot read unambiguously is refused
// rather than guessed at, since the backend might read them differently.
//
// With keepSlash (S3-style paths) only a literal '/' stays a separator: an escaped one
// ("%2F") is encoded again, so "/a%2Fb" (one key segment) and "/a/b" (two) keep distinct
// canonical forms and a signature for one never verifies the other.
func appendDecodedEncoded(dst []byte, s string, plusSpace, keepSlash bool) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		literal := true
		switch {
		case c == '%':
			literal = false
			if i+2 >= len(s) {
				return dst, false
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return dst, false
			}
			c = hi<<4 | lo
			i += 2
		case c == '+' && plusSpace:
			c = ' '
		}
		if unreserved(c) || keepSlash && literal && c == '/' {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', upperhex[c>>4], upperhex[c&15])
		}
	}
	return dst, true
}

// RequestTarget returns the path and query exactly as the client sent them, and whether
// the target had a "?" (an empty query is still one). A server request carries the raw
// request-target in RequestURI; requests built in process (tests, rawhttp) may only have a
// URL, whose RawPath/Opaque keep the client's escaping. The endpoint forwards this target
// byte for byte, since the canonical request is computed over it.
func RequestTarget(r *http.Request) (path, query string, hasQuery bool) {
	if t := r.RequestURI; t != "" && t != "*" {
		if !strings.HasPrefix(t, "/") {
			// absolute-form (RFC 9112 §3.2.2): drop scheme and authority.
			if i := strings.Index(t, "://"); i >= 0 {
				t = t[i+3:]
				if j := strings.IndexAny(t, "/?"); j >= 0 {
					t = t[j:]
				} else {
					t = ""
				}
			}
		}
		return strings.Cut(t, "?")
	}
	u := r.URL
	switch {
	case u.Opaque != "":
		path = u.Opaque
		if strings.HasPrefix(path, "//") { // scheme://host/path kept opaque
			if j := strings.IndexByte(path[2:], '/'); j >= 0 {
				path = path[2+j:]
			} else {
				path = ""
			}
		}
	default:
		path = u.EscapedPath()
	}
	return path, u.RawQuery, u.ForceQuery || u.RawQuery != ""
}

// appendCanonicalURI appends the canonical URI for the raw (as sent) path.
//
// Normalized (every service but S3): remove dot segments (RFC 3986 §5.2.4), collapse
// repeated slashes, keep a trailing slash, then URI-encode the result as sent, so an escape
// such as %20 is encoded again to %2520 ("Each path segment must be URI-encoded twice",
// IAM User Guide). The rule for "..", empty segments and the trailing slash is the one
// botocore and aws-c-auth implement and the aws-c-auth suite pins down.
//
// S3-style (DisablePathNormalization): the path as sent, decoded and encoded once.
func appendCanonicalURI(dst []byte, raw string, normalize bool) ([]byte, bool) {
	if raw == "" {
		return append(dst, '/'), true
	}
	if !normalize {
		if raw[0] != '/' {
			dst = append(dst, '/')
		}
		return appendDecodedEncoded(dst, raw, false, true)
	}
	start := len(dst)
	dst = append(dst, '/')
	// Walk segments; ".." pops the last emitted segment by truncating dst back to the
	// previous '/'.
	rest := raw
	for len(rest) > 0 {
		var seg string
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		} else {
			seg, rest = rest, ""
		}
		switch seg {
		case "", ".":
			continue
		case "..":
			if len(dst) > start+1 {
				// dst is "/a/b" (no trailing slash while walking): cut the last segment.
				i := bytes.LastIndexByte(dst[start:], '/')
				if i == 0 {
					dst = dst[:start+1]
				} else {
					dst = dst[:start+i]
				}
			}
			continue
		}
		if len(dst) > start+1 {
			dst = append(dst, '/')
		}
		dst = appendEncoded(dst, seg, false)
	}
	if raw[len(raw)-1] == '/' && len(dst) > start+1 {
		dst = append(dst, '/')
	}
	return dst, true
}

// appendRawURI appends the second canonical form of a path that real clients sign.
//
// Normalized mode: the path as sent, encoded again but not normalized, as aws-sdk-go-v2
// signs it (it neither removes dot segments nor collapses slashes).
//
// S3-style: the path as sent, its escapes kept as they are ("%7E", lower-case hex) and
// only bytes no URI may hold encoded, as botocore and aws-sdk-go-v2 sign S3 paths. Its
// decoding, segment by segment, is the decoding of the path sent, so it cannot equal the
// AWS form of a path that names another key. ok is false for a malformed escape.
func appendRawURI(dst []byte, raw string, normalize bool) ([]byte, bool) {
	if raw == "" || raw[0] != '/' {
		dst = append(dst, '/')
	}
	if normalize {
		return appendEncoded(dst, raw, true), true
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '%':
			if i+2 >= len(raw) {
				return dst, false
			}
			if _, ok := unhex(raw[i+1]); !ok {
				return dst, false
			}
			if _, ok := unhex(raw[i+2]); !ok {
				return dst, false
			}
			dst = append(dst, raw[i:i+3]...)
			i += 2
		case unreserved(c) || c == '/':
			dst = append(dst, c)
		default:
			dst = append(dst, '%', upperhex[c>>4], upperhex[c&15])
		}
	}
	return dst, true
}

// parseQuery splits the raw query into encoded (name, value) pairs in s.pairs. Empty
// segments ("a=1&&b=2") carry no parameter and are skipped, as every client's parser does.
func (s *scratch) parseQuery(raw string) *Error {
	s.q = s.q[:0]
	s.pairs = s.pairs[:0]
	for len(raw) > 0 {
		var seg string
		if i := strings.IndexByte(raw, '&'); i >= 0 {
			seg, raw = raw[:i], raw[i+1:]
		} else {
			seg, raw = raw, ""
		}
		if seg == "" {
			continue
		}
		if len(s.pairs) >= maxQueryParams {
			return malformedQuery("The query string has more than " + strconv.Itoa(maxQueryParams) + " parameters.")
		}
		k, val, _ := strings.Cut(seg, "=")
		var p qpair
		var ok bool
		p.ks = int32(len(s.q))
		if s.q, ok = appendDecodedEncoded(s.q, k, true, false); !ok {
			return malformedQuery("The query string contains a malformed percent-encoding in parameter name '" + k + "'.")
		}
		p.ke = int32(len(s.q))
		p.vs = p.ke
		if s.q, ok = appendDecodedEncoded(s.q, val, true, false); !ok {
			return malformedQuery("The query string contains a malformed percent-encoding in the value of '" + k + "'.")
		}
		p.ve = int32(len(s.q))
		if len(s.q) > maxCanonicalLen {
			return malformedQuery("The query string is too long.")
		}
		s.pairs = append(s.pairs, p)
	}
	return nil
}

func (s *scratch) key(p qpair) []byte { return s.q[p.ks:p.ke] }
func (s *scratch) val(p qpair) []byte { return s.q[p.vs:p.ve] }

// sortQuery orders parameters by encoded name, then by encoded value ("Sort the encoded
// parameters by name in ascending order by character code; parameters with duplicate names
// sort by value").
func (s *scratch) sortQuery() {
	q := s.q
	slices.SortFunc(s.pairs, func(a, b qpair) int {
		if c := bytes.Compare(q[a.ks:a.ke], q[b.ks:b.ke]); c != 0 {
			return c
		}
		return bytes.Compare(q[a.vs:a.ve], q[b.vs:b.ve])
	})
}

// appendCanonicalQuery appends the sorted pairs, skipping X-Amz-Signature for presigned
// requests (the signature cannot sign itself), and X-Amz-Security-Token when omitToken.
func (s *scratch) appendCanonicalQuery(dst []byte, presigned, omitToken bool) []byte {
	first := true
	for _, p := range s.pairs {
		k := s.key(p)
		if presigned && (string(k) == "X-Amz-Signature" || omitToken && string(k) == "X-Amz-Security-Token") {
			continue
		}
		if !first {
			dst = append(dst, '&')
		}
		first = false
		dst = append(dst, k...)
		dst = append(dst, '=')
		dst = append(dst, s.val(p)...)
	}
	return dst
}

// appendHeaderValue appends v trimmed, with runs of spaces collapsed to one ("Trimall",
// "Create a canonical request").
// The value is copied in runs between the places spaces repeat, not byte by byte: a
// session token (hundreds of bytes, no spaces) is a signed header of every session call.
func appendHeaderValue(dst []byte, v string) []byte {
	v = strings.Trim(v, " \t")
	for {
		i := strings.Index(v, "  ")
		if i < 0 {
			return append(dst, v...)
		}
		dst = append(dst, v[:i+1]...)
		v = strings.TrimLeft(v[i+1:], " ") // not empty: v does not end with a space
	}
}

// headerValues returns the values of the lower-case header name, in the order received.
// Go servers store header names in canonical MIME form; building that form in a scratch
// buffer and indexing the map with string(bytes) does not allocate.
func (s *scratch) headerValues(h http.Header, name string) []string {
	b := s.hkey[:0]
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b = append(b, c)
		upper = c == '-'
	}
	s.hkey = b
	if vs, ok := h[string(b)]; ok {
		return vs
	}
	// Header maps built by hand may hold non-canonical keys; take the first match in a
	// deterministic way (sorted keys) so that verification cannot depend on map order.
	var match string
	for k := range h {
		if strings.EqualFold(k, name) && (match == "" || k < match) {
			match = k
		}
	}
	if match != "" {
		return h[match]
	}
	return nil
}
