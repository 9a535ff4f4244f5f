package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// dial connects to the first of the checked addresses that answers. It is the only way
// the proxy opens a connection, and it never sees a name.
func (p *Proxy) dial(ctx context.Context, addrs []netip.AddrPort) (net.Conn, netip.AddrPort, error) {
	if len(addrs) == 0 {
		return nil, netip.AddrPort{}, errors.New("no checked address to dial")
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	var errs []error
	for _, a := range addrs {
		c, err := p.cfg.Dialer.DialContext(ctx, "tcp", a.String())
		if err == nil {
			return c, a, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, netip.AddrPort{}, errors.Join(errs...)
}

// checkedKey carries a forwarded request's checked addresses to the transport's dialer.
type checkedKey struct{}

// dialChecked is the forwarding transport's DialContext: it ignores the address the
// transport derived from the URL and dials the addresses the decision checked.
func (p *Proxy) dialChecked(ctx context.Context, _, _ string) (net.Conn, error) {
	addrs, _ := ctx.Value(checkedKey{}).([]netip.AddrPort)
	c, _, err := p.dial(ctx, addrs)
	return c, err
}

// connect carries out an allowed CONNECT: dial the checked address, audit, answer 200 and
// splice until either side closes or the tunnel idles out.
func (p *Proxy) connect(w http.ResponseWriter, q *request) {
	up, addr, err := p.dial(q.r.Context(), q.addrs)
	if err != nil {
		q.deny(http.StatusBadGateway, CodeConnectFailed, "connect to "+q.host.String()+": "+err.Error())
		p.refuse(w, q)
		return
	}
	if err := p.record(q, map[string]any{"connectedAddress": addr.String()}); err != nil {
		up.Close()
		q.deny(http.StatusInternalServerError, CodeAuditFailed, "the decision could not be audited")
		writeStatus(w, q)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "CONNECT needs HTTP/1.1", http.StatusHTTPVersionNotSupported)
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	if !p.track(conn, up) {
		conn.Close()
		up.Close()
		return
	}
	defer p.untrack(conn, up)
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	// Bytes the client sent right after the CONNECT (a TLS ClientHello, say) sit in the
	// server's reader.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := up.Write(b); err != nil {
			return
		}
	}
	splice(conn, up, p.cfg.IdleTimeout, &p.buffers)
}

// writeStatus answers a refusal that could not itself be audited.
func writeStatus(w http.ResponseWriter, q *request) {
	w.Header().Set("X-Phantom-Egress-Error", q.code)
	w.Header().Set("Connection", "close")
	http.Error(w, q.code+": "+q.reason, q.status)
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shut {
		return false
	}
	for _, c := range cs {
		p.tunnels[c] = struct{}{}
	}
	p.wg.Add(1)
	return true
}

// adopt adds a connection to a tunnel already tracked (Close closes it too).
func (p *Proxy) adopt(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shut {
		return false
	}
	p.tunnels[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	for _, c := range cs {
		c.Close()
		delete(p.tunnels, c)
	}
	p.mu.Unlock()
	p.wg.Done()
}

// splice copies both ways until both directions end; the tunnel closes when neither
// direction has carried a byte for idle, or at once when either side fails.
func splice(a, b net.Conn, idle time.Duration, buffers *sync.Pool) {
	t := &tunnel{idle: idle, buffers: buffers}
	t.last.Store(time.Now().UnixNano())
	done := make(chan struct{}, 1)
	go func() { t.pipe(b, a); done <- struct{}{} }()
	t.pipe(a, b)
	<-done
}

type tunnel struct {
	buffers *sync.Pool
	idle    time.Duration
	last    atomic.Int64 // unix nanoseconds of the last byte either way
	broken  atomic.Bool
}

type closeWriter interface{ CloseWrite() error }

// newRelayBuffer is the New of a Proxy's pool of 64 KiB relay buffers.
func newRelayBuffer() any { b := make([]byte, 64<<10); return &b }

// pipe copies src to dst. Each read and write moves the deadlines on and stamps the
// tunnel's last activity; a read that times out while the other direction is busy is
// retried, so idle counts silence in both directions. (io.Copy's splice(2) path would
// save a copy but hides activity until a whole chunk has passed.) EOF half-closes dst
// (the other direction may go on); an error ends both directions.
func (t *tunnel) pipe(dst, src net.Conn) {
	bp := t.buffers.Get().(*[]byte)
	defer t.buffers.Put(bp)
	buf := *bp
	for {
		src.SetReadDeadline(time.Now().Add(t.idle))
		if t.broken.Load() { // after the deadline: a concurrent fail's deadline is not lost
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			t.last.Store(time.Now().UnixNano())
			dst.SetWriteDeadline(time.Now().Add(t.idle))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				t.fail(dst, src)
				return
			}
		}
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && !t.broken.Load() && time.Since(time.Unix(0, t.last.Load())) < t.idle {
			continue
		}
		if err != io.EOF {
			t.fail(dst, src)
			return
		}
		if cw, ok := dst.(closeWriter); ok {
			cw.CloseWrite()
		} else {
			t.fail(dst, src)
		}
		return
	}
}

// fail stops both directions: their pending reads return at once.
func (t *tunnel) fail(a, b net.Conn) {
	t.broken.Store(true)
	now := time.Now()
	a.SetDeadline(now)
	b.SetDeadline(now)
}

// forwardRequest carries out an allowed absolute-form http:// request: audit, then
// forward with a transport that dials only the checked addresses.
func (p *Proxy) forwardRequest(w http.ResponseWriter, q *request) {
	if err := p.record(q, nil); err != nil {
		q.deny(http.StatusInternalServerError, CodeAuditFailed, "the decision could not be audited")
		writeStatus(w, q)
		return
	}
	host := q.host.String()
	if q.host.Addr.Is6() {
		host = "[" + host + "]"
	}
	if q.port != 80 {
		host += ":" + itoa(int(q.port))
	}
	addrs := q.addrs
	// No protocol upgrades: a WebSocket would turn the forward into an unframed tunnel.
	q.r.Header.Del("Upgrade")
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			u := *pr.In.URL
			u.Scheme, u.Host, u.User, u.Fragment, u.RawFragment = "http", host, nil, "", ""
			pr.Out.URL = &u
			pr.Out.Host = host
			pr.Out = pr.Out.WithContext(context.WithValue(pr.Out.Context(), checkedKey{}, addrs))
		},
		Transport: p.forward,
		ErrorLog:  nil,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.log.Info("egress: forward failed", "host", host, "error", err)
			w.Header().Set("X-Phantom-Egress-Error", CodeConnectFailed)
			http.Error(w, CodeConnectFailed+": "+host+" did not answer", http.StatusBadGateway)
		},
	}
	rp.ServeHTTP(w, q.r)
}

func itoa(n int) string {
	var b [8]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
