// Package natstest runs NATS JetStream servers for tests: embedded in the test process
// (github.com/nats-io/nats-server/v2), each on its own port and store directory.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is an embedded JetStream server that can be stopped and started again on the
// same port and store.
type Server struct {
	t    testing.TB
	opts server.Options
	s    *server.Server
}

// Start starts a JetStream server on 127.0.0.1 on a free port, stopped at the test's end.
func Start(t testing.TB) *Server {
	t.Helper()
	srv := &Server{t: t, opts: server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}}
	srv.start()
	srv.opts.Port = srv.s.Addr().(*net.TCPAddr).Port
	t.Cleanup(srv.Stop)
	return srv
}

func (s *Server) start() {
	s.t.Helper()
	opts := s.opts
	ns, err := server.NewServer(&opts)
	if err != nil {
		s.t.Fatalf("nats server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		s.t.Fatal("nats server not ready in 10s")
	}
	s.s = ns
}

// URL is the server's client URL.
func (s *Server) URL() string { return s.s.ClientURL() }

// Stop stops the server (a no-op when stopped).
func (s *Server) Stop() {
	if s.s != nil {
		s.s.Shutdown()
		s.s.WaitForShutdown()
		s.s = nil
	}
}

// Restart starts the stopped server again, on the same port and store.
func (s *Server) Restart() {
	s.t.Helper()
	s.start()
}
