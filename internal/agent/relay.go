package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/accept"
)

// The egress relay: for nodes on other hosts than the egress proxy, the proxy's TLS
// listener (phantom egress --tls-listen) authenticates the node by its certificate,
// which only the agent holds. The agent listens on loopback for its workloads' proxy
// connections (HTTPS_PROXY=http://127.0.0.1:8171) and relays each one, byte for byte,
// inside a TLS connection to the proxy that presents the node's current certificate. No
// password is handed to workloads or crosses the network, and a renewed certificate is
// used from the next connection on.

// maxRelayed bounds the workload connections relayed at once.
const maxRelayed = 1024

// ServeEgress relays the proxy connections accepted on ln (loopback) to Config.EgressTLS
// until ctx ends; then it closes ln and every relayed connection. The egress proxy URL IMDS
// serves becomes http://ln's address.
func (a *Agent) ServeEgress(ctx context.Context, ln net.Listener) error {
	if a.cfg.EgressTLS == "" {
		ln.Close()
		return errors.New("agent serve egress: no EgressTLS proxy address")
	}
	a.relayAddr.Store(ln.Addr().String())
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
		slots = make(chan struct{}, maxRelayed)
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	defer wg.Wait()
	var backoff accept.Backoff
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if backoff.Retry(err, ctx.Done()) {
				a.log.Warn("egress relay accept failed; retrying", "error", err, "retry_in", backoff.Wait())
				continue
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		backoff.Reset()
		select {
		case slots <- struct{}{}:
		default:
			a.log.Warn("too many relayed egress connections; refusing one", "limit", maxRelayed)
			c.Close()
			continue
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			var up net.Conn
			a.relay(ctx, c, func(u net.Conn) {
				mu.Lock()
				conns[u] = struct{}{}
				mu.Unlock()
				up = u
			})
			mu.Lock()
			delete(conns, c)
			delete(conns, up)
			mu.Unlock()
		}()
	}
}

// relay carries one workload connection to the proxy's TLS listener.
func (a *Agent) relay(ctx context.Context, c net.Conn, track func(net.Conn)) {
	defer c.Close()
	host, _, err := net.SplitHostPort(a.cfg.EgressTLS)
	if err != nil {
		return
	}
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: a.cfg.RequestTimeout, KeepAlive: 30 * time.Second},
		Config: &tls.Config{
			MinVersion:           tls.VersionTLS12,
			RootCAs:              a.client.tr.TLSClientConfig.RootCAs,
			ServerName:           host,
			GetClientCertificate: a.clientCert,
			NextProtos:           []string{"http/1.1"},
		},
	}
	dctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	up, err := d.DialContext(dctx, "tcp", a.cfg.EgressTLS)
	cancel()
	if err != nil {
		a.log.Warn("egress proxy unreachable", "egress_tls", a.cfg.EgressTLS, "error", err)
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	track(up)
	done := make(chan struct{})
	go func() {
		io.Copy(up, c)
		if cw, ok := up.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		close(done)
	}()
	io.Copy(c, up)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	<-done
}
