// Package rawhttp reads one raw HTTP request as written in the AWS SigV4 conformance suite
// and in files users save for debugging ("phantom sigv4 verify --request FILE"): as sent,
// or as curl shows it (-v, --trace-ascii, --trace; ParseCapture), with an HTTP/1.x, HTTP/2
// or HTTP/3 request line.
//
// It is deliberately more lenient than net/http's server parser in exactly the ways those
// files need (bare \n line ends, "Name:value" without a space, request targets holding
// spaces or raw UTF-8, obsolete line folding) and strict everywhere else: it never guesses a
// body length, refuses malformed header names, and bounds what it reads. It does not own
// verification (package sigv4) or network I/O.
package rawhttp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
)

// Bounds on input: a request file is small; these only keep a hostile file from costing
// unbounded memory or time.
const (
	maxHeaderLines = 1000
	maxLineLen     = 64 << 10
)

// Parse reads one raw HTTP/1.1 request: request line, headers (Name:value, with or without a
// space; obsolete line folding), blank line, body; \n or \r\n line ends and request targets
// with spaces/UTF-8 are accepted. Repeated headers are kept in order. The returned request's
// RequestURI holds the target exactly as sent, its URL keeps the client's escaping (RawPath,
// RawQuery), and Host is set from the Host header (which, as in net/http's server, is not
// left in Header). The body is returned as well as set on the request.
func Parse(data []byte) (*http.Request, []byte, error) {
	line, rest, ok := nextLine(data)
	if !ok && len(line) == 0 {
		return nil, nil, errors.New("rawhttp: empty input, expected a request line such as \"GET / HTTP/1.1\"")
	}
	method, target, proto, err := parseRequestLine(line)
	if err != nil {
		return nil, nil, err
	}
	major, minor, ok := parseVersion(proto)
	if !ok {
		return nil, nil, fmt.Errorf("rawhttp: unsupported protocol %q in request line, expected HTTP/1.x, HTTP/2 or HTTP/3", proto)
	}

	h := make(http.Header)
	var lastKey string
	var hosts []string
	lines := 0
	for {
		if len(rest) == 0 {
			// No blank line: headers run to the end of the input and the body is empty.
			break
		}
		line, rest, _ = nextLine(rest)
		if len(line) == 0 {
			break
		}
		lines++
		if lines > maxHeaderLines {
			return nil, nil, fmt.Errorf("rawhttp: more than %d header lines", maxHeaderLines)
		}
		if len(line) > maxLineLen {
			return nil, nil, fmt.Errorf("rawhttp: header line %d is longer than %d bytes", lines, maxLineLen)
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold (RFC 9112 §5.2): the continuation belongs to the previous field
			// value, joined by a single space.
			if lastKey == "" {
				return nil, nil, fmt.Errorf("rawhttp: header line %d is a continuation with no header before it", lines)
			}
			cont := strings.Trim(string(line), " \t")
			if lastKey == "Host" {
				hosts[len(hosts)-1] += " " + cont
				continue
			}
			vs := h[lastKey]
			vs[len(vs)-1] += " " + cont
			continue
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			return nil, nil, fmt.Errorf("rawhttp: header line %d %q has no name: expected \"Name: value\"", lines, truncate(line))
		}
		name := string(line[:i])
		if !validToken(name) {
			return nil, nil, fmt.Errorf("rawhttp: header line %d: invalid header name %q", lines, name)
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		value := strings.Trim(string(line[i+1:]), " \t")
		lastKey = key
		if key == "Host" {
			hosts = append(hosts, value)
			continue
		}
		h[key] = append(h[key], value)
	}
	if len(hosts) > 1 {
		return nil, nil, errors.New("rawhttp: more than one Host header (RFC 9112 §3.2 requires exactly one)")
	}

	body := rest
	contentLength := int64(len(body))
	if cl := h["Content-Length"]; len(cl) > 0 {
		if len(cl) > 1 {
			return nil, nil, errors.New("rawhttp: more than one Content-Length header")
		}
		n, err := strconv.ParseInt(cl[0], 10, 64)
		if err != nil || n < 0 {
			return nil, nil, fmt.Errorf("rawhttp: invalid Content-Length %q", cl[0])
		}
		if n > int64(len(body)) {
			return nil, nil, fmt.Errorf("rawhttp: Content-Length is %d but only %d body bytes follow", n, len(body))
		}
		// Bytes past Content-Length are not part of this request (an editor's trailing
		// newline, or a pipelined request).
		body = body[:n]
		contentLength = n
	}

	u, err := targetURL(target)
	if err != nil {
		return nil, nil, err
	}
	r := &http.Request{
		Method:        method,
		URL:           u,
		Proto:         fmt.Sprintf("HTTP/%d.%d", major, minor),
		ProtoMajor:    major,
		ProtoMinor:    minor,
		Header:        h,
		ContentLength: contentLength,
		RequestURI:    target,
		Body:          io.NopCloser(bytes.NewReader(body)),
	}
	if len(hosts) == 1 {
		r.Host = hosts[0]
	} else if u.Host != "" {
		r.Host = u.Host
	}
	if len(body) == 0 {
		r.Body = http.NoBody
	}
	return r, body, nil
}

// parseVersion reads HTTP/1.0 and HTTP/1.1, and the "HTTP/2" and "HTTP/3" that clients
// (curl -v, --trace) print for requests they sent as HTTP/2 or HTTP/3 frames: the fields
// SigV4 signs are the same.
func parseVersion(proto string) (major, minor int, ok bool) {
	switch proto {
	case "HTTP/2", "HTTP/2.0":
		return 2, 0, true
	case "HTTP/3", "HTTP/3.0":
		return 3, 0, true
	}
	major, minor, ok = http.ParseHTTPVersion(proto)
	return major, minor, ok && major == 1
}

// nextLine returns the line before the next \n (without \n or a preceding \r) and the rest.
// ok is false when no \n was found (the line runs to the end of data).
func nextLine(data []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		return bytes.TrimSuffix(data, []byte("\r")), nil, false
	}
	return bytes.TrimSuffix(data[:i], []byte("\r")), data[i+1:], true
}

// parseRequestLine splits "METHOD target HTTP/1.1". The target may hold spaces (the
// conformance suite's "GET /example space/ HTTP/1.1"), so the method ends at the first space
// and the protocol starts after the last one.
func parseRequestLine(line []byte) (method, target, proto string, err error) {
	s := string(line)
	i := strings.IndexByte(s, ' ')
	j := strings.LastIndexByte(s, ' ')
	if i <= 0 || j <= i+1 {
		return "", "", "", fmt.Errorf("rawhttp: malformed request line %q, expected \"METHOD /path HTTP/1.1\"", truncate(line))
	}
	method, target, proto = s[:i], s[i+1:j], s[j+1:]
	if !validToken(method) {
		return "", "", "", fmt.Errorf("rawhttp: invalid method %q", method)
	}
	if strings.ContainsAny(target, "\r\n\x00") {
		return "", "", "", fmt.Errorf("rawhttp: request target contains control characters")
	}
	return method, target, proto, nil
}

// targetURL builds a URL that keeps the target's escaping. Path is a best-effort decoding;
// RawPath, or Opaque for targets no escaped path can represent (raw spaces, UTF-8), carries
// the bytes sent.
func targetURL(target string) (*url.URL, error) {
	u := &url.URL{}
	t := target
	switch {
	case t == "*":
		u.Opaque = "*"
		return u, nil
	case strings.HasPrefix(t, "/"):
	case strings.Contains(t, "://"):
		// absolute-form
		scheme, after, _ := strings.Cut(t, "://")
		u.Scheme = scheme
		if k := strings.IndexAny(after, "/?"); k >= 0 {
			u.Host, t = after[:k], after[k:]
		} else {
			u.Host, t = after, ""
		}
	default:
		return nil, fmt.Errorf("rawhttp: request target %q is neither a path nor an absolute URL", truncate([]byte(target)))
	}
	p, q, hasQuery := strings.Cut(t, "?")
	if hasQuery {
		u.RawQuery = q
		u.ForceQuery = q == ""
	}
	if dec, err := url.PathUnescape(p); err == nil {
		u.Path = dec
	} else {
		u.Path = p
	}
	if p != u.Path {
		u.RawPath = p
	}
	if u.EscapedPath() != p {
		// Bytes no escaped path may hold (a raw space, UTF-8): only Opaque keeps them, and
		// RequestURI() then returns the target as sent. An Opaque starting with "//" would
		// read as scheme://authority, so such a path is left to RequestURI alone.
		u.RawPath = ""
		if !strings.HasPrefix(p, "//") {
			u.Opaque = p
		}
	}
	return u, nil
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}
