package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/authzmsg"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/datadir"
	"github.com/phantom-perimeter/phantom/internal/endpoint"
	"github.com/phantom-perimeter/phantom/internal/gateway"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

const (
	benchAccount  = "123456789012"
	benchRegion   = "us-east-1"
	benchAPI      = "b3nch4p1id"
	benchEndpoint = "vpce-0b0e0c0d0a0f00001"
	benchPath     = "/prod/items"
)

// benchSpec is the perimeter under load: one user allowed to invoke the API, whose
// resource policy and endpoint policy both have something to evaluate.
const benchSpec = `version: 1
account: "%[1]s"
region: %[2]s
gateway: {name: gateway, listen: "%[3]s"}
users:
  - name: bench
    policies:
      - name: invoke
        document:
          Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: execute-api:Invoke
              Resource: "arn:aws:execute-api:%[2]s:%[1]s:%[4]s/prod/GET/items"
apis:
  - id: %[4]s
    name: bench
    stages: [prod]
    backends:
      items: {url: "%[5]s", timeout: 10s}
    routes:
      - {path: /items, methods: [GET], backend: items}
    resourcePolicy:
      Version: "2012-10-17"
      Statement:
        - Effect: Deny
          Principal: "*"
          Action: execute-api:Invoke
          Resource: "arn:aws:execute-api:%[2]s:%[1]s:%[4]s/*"
          Condition:
            StringNotEquals: {"aws:PrincipalAccount": "%[1]s"}
endpoints:
  - id: %[6]s
    vpc: vpc-0b0e0c0d0a0f00001
    listen: ["%[7]s"]
    ingress:
      - {protocol: tcp, ports: "%[8]d", cidrs: [127.0.0.0/8]}
    apis: [%[4]s]
    policy:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Principal: "*"
          Action: execute-api:Invoke
          Resource: "*"
          Condition:
            StringEquals: {"aws:PrincipalAccount": "%[1]s"}
`

type perimeter struct {
	creds   aws.Credentials
	targets []target
	closers []func()
}

func (p *perimeter) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

func listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func newPerimeter(ctx context.Context, dir string, rnd io.Reader, log *slog.Logger) (_ *perimeter, err error) {
	p := &perimeter{}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	lns := make([]net.Listener, 4) // backend, proxy, gateway, endpoint
	for i := range lns {
		if lns[i], err = listen(); err != nil {
			return nil, err
		}
		ln := lns[i]
		p.closers = append(p.closers, func() { ln.Close() })
	}
	backendLn, proxyLn, gwLn, epLn := lns[0], lns[1], lns[2], lns[3]
	epAddr := epLn.Addr().(*net.TCPAddr).AddrPort()
	spec, err := config.Parse("bench.yaml", fmt.Appendf(nil, benchSpec, benchAccount, benchRegion, gwLn.Addr(), benchAPI,
		"http://"+backendLn.Addr().String(), benchEndpoint, epAddr, epAddr.Port()))
	if err != nil {
		return nil, fmt.Errorf("bench spec: %w", err)
	}
	current := func() *config.Spec { return spec }

	// The data directory is opened as every process opens one (a master key made in it).
	db, master, err := datadir.OpenStore(ctx, datadir.StoreOptions{DataDir: dir})
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, func() { db.Close() })
	ids, err := datadir.OpenIdentity(ctx, db, master, identity.Config{Account: benchAccount, Logger: log})
	if err == nil {
		_, err = ids.RotateSealingKey(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	key, err := ids.CreateAccessKey(ctx, "bench")
	if err != nil {
		return nil, err
	}
	p.creds = aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret}

	ca, err := pki.New(pki.Config{Dir: filepath.Join(dir, "ca"), Account: benchAccount})
	if err != nil {
		return nil, err
	}
	verifier, err := pki.NewVerifier(ca.BundlePEM(), benchAccount, nil)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.BundlePEM())
	issue := func(kind pki.Kind, name string, client bool) (*tls.Certificate, error) {
		return ca.Issue(pki.Request{
			Identity: pki.Identity{Account: benchAccount, Kind: kind, Name: name},
			DNSNames: []string{"localhost"}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			Server: true, Client: client, Validity: time.Hour,
		})
	}

	// The backend: a small JSON answer, as an internal service would give.
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"items":[{"id":"1","name":"widget"}]}`)
	})}
	go backend.Serve(backendLn)
	p.closers = append(p.closers, func() { backend.Close() })
	backendURL, _ := url.Parse("http://" + backendLn.Addr().String())

	// (a) a bare Go TLS reverse proxy, stage prefix stripped as the gateway does.
	proxyCert, err := issue(pki.KindGateway, "bare-proxy", false)
	if err != nil {
		return nil, err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(backendURL)
			r.Out.URL.Path = r.In.URL.Path[len("/prod"):]
		},
		Transport: backendTransport(),
		ErrorLog:  quietLog(),
	}
	p.serve(proxyLn, rp, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*proxyCert}})

	// (b) the gateway, with a real audit chain.
	_, signer, err := ed25519.GenerateKey(rnd)
	if err != nil {
		return nil, err
	}
	// The gateway holds its component's keys only, as a gateway host would.
	ring, err := master.Restrict(keys.Gateway)
	if err != nil {
		return nil, err
	}
	gwLog, err := audit.Open(audit.Config{Dir: filepath.Join(dir, "audit"), Chain: "gateway", Signer: signer, Logger: log})
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, func() { gwLog.Close() })
	epLog, err := audit.Open(audit.Config{Dir: filepath.Join(dir, "audit"), Chain: "endpoint-" + benchEndpoint, Signer: signer, Logger: log})
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, func() { epLog.Close() })
	msgKey, err := ring.Key(keys.AuthzMessages)
	if err != nil {
		return nil, err
	}
	messages, err := authzmsg.NewSealer(msgKey, nil)
	if err != nil {
		return nil, err
	}
	assertKey, err := ring.Ed25519(keys.Assertion)
	if err != nil {
		return nil, err
	}
	gw, err := gateway.New(gateway.Config{
		Name: "gateway", Spec: current, Credentials: ids, Verifier: verifier, Auditor: gwLog,
		Messages: messages, AssertionKey: assertKey, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	gwCert, err := issue(pki.KindGateway, "gateway", false)
	if err != nil {
		return nil, err
	}
	p.serve(gwLn, gw, gw.TLSConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return gwCert, nil }))

	// (c) the endpoint in front of the gateway.
	epCert, err := issue(pki.KindEndpoint, benchEndpoint, true)
	if err != nil {
		return nil, err
	}
	ep, err := endpoint.New(endpoint.Config{
		ID: benchEndpoint, Spec: current,
		ServerCert: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return epCert, nil },
		ClientCert: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return epCert, nil },
		Verifier:   verifier, Gateways: []string{gwLn.Addr().String()}, Auditor: epLog, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	epCtx, stop := context.WithCancel(context.Background())
	go ep.Serve(epCtx, epLn)
	p.closers = append(p.closers, func() {
		stop()
		sctx, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		ep.Shutdown(sctx)
	})

	client := func() *http.Client {
		return &http.Client{Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			MaxIdleConns:        4096,
			MaxIdleConnsPerHost: 4096,
			IdleConnTimeout:     time.Minute,
		}}
	}
	p.targets = []target{
		{name: "(a) bare TLS proxy", url: "https://" + proxyLn.Addr().String() + benchPath, client: client()},
		{name: "(b) gateway", url: "https://" + gwLn.Addr().String() + benchPath, client: client()},
		{name: "(c) endpoint+gateway", url: "https://" + epLn.Addr().String() + benchPath, client: client()},
	}
	// Direct calls (b) come without aws:SourceVpce; the resource policy only requires the
	// account, so all three serve the same request.
	for _, t := range p.targets {
		if err := call(ctx, v4.NewSigner(), p.creds, t); err != nil && !errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("first request through %s: %w", t.name, err)
		}
	}
	return p, nil
}

func backendTransport() *http.Transport {
	return &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute}
}

func (p *perimeter) serve(ln net.Listener, h http.Handler, cfg *tls.Config) {
	srv := &http.Server{Handler: h, TLSConfig: cfg, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.New(slog.NewTextHandler(io.Discard, nil)).Handler(), slog.LevelError)}
	go srv.ServeTLS(ln, "", "")
	p.closers = append(p.closers, func() { srv.Close() })
}

// quietLog drops the proxy's "context canceled" lines at the end of each measurement.
func quietLog() *stdlog.Logger { return stdlog.New(io.Discard, "", 0) }
