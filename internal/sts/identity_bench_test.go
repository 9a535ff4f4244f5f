package sts

import (
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"testing"
)

func benchReal(b *testing.B, e *realEnv, p presigned) {
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, p.request())
		if rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkAssumeRoleReal is BenchmarkAssumeRole (same file's baseline: fake issuer) with
// the real issuer: a new ASIA key and secret from crypto/rand and the claims sealed with
// AES-256-GCM; credentials resolved from identity's snapshots.
func BenchmarkAssumeRoleReal(b *testing.B) {
	e := newRealEnv(b)
	benchReal(b, e, presign(b, e.keys["alice"], form("AssumeRole", "RoleArn", appARN, "RoleSessionName", "bench")))
}

// BenchmarkGetCallerIdentityReal is BenchmarkGetCallerIdentity with a long-term key from
// identity's snapshot.
func BenchmarkGetCallerIdentityReal(b *testing.B) {
	e := newRealEnv(b)
	benchReal(b, e, presign(b, e.keys["alice"], form("GetCallerIdentity")))
}

// BenchmarkGetCallerIdentitySessionReal signs with session credentials: every call opens
// the sealed token (and checks revocation) on the request path.
func BenchmarkGetCallerIdentitySessionReal(b *testing.B) {
	e := newRealEnv(b)
	code, body := e.callBytes(b, e.keys["alice"], form("AssumeRole", "RoleArn", appARN, "RoleSessionName", "bench"))
	if code != http.StatusOK {
		b.Fatalf("AssumeRole: %d %s", code, body)
	}
	var x xmlAssume
	if err := xml.Unmarshal(body, &x); err != nil {
		b.Fatal(err)
	}
	benchReal(b, e, presign(b, x.creds(), form("GetCallerIdentity")))
}
