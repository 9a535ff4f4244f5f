package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/egress"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// lockedBuffer is stderr shared by the command and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const egressTestSpec = `version: 1
account: "123456789012"
region: us-east-1
audit: {dir: audit}
roles:
  - name: app
    trustPolicy:
      Version: "2012-10-17"
      Statement:
        - {Effect: Allow, Principal: {AWS: "arn:aws:iam::123456789012:root"}, Action: sts:AssumeRole}
nodes:
  - {name: service-a-1, role: app, vpc: vpc-0a1b2c3d4e5f60718, privateIp: 127.0.0.1}
egress:
  - role: app
    allow:
      - {cidr: 127.0.0.1/32, ports: [%d]}
`

// TestEgressCommand runs `phantom egress` in-process against a spec allowing one loopback
// HTTPS server: a client with the node's proxy password (derived from the data
// directory's master key, as STS derives it) reaches it from the node's address, a node
// certificate from the perimeter CA reaches it through --tls-listen, another port and the
// metadata address are refused, each decision is in the egress audit chain, and
// cancelling the command's context (SIGINT) shuts it down cleanly.
func TestEgressCommand(t *testing.T) {
	backend := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	defer backend.Close()
	_, port, _ := net.SplitHostPort(backend.Listener.Addr().String())
	dir := t.TempDir()
	specFile := filepath.Join(dir, "perimeter.yaml")
	var p int
	fmt.Sscan(port, &p)
	if err := os.WriteFile(specFile, fmt.Appendf(nil, egressTestSpec, p), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runEgress(ctx, stderr, egressFlags{
			componentFlags: componentFlags{config: specFile, dataDir: dataDir, listen: "127.0.0.1:0", poll: time.Second, chain: "egress"},
			tlsListen:      "127.0.0.1:0",
			maxTunnels:     16, maxTunnelsPerNode: 16, maxTunnelsPerSource: 16, maxConns: 64, maxConnsPerSource: 64, idle: time.Minute,
			deny: []string{"127.0.0.1:1"},
		})
	}()
	var proxyAddr, tlsAddr string
	for deadline := time.Now().Add(20 * time.Second); proxyAddr == "" || tlsAddr == ""; {
		if time.Now().After(deadline) {
			t.Fatalf("no listening line; stderr:\n%s", stderr)
		}
		select {
		case err := <-done:
			t.Fatalf("phantom egress exited: %v\n%s", err, stderr)
		case <-time.After(20 * time.Millisecond):
		}
		sc := bufio.NewScanner(strings.NewReader(stderr.String()))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "phantom egress: listening on http://"); ok {
				proxyAddr = rest
			}
			if rest, ok := strings.CutPrefix(sc.Text(), "phantom egress: listening on https://"); ok {
				tlsAddr = rest
			}
		}
	}

	mk, err := store.LoadOrCreateMasterKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := keys.DeriveEd25519(mk, keys.EgressPasswords)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := backend.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tr := &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "http", User: url.UserPassword("service-a-1", egress.ProxyPassword(key, egress.Credential{Node: "service-a-1", Addr: netip.MustParseAddr("127.0.0.1"), Issued: time.Now(), Expires: time.Now().Add(time.Hour)})), Host: proxyAddr}),
		TLSClientConfig: tlsCfg,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get(backend.URL)
	if err != nil {
		t.Fatalf("allowed GET through the proxy: %v\n%s", err, stderr)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Fatalf("body %q", body)
	}
	for _, u := range []string{"https://127.0.0.1:1/", "http://169.254.169.254/latest/meta-data/"} {
		resp, err := c.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("GET %s: %d", u, resp.StatusCode)
			}
		} else if !strings.Contains(err.Error(), "Forbidden") {
			t.Fatalf("GET %s: %v", u, err)
		}
	}
	tr.CloseIdleConnections()

	// Through the TLS listener with the node's certificate from the data directory's CA.
	ca := dataDirCA(t, dataDir, "123456789012")
	nodeCert, err := ca.Issue(pki.Request{Identity: pki.Identity{Account: "123456789012", Kind: pki.KindNode, Name: "service-a-1"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg2 := tlsCfg.Clone()
	tlsCfg2.RootCAs.AppendCertsFromPEM(ca.BundlePEM())
	tlsCfg2.Certificates = []tls.Certificate{*nodeCert}
	tr2 := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "https", Host: tlsAddr}), TLSClientConfig: tlsCfg2}
	defer tr2.CloseIdleConnections()
	resp, err = (&http.Client{Transport: tr2, Timeout: 10 * time.Second}).Get(backend.URL)
	if err != nil {
		t.Fatalf("GET through the TLS listener with the node certificate: %v\n%s", err, stderr)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Fatalf("body %q through the TLS listener", body)
	}
	tr2.CloseIdleConnections()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("phantom egress: %v\n%s", err, stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("phantom egress did not shut down")
	}

	var codes []string
	files, _ := filepath.Glob(filepath.Join(dataDir, "audit", "egress", "*.jsonl"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var rec struct{ Event audit.Event }
			if err := json.Unmarshal(line, &rec); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if rec.Event.EventSource != "egress.phantom.amazonaws.com" && rec.Event.EventSource != config.EventSource {
				t.Fatalf("eventSource %q", rec.Event.EventSource)
			}
			codes = append(codes, rec.Event.EventName+":"+rec.Event.ErrorCode)
		}
	}
	// The spec the process started with, then its decisions (127.0.0.1:1 is --deny), the
	// last through the TLS listener.
	want := []string{config.EventSpecLoaded + ":", "Connect:", "Connect:AddressNotAllowed", "Forward:AddressNotAllowed", "Connect:"}
	if strings.Join(codes, " ") != strings.Join(want, " ") {
		t.Fatalf("audit chain holds %v, want %v (files %v)", codes, want, files)
	}
}

func TestEgressCommandUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"egress", "--data-dir", t.TempDir()}, nil, &out, &errb); code != 2 {
		t.Fatalf("without --config: exit %d (%s)", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"egress", "--config", "x.yaml", "--data-dir", t.TempDir(), "--deny", "nope"}, nil, &out, &errb); code != 2 {
		t.Fatalf("bad --deny: exit %d (%s)", code, errb.String())
	}
}
