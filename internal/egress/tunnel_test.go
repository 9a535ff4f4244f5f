package egress

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-ch
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// tunnelOf splices two TCP pairs: client <-> (a | b) <-> server.
func tunnelOf(t *testing.T, idle time.Duration) (client, server net.Conn, done chan struct{}) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	done = make(chan struct{})
	go func() { splice(a, b, idle, &sync.Pool{New: newRelayBuffer}); a.Close(); b.Close(); close(done) }()
	return client, server, done
}

func TestTunnelCarriesBothWaysAndHalfCloses(t *testing.T) {
	client, server, done := tunnelOf(t, time.Minute)
	up := make([]byte, 9<<20) // more than one splice chunk
	rand.Read(up)
	go func() {
		client.Write(up)
		client.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(server)
	if err != nil || !bytes.Equal(got, up) {
		t.Fatalf("upstream got %d bytes (%v), want %d intact", len(got), err, len(up))
	}
	// The client half-closed; the server still answers.
	if _, err := server.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	server.(*net.TCPConn).CloseWrite()
	back, err := io.ReadAll(client)
	if err != nil || string(back) != "reply" {
		t.Fatalf("client got %q %v", back, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the tunnel did not end after both sides closed")
	}
}

func TestTunnelIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	client, server, done := tunnelOf(t, idle)
	// Traffic one way only keeps the whole tunnel open past idle.
	stop := time.Now().Add(3 * idle)
	go io.Copy(io.Discard, server)
	for time.Now().Before(stop) {
		if _, err := client.Write([]byte("tick")); err != nil {
			t.Fatalf("write while busy: %v", err)
		}
		time.Sleep(idle / 5)
	}
	select {
	case <-done:
		t.Fatal("a tunnel busy in one direction was closed as idle")
	default:
	}
	// Silence closes it.
	select {
	case <-done:
	case <-time.After(5 * idle):
		t.Fatal("a silent tunnel stayed open")
	}
}

func TestTunnelResetEndsBoth(t *testing.T) {
	client, server, done := tunnelOf(t, time.Minute)
	server.(*net.TCPConn).SetLinger(0)
	server.Close() // RST
	client.Write([]byte("x"))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the tunnel outlived a reset upstream")
	}
}
