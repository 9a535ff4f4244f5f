package sigv4

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/sigv4/rawhttp"
)

// TestVerifyCurlCaptures: the requests rawhttp rebuilds from curl's debug output (its
// testdata: curl 7.88, --aws-sigv4 with AWS's example key at 20261207T051826Z) verify, byte
// for byte: HTTP/2 and HTTP/1.1, -v, --trace-ascii (an Authorization split over three
// dump lines, a POST body) and --trace.
func TestVerifyCurlCaptures(t *testing.T) {
	const akid, secret = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	signed := time.Date(2026, 12, 7, 5, 18, 26, 0, time.UTC)
	v := newTestVerifier(t, staticCreds{akid: {AccessKeyID: akid, SecretAccessKey: secret, Principal: "arn:aws:iam::123456789012:user/demo"}},
		func(c *Config) { c.Region, c.Now = "us-east-1", func() time.Time { return signed } })
	for _, name := range []string{"curl-v-http2.txt", "trace-ascii-http2-post.txt", "trace-http1.txt"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("rawhttp", "testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			r, body, _, err := rawhttp.ParseCapture(data)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(context.Background(), r, body); err != nil {
				t.Fatalf("curl's own request does not verify: %v\n%s", err, describe(err))
			}
		})
	}
}
