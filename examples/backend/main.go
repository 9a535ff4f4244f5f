// Command backend is a backend behind Phantom's gateway written as docs/backends.md says,
// with the standard library only: it serves TLS, accepts connections only from the
// gateway (a client certificate of the perimeter CA naming it), and trusts nothing about
// a caller but the gateway's X-Phantom-Identity assertion, which it checks in full —
// MAC or signature, API, time, that it names this very request and body, and that it was
// not used before.
//
//	phantom keys backend --api a1b2c3d4e5 --out orders.jwk
//	go run ./examples/backend -listen 127.0.0.1:9000 -cert backend.crt -key backend.key \
//	    -perimeter-ca phantom-data/ca.pem -assertion-key orders.jwk -api a1b2c3d4e5 \
//	    -gateway spiffe://phantom/123456789012/gateway/gateway
//
// orders.jwk is the API's assertion key (HS256, the default). For an API with
// assertion: eddsa give -jwks jwks.json instead, the gateway's key set: curl --cacert
// phantom-data/ca.pem https://GATEWAY/.well-known/phantom/jwks.json.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Claims are the assertion's claims (docs/backends.md lists them).
type Claims struct {
	Issuer      string `json:"iss"`
	Audience    string `json:"aud"`
	Principal   string `json:"principal"`
	VPCEndpoint string `json:"vpce"`
	SourceIP    string `json:"sourceIp"`
	RequestID   string `json:"requestId"`
	ID          string `json:"jti"`
	Method      string `json:"method"`
	Path        string `json:"path"`
	Query       string `json:"query"`
	PayloadHash string `json:"payloadHash"`
	IssuedAt    int64  `json:"iat"`
	ExpiresAt   int64  `json:"exp"`
}

// Verifier checks assertions for one API. Keep one per process: it remembers the ids it
// accepted until they expire. Give it the API's key (HS256) or the JWKS's keys (EdDSA),
// never both: it accepts that algorithm only.
type Verifier struct {
	API  string
	Key  *KeyFile                     // HS256: the API's key file
	Keys map[string]ed25519.PublicKey // EdDSA: kid -> key, from the JWKS
	Now  func() time.Time

	mu   sync.Mutex
	seen map[string]int64 // jti -> exp
}

// KeyFile is the API's assertion key, as `phantom keys backend` writes it: a JWK
// {"kty":"oct","kid":"API:CHECK","alg":"HS256","use":"sig","k":…}.
type KeyFile struct {
	Kid string
	Key []byte
}

// ParseKeyFile reads the API's key file.
func ParseKeyFile(data []byte) (*KeyFile, error) {
	var k struct{ Kty, Kid, Alg, K string }
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, err
	}
	key, err := base64.RawURLEncoding.Strict().DecodeString(k.K)
	if k.Kty != "oct" || k.Alg != "HS256" || err != nil || len(key) != 32 || k.Kid == "" {
		return nil, errors.New("not an HS256 key file (phantom keys backend)")
	}
	return &KeyFile{Kid: k.Kid, Key: key}, nil
}

// ParseJWKS reads the gateway's Ed25519 keys (RFC 8037 OKP keys).
func ParseJWKS(data []byte) (map[string]ed25519.PublicKey, error) {
	var set struct {
		Keys []struct{ Kty, Crv, Kid, X string }
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, err
	}
	keys := map[string]ed25519.PublicKey{}
	for _, k := range set.Keys {
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if k.Kty == "OKP" && k.Crv == "Ed25519" && err == nil && len(x) == ed25519.PublicKeySize {
			keys[k.Kid] = x
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no Ed25519 key in the JWKS")
	}
	return keys, nil
}

// Check verifies r's assertion and, when the client signed the body, replaces r.Body with
// a reader that fails at the body's end unless the body is the one signed: read the body
// to its end before acting on it.
func (v *Verifier) Check(r *http.Request) (*Claims, error) {
	tok := r.Header.Values("X-Phantom-Identity")
	if len(tok) != 1 {
		return nil, errors.New("want exactly one X-Phantom-Identity header")
	}
	parts := strings.Split(tok[0], ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	enc := base64.RawURLEncoding.Strict()
	var hdr struct{ Alg, Kid string }
	h, err := enc.DecodeString(parts[0])
	if err != nil || json.Unmarshal(h, &hdr) != nil {
		return nil, errors.New("the header does not parse")
	}
	sig, err := enc.DecodeString(parts[2])
	signed := []byte(parts[0] + "." + parts[1])
	// The algorithm is the one this verifier was given a key for, whatever the token says
	// (a token never chooses how it is checked: no "none", no HS256 under a public key).
	if v.Key != nil {
		mac := hmac.New(sha256.New, v.Key.Key)
		mac.Write(signed)
		if hdr.Alg != "HS256" || hdr.Kid != v.Key.Kid || err != nil || !hmac.Equal(mac.Sum(nil), sig) {
			return nil, errors.New("the MAC does not verify")
		}
	} else {
		key, ok := v.Keys[hdr.Kid]
		if hdr.Alg != "EdDSA" || err != nil || !ok || !ed25519.Verify(key, signed, sig) {
			return nil, errors.New("the signature does not verify")
		}
	}
	var c Claims
	body, err := enc.DecodeString(parts[1])
	if err != nil || json.Unmarshal(body, &c) != nil {
		return nil, errors.New("the claims do not parse")
	}
	now := v.Now().Unix()
	path, query, _ := strings.Cut(r.RequestURI, "?") // the request line, as sent
	switch {
	case c.Issuer != "phantom-gateway" || c.Audience != v.API:
		return nil, fmt.Errorf("issued by %q for %q", c.Issuer, c.Audience)
	case c.ExpiresAt-c.IssuedAt > 30 || now < c.IssuedAt-5 || now > c.ExpiresAt+5:
		return nil, errors.New("expired, not yet valid, or too long lived")
	case c.ID == "" || c.Method != r.Method || c.Path != path || c.Query != query:
		return nil, errors.New("the assertion is for another request")
	}
	v.mu.Lock()
	for id, exp := range v.seen {
		if exp+5 < now {
			delete(v.seen, id)
		}
	}
	_, used := v.seen[c.ID]
	if !used {
		if v.seen == nil {
			v.seen = map[string]int64{}
		}
		v.seen[c.ID] = c.ExpiresAt
	}
	v.mu.Unlock()
	if used {
		return nil, errors.New("the assertion was used before")
	}
	if c.PayloadHash != "UNSIGNED-PAYLOAD" {
		want, err := hex.DecodeString(c.PayloadHash)
		if err != nil || len(want) != sha256.Size {
			return nil, errors.New("the payload hash is malformed")
		}
		r.Body = &checkedBody{r: r.Body, want: want}
	}
	return &c, nil
}

// checkedBody fails at the body's end unless its SHA-256 is the signed one.
type checkedBody struct {
	r    io.ReadCloser
	want []byte
	buf  bytes.Buffer // the hash input; a real backend would stream into sha256.New()
}

func (b *checkedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.buf.Write(p[:n])
	if err == io.EOF {
		sum := sha256.Sum256(b.buf.Bytes())
		if subtle.ConstantTimeCompare(sum[:], b.want) != 1 {
			return n, errors.New("the body is not the one the client signed")
		}
	}
	return n, err
}

func (b *checkedBody) Close() error { return b.r.Close() }

// GatewayOnly is the TLS configuration that admits only the gateway: a client
// certificate that chains to the perimeter CA for client use and names gatewayURI.
func GatewayOnly(cert tls.Certificate, perimeterCA *x509.CertPool, gatewayURI string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    perimeterCA,
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			for _, u := range chains[0][0].URIs {
				if u.String() == gatewayURI {
					return nil
				}
			}
			return errors.New("the client certificate does not name the gateway")
		},
	}
}

// Handler answers with who called, once the assertion checks out.
func Handler(v *Verifier) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.Check(r)
		if err != nil {
			http.Error(w, "no valid gateway assertion: "+err.Error(), http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"caller": c.Principal, "vpce": c.VPCEndpoint, "bytes": len(body)})
	})
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "listen address")
	certFile := flag.String("cert", "", "the backend's certificate (PEM)")
	keyFile := flag.String("key", "", "its key (PEM)")
	caFile := flag.String("perimeter-ca", "", "the perimeter CA bundle (phantom-data/ca.pem)")
	keyFileName := flag.String("assertion-key", "", "the API's assertion key file (phantom keys backend), for HS256 assertions (the default)")
	jwksFile := flag.String("jwks", "", "the gateway's JWKS (/.well-known/phantom/jwks.json), for an API with assertion: eddsa")
	api := flag.String("api", "", "the API id this backend serves")
	gatewayURI := flag.String("gateway", "", "the gateway's identity, spiffe://phantom/ACCOUNT/gateway/NAME")
	flag.Parse()
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	v := &Verifier{API: *api, Now: time.Now}
	switch {
	case (*keyFileName == "") == (*jwksFile == ""):
		log.Fatal("give -assertion-key (HS256) or -jwks (EdDSA)")
	case *keyFileName != "":
		data, err := os.ReadFile(*keyFileName)
		if err != nil {
			log.Fatal(err)
		}
		if v.Key, err = ParseKeyFile(data); err != nil {
			log.Fatal(err)
		}
	default:
		jwks, err := os.ReadFile(*jwksFile)
		if err != nil {
			log.Fatal(err)
		}
		if v.Keys, err = ParseJWKS(jwks); err != nil {
			log.Fatal(err)
		}
	}
	srv := &http.Server{Addr: *listen, Handler: Handler(v),
		TLSConfig: GatewayOnly(cert, roots, *gatewayURI), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServeTLS("", ""))
}
