package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// HopLimitListener wraps ln so every accepted connection sends with IP TTL (IPv4) or
// unicast hop limit (IPv6) hops, as IMDS's "HttpPutResponseHopLimit" does: a response
// cannot be routed beyond that many hops. A connection whose option cannot be set is
// closed, never served with the default TTL.
func HopLimitListener(ln net.Listener, hops int) net.Listener {
	return &hopLimitListener{Listener: ln, hops: hops}
}

type hopLimitListener struct {
	net.Listener
	hops int
}

func (l *hopLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if err := setHopLimit(c, l.hops); err != nil {
			c.Close()
			continue
		}
		return c, nil
	}
}

// Server timeouts and limits of the agent's endpoints: a request is a few headers.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 8 << 10
)

func newServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           http.MaxBytesHandler(h, 4<<10),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// Serve serves IMDS on imds (with the hop limit) and the container endpoint on container
// (either may be nil; both may be the same address only through separate listeners) until
// ctx ends, then shuts both down gracefully.
func (a *Agent) Serve(ctx context.Context, imds, container net.Listener) error {
	var srvs []*http.Server
	var lns []net.Listener
	if imds != nil {
		srvs, lns = append(srvs, newServer(a.IMDSHandler(), a.log)), append(lns, HopLimitListener(imds, HopLimit))
	}
	if container != nil {
		srvs, lns = append(srvs, newServer(a.ContainerHandler(), a.log)), append(lns, container)
	}
	if len(srvs) == 0 {
		return errors.New("agent serve: no listener")
	}
	errc := make(chan error, len(srvs))
	var wg sync.WaitGroup
	for i := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srvs[i].Serve(lns[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("agent serve %s: %w", lns[i].Addr(), err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, s := range srvs {
		_ = s.Shutdown(sctx)
	}
	wg.Wait()
	return err
}
