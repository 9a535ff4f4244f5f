package agent

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// IMDSv2 as the EC2 User Guide describes it ("Use the Instance Metadata Service to access
// instance metadata", "How Instance Metadata Service Version 2 works"):
//   - PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds (1 to 21600) returns
//     a session token; a request carrying X-Forwarded-For (or Forwarded) is refused (a token must not be
//     obtainable through a proxy or forwarder);
//   - every other request carries it in X-aws-ec2-metadata-token: without a valid,
//     unexpired token the answer is 401 (IMDSv1 is off: "HttpTokens: required");
//   - responses leave with the IP TTL set to the hop limit, 1 (HopLimitListener).
const (
	tokenPath      = "/latest/api/token"
	credsPath      = "/latest/meta-data/iam/security-credentials/"
	infoPath       = "/latest/meta-data/iam/info"
	proxyPath      = "/latest/meta-data/phantom/egress-proxy"
	regionPath     = "/latest/meta-data/placement/region"
	zonePath       = "/latest/meta-data/placement/availability-zone"
	ttlHeader      = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	tokenHeader    = "X-Aws-Ec2-Metadata-Token"
	maxTokenTTL    = 21600
	tokenNonceSize = 16
	tokenMACSize   = 16
	// HopLimit is the IP TTL of IMDS responses: AWS's default hop limit, so a response
	// cannot be routed beyond the host (a container behind a NAT, another machine).
	HopLimit = 1
)

// Strict: a token has one spelling (no variant with other unused trailing bits decodes to
// the same bytes).
var tokenEncoding = base64.RawURLEncoding.Strict()

// newIMDSToken returns a random token valid for ttl: nonce || expiry || MAC. It is
// stateless (nothing to store per token, so no memory for a caller to exhaust) and only
// this agent, holding the key, can make one.
func (a *Agent) newIMDSToken(ttl time.Duration) (string, error) {
	b := make([]byte, tokenNonceSize+8, tokenNonceSize+8+sha256.Size)
	if _, err := io.ReadFull(a.rand, b[:tokenNonceSize]); err != nil {
		return "", err
	}
	binary.BigEndian.PutUint64(b[tokenNonceSize:], uint64(a.now().Add(ttl).Unix()))
	m := hmac.New(sha256.New, a.imdsKey)
	m.Write(b)
	b = m.Sum(b)[:tokenNonceSize+8+tokenMACSize]
	return tokenEncoding.EncodeToString(b), nil
}

// validIMDSToken checks a token's MAC in constant time, then its expiry.
func (a *Agent) validIMDSToken(tok string) bool {
	if len(tok) != tokenEncoding.EncodedLen(tokenNonceSize+8+tokenMACSize) {
		return false
	}
	b, err := tokenEncoding.DecodeString(tok)
	if err != nil || len(b) != tokenNonceSize+8+tokenMACSize {
		return false
	}
	m := hmac.New(sha256.New, a.imdsKey)
	m.Write(b[:tokenNonceSize+8])
	if subtle.ConstantTimeCompare(m.Sum(nil)[:tokenMACSize], b[tokenNonceSize+8:]) != 1 {
		return false
	}
	exp := int64(binary.BigEndian.Uint64(b[tokenNonceSize:]))
	return a.now().Unix() < exp
}

// parseTTL parses X-aws-ec2-metadata-token-ttl-seconds: up to 10 decimal digits, 1 to 21600.
func parseTTL(s string) (time.Duration, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxTokenTTL {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// imdsCredentials is IMDS's security-credentials document.
type imdsCredentials struct {
	Code            string `json:"Code"`
	LastUpdated     string `json:"LastUpdated"`
	Type            string `json:"Type"`
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Token           string `json:"Token"`
	Expiration      string `json:"Expiration"`
}

func awsTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// IMDSHandler serves the IMDSv2 subset AWS SDKs use for credentials. Serve it on a
// loopback listener wrapped in HopLimitListener (Serve does both).
func (a *Agent) IMDSHandler() http.Handler {
	return http.HandlerFunc(a.serveIMDS)
}

func (a *Agent) serveIMDS(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Server", "EC2ws")
	h.Set("Cache-Control", "no-store")
	if proxied(r) {
		// "IMDSv2 ... does not accept a PUT request that contains an X-Forwarded-For
		// header": the request came through a proxy. Refused for every path.
		textError(w, http.StatusForbidden)
		return
	}
	if r.URL.Path == tokenPath {
		if r.Method != http.MethodPut {
			textError(w, http.StatusMethodNotAllowed)
			return
		}
		ttl, ok := parseTTL(r.Header.Get(ttlHeader))
		if !ok {
			textError(w, http.StatusBadRequest)
			return
		}
		tok, err := a.newIMDSToken(ttl)
		if err != nil {
			textError(w, http.StatusInternalServerError)
			return
		}
		h.Set(ttlHeader, strconv.Itoa(int(ttl/time.Second)))
		text(w, tok)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		textError(w, http.StatusMethodNotAllowed)
		return
	}
	if !a.validIMDSToken(r.Header.Get(tokenHeader)) {
		textError(w, http.StatusUnauthorized)
		return
	}
	p := r.URL.Path
	switch {
	case p == "/latest/meta-data/iam/security-credentials" || p == credsPath:
		if role := a.Role(); role != "" {
			text(w, role)
			return
		}
		textError(w, http.StatusNotFound)
	case strings.HasPrefix(p, credsPath):
		role := a.Role()
		if role == "" || p[len(credsPath):] != role {
			textError(w, http.StatusNotFound)
			return
		}
		s := a.current()
		if s == nil {
			// No credentials that may be handed out: STS has not answered since the last
			// ones neared expiry. SDKs retry; expired credentials are never served.
			textError(w, http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, imdsCredentials{
			Code: "Success", LastUpdated: awsTime(s.creds.LastUpdated), Type: "AWS-HMAC",
			AccessKeyID: s.creds.AccessKeyID, SecretAccessKey: s.creds.SecretAccessKey, Token: s.creds.Token,
			Expiration: awsTime(s.creds.Expiration),
		})
	case p == infoPath:
		s := a.sess.Load()
		if s == nil {
			textError(w, http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]string{
			"Code": "Success", "LastUpdated": awsTime(s.creds.LastUpdated),
			// No instance profiles in Phantom: the role is assigned to the node directly.
			"InstanceProfileArn": strings.Replace(s.creds.RoleArn, ":role/", ":instance-profile/", 1),
			"InstanceProfileId":  "AIPA" + strings.ToUpper(a.Node()),
		})
	case p == regionPath || p == zonePath || p == zonePath+"/":
		// Where SDKs look the region up in IMDS (aws-sdk-go-v2's WithEC2IMDSRegion reads
		// placement/region, botocore's "auto" defaults mode the availability zone): the
		// perimeter's region.
		s := a.sess.Load()
		if s == nil || s.region == "" {
			textError(w, http.StatusNotFound)
			return
		}
		if p == regionPath {
			text(w, s.region)
		} else {
			text(w, s.region+"a")
		}
	case p == proxyPath:
		u := a.ProxyURL(a.cfg.EgressProxy)
		if u == "" {
			textError(w, http.StatusNotFound)
			return
		}
		text(w, u)
	default:
		textError(w, http.StatusNotFound)
	}
}

// proxied reports whether a request says it came through a proxy: X-Forwarded-For, as
// IMDSv2 checks, or its standard spelling, Forwarded (RFC 7239), which proxies that do not
// write X-Forwarded-For send instead. Header names are canonicalized by net/http, so any
// case of either is caught.
func proxied(r *http.Request) bool {
	_, xff := r.Header["X-Forwarded-For"]
	_, fwd := r.Header["Forwarded"]
	return xff || fwd
}

func text(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(s)))
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, s)
}

func textError(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, http.StatusText(status)+"\n")
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		textError(w, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}
