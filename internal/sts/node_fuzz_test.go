package sts

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/nodeapi"
)

// FuzzNodeRequest: any body either parses into nodeapi.Request's five members or is refused with an
// error that never echoes the body (it may carry a join token). An accepted body is empty
// or one JSON object naming no other member, its values are what encoding/json reads
// from it, and the request written back as JSON parses to the same request.
func FuzzNodeRequest(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"durationSeconds": 900}`, `{"token": "phjt_00.secret", "csr": "x"}`, `{"csr": "-----BEGIN"}`,
		`{"durationSeconds": "9"}`, `{"roleArn": 1}`, `{"accessKeyId": "ASIA0", "sessionToken": "t"}`, `{} {}`, `[]`, `null`, `{"token": "SECRETSECRET"`, `{"durationSeconds": 1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseNodeRequest(body)
		if err != nil {
			if req != nil {
				t.Fatal("a request and an error")
			}
			if len(body) >= 12 && strings.Contains(err.Error(), string(body)) {
				t.Fatalf("error %q echoes the body", err)
			}
			return
		}
		if req == nil {
			t.Fatal("nil request without an error")
		}
		if len(bytes.TrimSpace(body)) == 0 {
			if *req != (nodeapi.Request{}) {
				t.Fatalf("an empty body gave %+v", req)
			}
			return
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(body, &members); err != nil {
			t.Fatalf("accepted a body that is not one JSON object: %v", err)
		}
		for k := range members {
			if !slices.ContainsFunc(nodeRequestMembers, func(m string) bool { return strings.EqualFold(k, m) }) {
				t.Fatalf("accepted a body with member %q", k)
			}
		}
		var plain nodeapi.Request
		if err := json.Unmarshal(body, &plain); err != nil {
			t.Fatalf("encoding/json refuses what was accepted: %v", err)
		}
		if !reflect.DeepEqual(plain, *req) {
			t.Fatalf("parsed %+v, encoding/json reads %+v", *req, plain)
		}
		out, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		back, err := parseNodeRequest(out)
		if err != nil || !reflect.DeepEqual(back, req) {
			t.Fatalf("%s parses to %+v, %v; want %+v", out, back, err, req)
		}
	})
}

// nodeRequestMembers are the members the node API's body may name (watch sends the
// session it watches; enroll, renew and credentials the others).
var nodeRequestMembers = []string{"token", "csr", "durationSeconds", "accessKeyId", "sessionToken"}

// FuzzParseCSR: parseNodeCSR never panics and accepts only a self-signed request for a
// P-256 or Ed25519 key, given as exactly one PEM CERTIFICATE REQUEST block with nothing
// but whitespace around it.
func FuzzParseCSR(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	good := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add(good)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, edKey)
	f.Add(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: edDER})))
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, p384)
	f.Add(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: p384DER})))
	f.Add(good + "\n\n")
	f.Add(good + good)
	f.Add(strings.Replace(good, "CERTIFICATE REQUEST", "CERTIFICATE", 2))
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, text string) {
		csr, err := parseNodeCSR(text)
		if err != nil {
			return
		}
		if csr.CheckSignature() != nil {
			t.Fatal("accepted a request whose signature does not verify")
		}
		switch k := csr.PublicKey.(type) {
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				t.Fatal("accepted a non-P-256 ECDSA key")
			}
		case ed25519.PublicKey:
		default:
			t.Fatalf("accepted a %T key", csr.PublicKey)
		}
		block, rest := pem.Decode([]byte(text))
		if block == nil || block.Type != "CERTIFICATE REQUEST" || len(bytes.TrimSpace(rest)) != 0 || !bytes.Equal(block.Bytes, csr.Raw) {
			t.Fatalf("accepted %q, which is not exactly one PEM CERTIFICATE REQUEST block holding the request", text)
		}
	})
}

// FuzzComponentRequest: the component API's body parser takes one JSON object of its
// four string members and nothing else, and never echoes the body (it may carry a join
// token) in an error.
func FuzzComponentRequest(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"token": "phjt_00.secret", "csr": "x"}`, `{"publicKey": "AAAA", "chain": "gateway-1"}`,
		`{"chain": 1}`, `{"durationSeconds": 9}`, `{} {}`, `[]`, `null`, `{"token": "SECRETSECRET"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseComponentRequest(body)
		if err != nil {
			if req != nil {
				t.Fatal("a request and an error")
			}
			if len(body) >= 12 && strings.Contains(err.Error(), string(body)) {
				t.Fatalf("error %q echoes the body", err)
			}
			return
		}
		if req == nil {
			t.Fatal("nil request without an error")
		}
	})
}
