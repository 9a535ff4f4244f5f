package endpoint

// Benchmarks of the forwarding path. BenchmarkForward (caller -> endpoint -> gateway) and
// BenchmarkBaselineProxy (caller -> a bare httputil.ReverseProxy over TLS -> the same
// gateway, with the same mTLS client certificate) run in one go test -bench invocation, so
// their ns/op give the endpoint's overhead as a ratio. BenchmarkHandler measures the
// endpoint's own per-request work without the network.
//
//	go test ./internal/endpoint/ -run XXX -bench . -benchmem

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// benchGateway answers like a gateway with a small JSON body, requiring the endpoint's
// client certificate.
func benchGateway(b *testing.B, p *testPKI) *httptest.Server {
	body := []byte(`{"orders":[{"id":"1","item":"book"}],"next":null}`)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{*p.gwCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pool,
	}
	srv.Config.ErrorLog = quietLog()
	srv.StartTLS()
	b.Cleanup(srv.Close)
	return srv
}

func benchClient(b *testing.B, p *testPKI) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConnsPerHost: 256,
		DisableCompression:  true,
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func runLoad(b *testing.B, c *http.Client, base string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", base+"/prod/orders?limit=10", nil)
			req.Host = ordersHost
			req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261129/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000")
			req.Header.Set("X-Amz-Date", "20261129T000000Z")
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

func BenchmarkForward(b *testing.B) {
	p := newTestPKI(b)
	gw := benchGateway(b, p)
	h := newHarness(b, p, harnessOpts{gateways: []string{gw.Listener.Addr().String()}})
	runLoad(b, benchClient(b, p), "https://"+h.addr)
}

func BenchmarkBaselineProxy(b *testing.B) {
	p := newTestPKI(b)
	gw := benchGateway(b, p)
	target, _ := url.Parse(gw.URL)
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{*p.clientCert}, ServerName: "127.0.0.1"},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConnsPerHost: 2048,
	}
	b.Cleanup(tr.CloseIdleConnections)
	proxy := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host },
		Transport:  tr,
		BufferPool: newBufferPool(), // as the endpoint's: the comparison is of everything else
	}
	srv := httptest.NewUnstartedServer(proxy)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{*p.serverCert}}
	srv.Config.ErrorLog = quietLog()
	srv.StartTLS()
	b.Cleanup(srv.Close)
	runLoad(b, benchClient(b, p), srv.URL)
}

// stubTransport answers every request at once, so BenchmarkHandler measures the endpoint.
type stubTransport struct{ body string }

func (s stubTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(s.body)),
		ContentLength: int64(len(s.body)),
		Request:       r,
	}, nil
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

func BenchmarkHandler(b *testing.B) {
	p := newTestPKI(b)
	h := newHarness(b, p, harnessOpts{gateways: []string{"127.0.0.1:1"}})
	h.ep.proxy.Transport = stubTransport{body: `{"orders":[]}`}
	ci := &connInfo{srcIP: []string{"127.0.0.1"}, tlsVersion: []string{"TLSv1.3"}, tlsCipher: []string{"TLS_AES_128_GCM_SHA256"}}
	ci.src, ci.localPort = netip.MustParseAddrPort("127.0.0.1:50000"), h.port
	ctx := context.WithValue(context.Background(), connInfoKey{}, ci)
	u, _ := url.ParseRequestURI("/prod/orders?limit=10")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := &http.Request{
			Method: "GET", URL: u, RequestURI: "/prod/orders?limit=10", Host: ordersHost, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"X-Amz-Date": {"20261129T000000Z"}, "Authorization": {"AWS4-HMAC-SHA256 x"}},
			Body:   http.NoBody, TLS: &tls.ConnectionState{Version: tls.VersionTLS13},
		}
		w := &discardWriter{h: http.Header{}}
		h.ep.ServeHTTP(w, r.WithContext(ctx))
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}

// The data path as DESIGN draws it, against the bare proxy it has to keep up with:
// BenchmarkPerimeter sends one SDK-signed POST (signed once; SigV4 allows the replay within
// the clock skew) through endpoint -> real gateway (SigV4, IAM, resource policy, audit into
// memory, Ed25519 assertion) -> backend; BenchmarkPerimeterBaseline sends it through one
// bare TLS httputil.ReverseProxy to the same kind of backend.
func perimeterBackend(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"orders":[{"id":"1","item":"book"}],"next":null}`)
}

func runSigned(b *testing.B, c *http.Client, base string, tmpl *http.Request) {
	body := `{"item":"book"}`
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", base+"/prod/orders?x=1", strings.NewReader(body))
			req.Host = tmpl.Host
			req.Header = tmpl.Header.Clone()
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

func BenchmarkPerimeter(b *testing.B) {
	pm := newPerimeter(b, perimeterBackend)
	pm.gwAudit.discard = true
	runSigned(b, benchClient(b, pm.pki), "https://"+pm.ep.addr, signedOrders(b, "https://"+pm.ep.addr))
}

func BenchmarkPerimeterBaseline(b *testing.B) {
	p := newTestPKI(b)
	backend := httptest.NewServer(http.HandlerFunc(perimeterBackend))
	b.Cleanup(backend.Close)
	target, _ := url.Parse(backend.URL)
	tr := &http.Transport{MaxIdleConnsPerHost: 2048}
	b.Cleanup(tr.CloseIdleConnections)
	srv := httptest.NewUnstartedServer(&httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host },
		Transport:  tr,
		BufferPool: newBufferPool(),
	})
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{*p.serverCert}}
	srv.Config.ErrorLog = quietLog()
	srv.StartTLS()
	b.Cleanup(srv.Close)
	runSigned(b, benchClient(b, p), srv.URL, signedOrders(b, srv.URL))
}

// BenchmarkLocal measures the endpoint's per-request work on the Local path (an endpoint
// in the gateway's process, the handover in memory): a signed-looking request on a
// connection whose TLS server name binds the API goes through ServeHTTP to a Local
// gateway that answers at once. BenchmarkLocalBaseline hands the same request to the same
// func directly; the difference in ns/op and allocs/op is the endpoint's.
//
//	go test ./internal/endpoint/ -run XXX -bench 'Local' -benchmem -count 5
func BenchmarkLocal(b *testing.B) {
	h := newHarness(b, newTestPKI(b), harnessOpts{gateways: []string{"127.0.0.1:1"}, local: true})
	var last Handover
	h.ep.cfg.Local = func(w http.ResponseWriter, r *http.Request, ho Handover) {
		last = ho
		localAnswer(w, r, ho)
	}
	ci := &connInfo{srcIP: []string{"127.0.0.1"}, tlsVersion: []string{"TLSv1.3"}, tlsCipher: []string{"TLS_AES_128_GCM_SHA256"}}
	ci.src, ci.localPort, ci.sni = netip.MustParseAddrPort("127.0.0.1:50000"), h.port, ordersHost
	ci.version, ci.cipher = tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256
	runLocal(b, context.WithValue(context.Background(), connInfoKey{}, ci), h.ep.ServeHTTP)
	if last.APIID != apiOrders || last.Endpoint != testVPCE || last.SourceIP != ci.src.Addr() {
		b.Fatalf("handover %+v", last)
	}
}

func BenchmarkLocalBaseline(b *testing.B) {
	ho := Handover{Endpoint: testVPCE, SourceIP: netip.MustParseAddr("127.0.0.1"), APIID: apiOrders, TLSVersion: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}
	runLocal(b, context.Background(), func(w http.ResponseWriter, r *http.Request) { localAnswer(w, r, ho) })
}

// localAnswer is a Local gateway that answers at once.
func localAnswer(w http.ResponseWriter, _ *http.Request, _ Handover) {
	w.WriteHeader(http.StatusOK)
}

// runLocal serves, per iteration, a request shaped like one from an AWS SDK: the headers
// the server would have parsed, including X-Phantom-* and forwarding headers to strip.
func runLocal(b *testing.B, ctx context.Context, serve func(http.ResponseWriter, *http.Request)) {
	u, _ := url.ParseRequestURI("/prod/orders?limit=10")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := &http.Request{
			Method: "GET", URL: u, RequestURI: "/prod/orders?limit=10", Host: ordersHost, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{
				"X-Amz-Date":           {"20261129T000000Z"},
				"Authorization":        {"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261129/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000"},
				"X-Amz-Content-Sha256": {"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
				"X-Amz-Security-Token": {"FwoGZXIvYXdzEBYaDEXAMPLE"},
				"User-Agent":           {"aws-sdk-go-v2/1.30.0 os/linux lang/go#1.26"},
				"Accept":               {"application/json"},
				"Accept-Encoding":      {"gzip"},
				"X-Phantom-Source-Ip":  {"10.9.9.9"},
				"X-Forwarded-For":      {"10.9.9.9"},
			},
			Body: http.NoBody, TLS: &tls.ConnectionState{Version: tls.VersionTLS13},
		}
		w.code = 0
		serve(w, r.WithContext(ctx))
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}
