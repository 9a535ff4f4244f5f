package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// benchRequest is the benchmarked request: a POST with a 1 KiB body, a few headers and
// query parameters, as an SDK sends to an API.
func benchRequest(tb testing.TB) (*http.Request, []byte) {
	tb.Helper()
	body := bytes.Repeat([]byte(`{"k":"0123456789abcdef"}`), 43)[:1024]
	r, err := http.NewRequest(http.MethodPost, "https://api.example.com/prod/v1/orders/42/items?limit=10&cursor=abc%3D&filter=state%20open", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Amz-Target", "Orders.AddItem")
	r.Header.Set("X-Request-Id", "7c0e9c3e-2f1c-4b7d-9a57-0d3f4f6f2a11")
	r.Header.Set("Accept", "application/json")
	return r, body
}

// BenchmarkVerify: steady-state verification of a signed request (signing key cached).
func BenchmarkVerify(b *testing.B) {
	r, body := benchRequest(b)
	sdkSign(b, r, body, signOpts{})
	v := newTestVerifier(b, nil)
	ctx := context.Background()
	if _, err := v.Verify(ctx, r, body); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, r, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSDKSign is the baseline: aws-sdk-go-v2 signing the same request, including the
// body hash every signer has to compute (SignHTTP takes it as an argument).
func BenchmarkSDKSign(b *testing.B) {
	r, body := benchRequest(b)
	signer := v4.NewSigner()
	creds := aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: testSecret}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		sum := sha256.Sum256(body)
		if err := signer.SignHTTP(ctx, creds, r, hex.EncodeToString(sum[:]), testService, testRegion, testNow); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// The baseline must produce what the verifier accepts, or the comparison is moot.
	if _, err := newTestVerifier(b, nil).Verify(ctx, r, body); err != nil {
		b.Fatal(err)
	}
}

// TestVerifyCostRatio runs both benchmarks and logs the ratio Verify/SDKSign (goal: <= 1.0).
// It is a measurement, not a pass/fail check on a shared machine: PHANTOM_BENCH_RATIO=1
// enables it.
func TestVerifyCostRatio(t *testing.T) {
	if os.Getenv("PHANTOM_BENCH_RATIO") != "1" {
		t.Skip("set PHANTOM_BENCH_RATIO=1 to measure Verify against aws-sdk-go-v2 SignHTTP")
	}
	verify := testing.Benchmark(BenchmarkVerify)
	sign := testing.Benchmark(BenchmarkSDKSign)
	report := func(name string, r testing.BenchmarkResult) {
		t.Logf("%-8s %8d ns/op %6d B/op %4d allocs/op", name, r.NsPerOp(), r.AllocedBytesPerOp(), r.AllocsPerOp())
	}
	report("Verify", verify)
	report("SDKSign", sign)
	ratio := float64(verify.NsPerOp()) / float64(sign.NsPerOp())
	t.Logf("ratio Verify/SDKSign = %.2f (goal <= 1.0)", ratio)
}
