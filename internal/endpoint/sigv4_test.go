package endpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/sigv4"
)

type staticCreds map[string]sigv4.Credential

func (s staticCreds) LookupCredential(_ context.Context, id, _ string) (sigv4.Credential, error) {
	c, ok := s[id]
	if !ok {
		return sigv4.Credential{}, sigv4.ErrUnknownAccessKey
	}
	return c, nil
}

// TestSigV4SurvivesEndpoint signs requests with aws-sdk-go-v2's signer for the API's host
// and verifies them at the gateway side with internal/sigv4: proof that nothing signed
// (method, path, query, host, headers, body) was altered on the way through the endpoint,
// over HTTP/1.1 and HTTP/2.
func TestSigV4SurvivesEndpoint(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	const akid, secret, token = "ASIAEXAMPLEENDPOINT1", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "IQoJb3JpZ2luX2VjEHoa+example/token=="
	verifier, err := sigv4.New(sigv4.Config{Region: "us-east-1", Service: "execute-api"}, staticCreds{
		akid: {AccessKeyID: akid, SecretAccessKey: secret, SessionToken: token, Principal: "arn:aws:sts::123456789012:assumed-role/app/s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	gw.handler = func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		res, err := verifier.Verify(r.Context(), r, body)
		var se *sigv4.Error
		if errors.As(err, &se) {
			w.WriteHeader(se.HTTPStatus)
			fmt.Fprintf(w, "%s: %s\n%s", se.Code, se.Message, se.CanonicalRequest)
			return
		}
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "verified %s", res.AccessKeyID)
	}
	h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}})
	signer := v4.NewSigner()
	creds := aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret, SessionToken: token}
	tests := []struct {
		name, method, target, body string
		header                     map[string]string
	}{
		{name: "GET with query", method: "GET", target: "/prod/orders?limit=10&after=a%2Fb&empty="},
		{name: "POST with body", method: "POST", target: "/prod/orders", body: `{"item":"book","qty":2}`,
			header: map[string]string{"Content-Type": "application/json", "X-Amz-Meta-Note": "  spaced   value "}},
		{name: "escaped path", method: "GET", target: "/prod/orders/a%20b/c%2Fd"},
		{name: "caller-sent phantom header is stripped, unsigned", method: "DELETE", target: "/prod/orders/1"},
	}
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/h2=%v", tt.name, h2), func(t *testing.T) {
				req, _ := http.NewRequest(tt.method, h.url(tt.target), strings.NewReader(tt.body))
				if tt.body == "" {
					req.Body, req.ContentLength = nil, 0
				}
				req.Host = ordersHost
				for k, v := range tt.header {
					req.Header.Set(k, v)
				}
				sum := sha256.Sum256([]byte(tt.body))
				if err := signer.SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "execute-api", "us-east-1", time.Now()); err != nil {
					t.Fatal(err)
				}
				req.Header.Set("X-Phantom-Source-Ip", "6.6.6.6") // after signing: not covered
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(b) != "verified "+akid {
					t.Errorf("gateway verification: %d %s", resp.StatusCode, b)
				}
				if got := gw.last(t).Header.Get("X-Phantom-Source-Ip"); got != "127.0.0.1" {
					t.Errorf("source ip = %q", got)
				}
			})
		}
	}
}
