package sts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

// FuzzNodeRequest: any body either parses into the three members or is refused with an
// error that never echoes the body (it may carry a join token).
func FuzzNodeRequest(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"durationSeconds": 900}`, `{"token": "phjt_00.secret", "csr": "x"}`, `{"csr": "-----BEGIN"}`,
		`{"durationSeconds": "9"}`, `{"roleArn": 1}`, `{} {}`, `[]`, `null`, `{"token": "SECRETSECRET"`, `{"durationSeconds": 1e400}`,
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
	})
}

// FuzzParseCSR: parseNodeCSR never panics and accepts only a self-signed request for a
// P-256 or Ed25519 key.
func FuzzParseCSR(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	good := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add(good)
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
		default:
			if _, ok := csr.PublicKey.([]byte); ok {
				t.Fatal("unexpected key type")
			}
		}
	})
}
