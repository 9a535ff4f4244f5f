package gateway

import (
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"net/textproto"
	"strings"
)

// overrideHeaders are request headers that make common backends and frameworks act on
// another method or URL (X-HTTP-Method-Override, X-Original-URL, …) or believe another
// caller address (X-Real-IP, True-Client-IP, …) than the one the gateway authorized.
// Nothing signs what they mean to a backend, so none reaches one; the gateway sends the
// caller's address itself (X-Forwarded-For, and the assertion's sourceIp).
var overrideHeaders = map[string]bool{
	"X-Http-Method-Override": true,
	"X-Http-Method":          true,
	"X-Method-Override":      true,
	"X-Original-Url":         true,
	"X-Rewrite-Url":          true,
	"X-Real-Ip":              true,
	"True-Client-Ip":         true,
	"X-Client-Ip":            true,
	"Cf-Connecting-Ip":       true,
	"X-Cluster-Client-Ip":    true,
	"Fastly-Client-Ip":       true,
}

// strippedHeader reports whether a request header must not reach a backend: the headers
// only an endpoint may set or that claim a forwarding hop, and the override headers.
// Names compare case-insensitively (RFC 9110 §5.1), a name Go did not canonicalize too.
func strippedHeader(name string) bool {
	if isClientIdentityHeader(name) {
		return true
	}
	// Canonicalizing keeps a name's length: only a name as long as an override header's
	// is canonicalized and looked up (most of a request's are not).
	return len(name) < len(overrideLengths) && overrideLengths[len(name)] && overrideHeaders[textproto.CanonicalMIMEHeaderKey(name)]
}

// overrideLengths marks the lengths of overrideHeaders' names.
var overrideLengths = func() (t [32]bool) {
	for name := range overrideHeaders {
		t[len(name)] = true // a name of 32 bytes or more would panic here, at start
	}
	return t
}()

// headerValue is h.Get(name) for a name in canonical form (a constant: TestHeaderNamesCanonical
// holds those it is given), read from the map without canonicalizing the name again.
func headerValue(h http.Header, name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// requestPath is the path of the request-target exactly as the caller sent it (for
// HTTP/2 the :path pseudo-header), not as Go re-escapes it: the path that is authorized
// is the path the backend receives.
func requestPath(r *http.Request) string {
	if t := r.RequestURI; strings.HasPrefix(t, "/") {
		p, _, _ := strings.Cut(t, "?")
		return p
	}
	return r.URL.EscapedPath()
}

// upgradeOf reports whether the request asks to switch protocols (an Upgrade header, or
// Connection naming upgrade) and, when it names exactly one protocol, which, in lower
// case and without a version (RFC 9110 §7.8).
func upgradeOf(h http.Header) (proto string, asked bool) {
	ups := h.Values("Upgrade")
	asked = len(ups) > 0
	for _, c := range h.Values("Connection") {
		for tok := range strings.SplitSeq(c, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				asked = true
			}
		}
	}
	if len(ups) != 1 || strings.Contains(ups[0], ",") {
		return "", asked
	}
	name, _, _ := strings.Cut(strings.TrimSpace(ups[0]), "/")
	return strings.ToLower(name), asked
}

// websocketGUID is RFC 6455 §1.3's key suffix.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// websocketAccepted reports whether a backend's 101 completes the WebSocket handshake the
// request began (RFC 6455 §4.2.2): a backend that switches without it is not speaking
// WebSocket, and the tunnel is not opened.
func websocketAccepted(req http.Header, resp http.Header) bool {
	key := req.Get("Sec-Websocket-Key")
	if key == "" {
		return false
	}
	sum := sha1.Sum([]byte(key + websocketGUID))
	return resp.Get("Sec-Websocket-Accept") == base64.StdEncoding.EncodeToString(sum[:])
}
