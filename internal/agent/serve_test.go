package agent

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// acceptRecorder hands every connection it accepts to conns as well as to the server.
type acceptRecorder struct {
	net.Listener
	conns chan net.Conn
}

func (l *acceptRecorder) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		select {
		case l.conns <- c:
		default:
		}
	}
	return c, err
}

// TestServeIMDSHopLimit: Serve itself puts the IMDS listener behind HopLimitListener,
// so the connections IMDS answers on send with IP TTL 1 (read back from the socket the
// server wrote its answer on), as "HttpPutResponseHopLimit" 1 does on EC2: a token cannot
// be handed to a host one routing hop away.
func TestServeIMDSHopLimit(t *testing.T) {
	p := newPerimeter(t)
	a, err := New(Config{STS: p.srv.URL, CABundle: p.bundle, StateDir: filepath.Join(t.TempDir(), "state"), JoinToken: p.token(t, "service-a-1"), Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := a.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	imds := &acceptRecorder{Listener: listen(t), conns: make(chan net.Conn, 1)}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, imds, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		a.Close()
	})

	if code, _, _ := req(t, "PUT", "http://"+imds.Addr().String()+"/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds", "60"); code != 200 {
		t.Fatalf("token: status %d", code)
	}
	var c net.Conn
	select {
	case c = <-imds.conns:
	case <-time.After(5 * time.Second):
		t.Fatal("IMDS accepted no connection")
	}
	got, err := hopLimit(c)
	if err != nil {
		t.Fatalf("read the hop limit of the connection IMDS answered on: %v", err)
	}
	if got != HopLimit {
		t.Fatalf("IMDS answered on a connection with hop limit %d, want %d: Serve must wrap the IMDS listener in HopLimitListener", got, HopLimit)
	}
}
