package agent

import (
	"context"
	"io"
	"net/http"
	"testing"
)

// BenchmarkIMDSCredentials: one SDK-style credential fetch over loopback HTTP (PUT token,
// GET role, GET credentials), as botocore does it; the baseline is the bare GET of the
// credentials document with a token already held.
func BenchmarkIMDSCredentials(b *testing.B) {
	p := newPerimeter(b)
	a := startAgent(b, p, "service-a-1", nil)
	hc := &http.Client{}
	do := func(method, url string, hdr ...string) {
		r, _ := http.NewRequest(method, url, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := hc.Do(r)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("%s %s: %v", method, url, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tok := imdsToken(b, a, "21600")
	b.Run("token+role+credentials", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, _ := http.NewRequest("PUT", a.imds+tokenPath, nil)
			r.Header.Set(ttlHeader, "21600")
			resp, err := hc.Do(r)
			if err != nil {
				b.Fatal(err)
			}
			t, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			do("GET", a.imds+credsPath, tokenHeader, string(t))
			do("GET", a.imds+credsPath+"app", tokenHeader, string(t))
		}
	})
	b.Run("baseline/credentials only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			do("GET", a.imds+credsPath+"app", tokenHeader, tok)
		}
	})
	b.Run("container", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			do("GET", a.container+ContainerPath, "Authorization", a.ContainerToken())
		}
	})
}

// BenchmarkRefresh: one credentials call to the STS node API (mTLS, trust policy,
// sealing, audit) from the agent, over a kept-alive connection.
func BenchmarkRefresh(b *testing.B) {
	p := newPerimeter(b)
	a := startAgent(b, p, "service-a-1", nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := a.refresh(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
