package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/egress"
)

// serveChild serves one proxy on a loopback port, prints "ADDR CREDENTIALS AUDITDIR"
// (the Basic credentials it accepts, base64; AUDITDIR - for none) and serves until stdin
// ends.
func serveChild(kind, target string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var h http.Handler
	var auth, dir string
	var closeFn func()
	switch kind {
	case "bare":
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte("node:secret"))
		h, dir, closeFn = bareProxy(target, auth), "-", func() {}
	case "phantom":
		if h, auth, dir, closeFn, err = phantomProxy(ln, target); err != nil {
			return err
		}
	default:
		return fmt.Errorf("-serve %q: want bare or phantom", kind)
	}
	defer closeFn()
	fmt.Printf("%s %s %s\n", ln.Addr(), strings.TrimPrefix(auth, "Basic "), dir)
	if kind == "bare" {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
	}
	io.Copy(io.Discard, os.Stdin)
	if dir != "-" {
		os.RemoveAll(filepath.Dir(dir))
	}
	return nil
}

// bareProxy is the baseline: a CONNECT proxy that checks one Proxy-Authorization value
// and one allowed host:port, dials, and copies both ways. No audit, no rules, no limits.
func bareProxy(target, auth string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Proxy-Authorization")), []byte(auth)) != 1 {
			w.Header().Set("Proxy-Authenticate", `Basic realm="bare"`)
			http.Error(w, "credentials", http.StatusProxyAuthRequired)
			return
		}
		if r.Host != target {
			http.Error(w, "not allowed", http.StatusForbidden)
			return
		}
		up, err := net.DialTimeout("tcp", target, 10*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			up.Close()
			return
		}
		io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
		done := make(chan struct{}, 2)
		go func() { io.Copy(up, conn); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
		go func() { io.Copy(conn, up); conn.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
		<-done
		<-done
		conn.Close()
		up.Close()
	})
}

// benchSpec: node app-1 on 127.0.0.1 of role app, which may reach the target's port.
const benchSpec = `version: 1
account: "123456789012"
region: us-east-1
roles:
  - name: app
    trustPolicy: {Version: "2012-10-17", Statement: [{Effect: Allow, Principal: {AWS: "arn:aws:iam::123456789012:root"}, Action: sts:AssumeRole}]}
nodes:
  - {name: app-1, role: app, vpc: vpc-0a1b2c3d4e5f60718, privateIp: 127.0.0.1}
egress:
  - role: app
    allow:
      - {cidr: 127.0.0.1/32, ports: [%d]}
`

// phantomProxy serves Phantom's egress proxy on ln (it starts serving itself), with an
// audit chain in a temporary directory.
func phantomProxy(ln net.Listener, target string) (h http.Handler, auth, dir string, closeFn func(), err error) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		return nil, "", "", nil, err
	}
	spec, err := config.Parse("bench.yaml", fmt.Appendf(nil, benchSpec, ap.Port()))
	if err != nil {
		return nil, "", "", nil, err
	}
	root, err := os.MkdirTemp("", "phantom-bench-egress-")
	if err != nil {
		return nil, "", "", nil, err
	}
	_, signer, _ := ed25519.GenerateKey(rand.Reader)
	alog, err := audit.Open(audit.Config{Dir: root, Chain: "egress", Signer: signer})
	if err != nil {
		return nil, "", "", nil, err
	}
	// STS's password key; the proxy holds its public half.
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	px, err := egress.New(egress.Config{
		Spec:        func() *config.Spec { return spec },
		PasswordKey: key.Public().(ed25519.PublicKey),
		Auditor:     alog,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, "", "", nil, err
	}
	go px.Serve(context.Background(), ln)
	auth = "Basic " + base64.StdEncoding.EncodeToString([]byte("app-1:"+password(key)))
	return px, auth, filepath.Join(root, "egress"), func() { px.Close(); alog.Close() }, nil
}

// password is node app-1's proxy password, as STS hands it with a role session.
func password(key ed25519.PrivateKey) string {
	now := time.Now()
	return egress.ProxyPassword(key, egress.Credential{Node: "app-1", Addr: netip.MustParseAddr("127.0.0.1"), Issued: now, Expires: now.Add(time.Hour)})
}

// auditSize counts the records and bytes of the audit segments in dir.
func auditSize(dir string) (records, size int64) {
	if dir == "" {
		return 0, 0
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		records += int64(bytes.Count(b, []byte{'\n'}))
		size += int64(len(b))
	}
	return records, size
}
