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

// checkedKey carries a forwarded request's decision to the transport's dialer.
type checkedKey struct{}

// errAuditFailed: the forward connected but its decision could not be recorded.
var errAuditFailed = errors.New("the decision could not be audited")

// dialChecked is the forwarding transport's DialContext: it ignores the address the
// transport derived from the URL and dials the addresses the decision checked. Once
// connected it records the decision with where it connected, so an event that allows a
// forward is never written for one that did not connect; a dial error is left for the
// ErrorHandler to record as the forward's outcome.
func (p *Proxy) dialChecked(ctx context.Context, _, _ string) (net.Conn, error) {
	q, _ := ctx.Value(checkedKey{}).(*request)
	if q == nil {
		return nil, errors.New("no checked address to dial")
	}
	c, addr, err := p.dial(ctx, q.addrs)
	if err != nil {
		return nil, err
	}
	if q.recorded {
		return c, nil // a second connection of the same forward: decided and recorded once
	}
	if err := p.record(q, map[string]any{"connectedAddress": addr.String()}); err != nil {
		c.Close()
		return nil, errAuditFailed
	}
	return c, nil
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
	t := newTunnel(q)
	if !p.track(t, conn) || !t.add(up) {
		conn.Close()
		up.Close()
		return
	}
	defer p.untrack(t)
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

// splice copies both ways until both directions end; the tunnel closes when neither
// direction has carried a byte for idle, or at once when either side fails.
func splice(a, b net.Conn, idle time.Duration, buffers *sync.Pool) {
	t := &pipes{idle: idle, buffers: buffers}
	t.last.Store(time.Now().UnixNano())
	done := make(chan struct{}, 1)
	go func() { t.pipe(b, a); done <- struct{}{} }()
	t.pipe(a, b)
	<-done
}

// pipes is the state both directions of a splice share.
type pipes struct {
	buffers *sync.Pool
	idle    time.Duration
	last    atomic.Int64 // unix nanoseconds of the last byte either way
	broken  atomic.Bool
}

type closeWriter interface{ CloseWrite() error }

// newRelayBuffer is the New of a Proxy's pool of 32 KiB relay buffers, io.Copy's size
// (bench/egress at 256 concurrent tunnels: 69.6 MB peak RSS with 64 KiB, 59.1 MB with
// 32 KiB; throughput within the noise of BenchmarkTunnelThroughput).
func newRelayBuffer() any { b := make([]byte, 32<<10); return &b }

// pipe copies src to dst. Each read and write moves the deadlines on and stamps the
// tunnel's last activity; a read that times out while the other direction is busy is
// retried, so idle counts silence in both directions. (io.Copy's splice(2) path would
// save a copy but hides activity until a whole chunk has passed.) EOF half-closes dst
// (the other direction may go on); an error ends both directions.
func (t *pipes) pipe(dst, src net.Conn) {
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
		if cw, ok := dst.(closeWriter); !ok || cw.CloseWrite() != nil {
			t.fail(dst, src)
		}
		return
	}
}

// fail stops both directions: their pending reads return at once.
func (t *pipes) fail(a, b net.Conn) {
	t.broken.Store(true)
	now := time.Now()
	a.SetDeadline(now)
	b.SetDeadline(now)
}

// forwardRequest carries out an allowed absolute-form http:// request with a transport
// that dials only the checked addresses. The decision is recorded once the connection
// is made (dialChecked), or, when it is not, as the forward's failure: the event says
// what happened.
func (p *Proxy) forwardRequest(w http.ResponseWriter, q *request) {
	host := q.host.String()
	if q.host.Addr.Is6() {
		host = "[" + host + "]"
	}
	if q.port != 80 {
		host += ":" + itoa(int(q.port))
	}
	// No protocol upgrades: a WebSocket would turn the forward into an unframed tunnel.
	q.r.Header.Del("Upgrade")
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			u := *pr.In.URL
			u.Scheme, u.Host, u.User, u.Fragment, u.RawFragment = "http", host, nil, "", ""
			pr.Out.URL = &u
			pr.Out.Host = host
			pr.Out = pr.Out.WithContext(context.WithValue(pr.Out.Context(), checkedKey{}, q))
		},
		Transport: p.forward,
		ErrorLog:  nil,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			switch {
			case errors.Is(err, errAuditFailed):
				q.deny(http.StatusInternalServerError, CodeAuditFailed, "the decision could not be audited")
				writeStatus(w, q)
			case !q.recorded:
				// It never connected: that is what the event says.
				q.deny(http.StatusBadGateway, CodeConnectFailed, "connect to "+host+": "+err.Error())
				p.refuse(w, q)
			default:
				// Connected (and recorded so), then the exchange failed.
				p.log.Info("forward failed after it connected", "host", host, "request_id", q.ev.RequestID, "error", err)
				w.Header().Set("X-Phantom-Egress-Error", CodeConnectFailed)
				http.Error(w, CodeConnectFailed+": "+host+" did not answer", http.StatusBadGateway)
			}
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
