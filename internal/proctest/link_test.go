package proctest

import (
	"net"
	"net/url"
	"sync"
	"testing"
)

// link is a TCP path to a server that can be cut like a network partition: while cut, it
// holds every byte either way and answers no new connection (the kernel accepts it; no
// byte of the server's comes back), and once restored it delivers what it held, as TCP
// does when a partition heals.
type link struct {
	dsn    string // the store URL through the link
	ln     net.Listener
	target string

	mu     sync.Mutex
	open   *sync.Cond
	isCut  bool
	closed bool
	conns  []net.Conn
}

// newLink listens on a loopback port for connections to dsn's server and returns the
// link, with dsn pointing at it; it is closed at the end of the test.
func newLink(t *testing.T, dsn string) *link {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{ln: ln, target: u.Host}
	l.open = sync.NewCond(&l.mu)
	u.Host = ln.Addr().String()
	l.dsn = u.String()
	go l.serve()
	t.Cleanup(l.close)
	return l
}

func (l *link) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			if !l.track(c) || !l.wait() {
				c.Close()
				return
			}
			s, err := net.Dial("tcp", l.target)
			if err != nil || !l.track(s) {
				c.Close()
				return
			}
			go l.pipe(s, c)
			l.pipe(c, s)
		}()
	}
}

// pipe copies src to dst, holding what it read while the link is cut.
func (l *link) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !l.wait() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// wait blocks while the link is cut; false once it is closed.
func (l *link) wait() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.isCut && !l.closed {
		l.open.Wait()
	}
	return !l.closed
}

func (l *link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns = append(l.conns, c)
	return !l.closed
}

func (l *link) cut() {
	l.mu.Lock()
	l.isCut = true
	l.mu.Unlock()
}

func (l *link) restore() {
	l.mu.Lock()
	l.isCut = false
	l.mu.Unlock()
	l.open.Broadcast()
}

func (l *link) close() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	l.open.Broadcast()
	l.ln.Close()
	for _, c := range conns {
		c.Close()
	}
}
