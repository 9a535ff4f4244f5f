package gateway

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"hash"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// A request body is read only once its caller is authorized, and then in one of two
// ways. When the signature covers a hash the request declares (x-amz-content-sha256),
// the signature is checked first and the body streams to the backend, hashed on the way,
// its last byte held back until the hash matches (a mismatch aborts the upstream request,
// so the backend never sees a complete body). Otherwise the body is read into memory,
// within a budget shared by all requests, and the signature checked over it before the
// backend is called. Both ways bound the body's size and how slowly it may arrive.

// Body failures, each its own audited error.
var (
	errBodyTooLarge = errors.New("the request body is larger than gateway.limits.maxBodyBytes")
	errBodyTooSlow  = errors.New("the request body arrived slower than gateway.limits.minBodyRate allows")
	errBodyHash     = errors.New("the request body does not match its signed x-amz-content-sha256")
	errBodyCut      = errors.New("the request body ended before its declared length")
)

// bodyError maps a body failure to the answer and audit errorCode.
func bodyError(err error) *apiError {
	switch {
	case errors.Is(err, errBodyTooLarge):
		return errTooLarge()
	case errors.Is(err, errBodyTooSlow):
		return errBodyTimeout()
	case errors.Is(err, errBodyHash):
		return errHashMismatch()
	}
	return errIncompleteBody()
}

// limitedBody enforces the body limits on a request body as it is read: at most max
// bytes, and each byte by its deadline (start + BodyTimeout + received/MinBodyRate, the
// shape of Apache's mod_reqtimeout), enforced as a read deadline on the connection.
type limitedBody struct {
	rc       io.ReadCloser
	ctl      *http.ResponseController
	max      int64
	n        int64
	start    time.Time
	grace    time.Duration
	rate     int64
	deadline time.Time // the read deadline set last; zero: none yet
	fault
	done    atomic.Bool // read to its end
	stopped atomic.Bool // abandoned: nobody will take the rest
}

// fault is a body's failure: err for the goroutine reading it (the backend transport's),
// failed for the one answering the caller.
type fault struct {
	err error
	p   atomic.Pointer[error]
}

func (f *fault) fail(err error) error {
	f.err = err
	f.p.Store(&err)
	return err
}

// failed is the error the body failed with, nil while it has not.
func (f *fault) failed() error {
	if p := f.p.Load(); p != nil {
		return *p
	}
	return nil
}

// stop abandons the rest of a body the exchange no longer needs (the backend answered
// before it was in, or the body failed): reads end within closeLinger, and the connection
// is closed after the answer (closeIfBodyPending) rather than held for the rest of the
// upload. Not at once: the server reads on, discarding, while the answer travels, because
// closing on a caller still sending resets the connection and a reset can destroy the
// answer before the caller reads it (RFC 9112 §9.6, tear-down).
func (b *limitedBody) stop() {
	if b.done.Load() {
		return
	}
	b.stopped.Store(true)
	_ = b.ctl.SetReadDeadline(time.Now().Add(closeLinger))
}

// closeLinger is how long a connection closed on a caller still sending its body stays
// open for reading after the answer (net/http waits as long after its own early answers).
const closeLinger = 500 * time.Millisecond

func newLimitedBody(r *http.Request, w http.ResponseWriter, lim *config.Limits) *limitedBody {
	return &limitedBody{rc: r.Body, ctl: http.NewResponseController(w), max: lim.MaxBodyBytes, start: time.Now(),
		grace: lim.BodyTimeout, rate: max(lim.MinBodyRate, 1)}
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.stopped.Load() {
		return 0, b.fail(errBodyCut)
	}
	// Move the deadline on in steps of a second or more, not on every read.
	if dl := b.start.Add(b.grace + time.Duration(b.n*int64(time.Second)/b.rate)); dl.Sub(b.deadline) >= time.Second {
		b.deadline = dl
		if err := b.ctl.SetReadDeadline(dl); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return 0, b.fail(err)
		}
	}
	if room := b.max + 1 - b.n; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	switch {
	case b.n > b.max:
		return n - 1, b.fail(errBodyTooLarge)
	case err == io.EOF:
		// The whole body is in: no deadline may outlive it (the server's background read
		// of an HTTP/1.1 connection would time out and cancel the request).
		b.done.Store(true)
		b.ctl.SetReadDeadline(time.Time{})
		return n, io.EOF
	case errors.Is(err, os.ErrDeadlineExceeded):
		return n, b.fail(errBodyTooSlow)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return n, b.fail(errBodyCut)
	case err != nil:
		return n, b.fail(err)
	}
	return n, nil
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// hashedBody passes a body through while hashing it, and holds its last byte back until
// the hash matches want: on a mismatch the reader fails before the body is complete, so
// the request it feeds is aborted, never delivered whole.
type hashedBody struct {
	src  io.ReadCloser
	h    hash.Hash
	want [sha256.Size]byte
	held byte
	has  bool
	fault
}

func newHashedBody(src io.ReadCloser, want [sha256.Size]byte) *hashedBody {
	return &hashedBody{src: src, h: sha256.New(), want: want}
}

func (b *hashedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		// p[0] takes the held byte; the source fills the rest (a one-byte p reads into
		// a lookahead, so that a held byte can always be told from the last one).
		off := 0
		if b.has {
			p[0], off = b.held, 1
		}
		var look [1]byte
		dst := p[off:]
		if len(dst) == 0 {
			dst = look[:]
		}
		n, err := b.src.Read(dst)
		b.h.Write(dst[:n])
		if len(p) == off && n == 1 {
			// One byte of room, taken by the held byte: the lookahead is held next.
			b.held = look[0]
			return 1, nil
		}
		total := off + n
		if err == io.EOF {
			var sum [sha256.Size]byte
			b.h.Sum(sum[:0])
			if subtle.ConstantTimeCompare(sum[:], b.want[:]) != 1 {
				return max(total-1, 0), b.fail(errBodyHash)
			}
			b.has = false
			return total, io.EOF
		}
		if err != nil {
			return 0, b.fail(err)
		}
		if total == 0 || (total == 1 && b.has) {
			continue // nothing new yet
		}
		b.held, b.has = p[total-1], true
		return total - 1, nil
	}
}

func (b *hashedBody) Close() error { return b.src.Close() }

// budget bounds the bytes of the bodies held in memory at once.
type budget struct{ used atomic.Int64 }

// take reserves n bytes of limit; false when they are not there.
func (b *budget) take(n, limit int64) bool {
	if b.used.Add(n) > limit {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *budget) give(n int64) { b.used.Add(-n) }

// readBody reads the body of an authorized request into memory within the limits and
// the shared budget, and puts an equivalent reader back on the request. It returns the
// body and the bytes of budget it holds (give them back when the request is done).
func (g *Gateway) readBody(cl *call) ([]byte, int64, *apiError) {
	r, lim := cl.r, cl.lim
	if r.ContentLength > lim.MaxBodyBytes {
		return nil, 0, errTooLarge()
	}
	held := int64(0)
	grow := func(to int64) bool {
		if to <= held {
			return true
		}
		if !g.bodies.take(to-held, lim.BodyBufferBytes) {
			return false
		}
		held = to
		return true
	}
	size := r.ContentLength
	if size < 0 {
		size = min(64<<10, lim.MaxBodyBytes)
	}
	if !grow(size) {
		return nil, 0, errBodyBuffer()
	}
	buf := make([]byte, 0, size)
	body := newLimitedBody(r, cl.w, lim)
	for {
		if len(buf) == cap(buf) {
			if r.ContentLength >= 0 && int64(len(buf)) >= r.ContentLength {
				// The declared length is in: one more read must say EOF.
				var one [1]byte
				n, err := body.Read(one[:])
				if n == 0 && err == io.EOF {
					break
				}
				if err == nil || err == io.EOF {
					err = errBodyTooLarge
				}
				g.bodies.give(held)
				return nil, 0, bodyError(err)
			}
			next := min(2*int64(cap(buf)), lim.MaxBodyBytes+1)
			if !grow(next) {
				g.bodies.give(held)
				return nil, 0, errBodyBuffer()
			}
			nb := make([]byte, len(buf), next)
			copy(nb, buf)
			buf = nb
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			g.bodies.give(held)
			return nil, 0, bodyError(err)
		}
	}
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(buf))
	return buf, held, nil
}

// hasBody reports whether the request carries a body: a length, or chunked framing.
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
}

// inFlight counts the requests being handled.
type inFlight struct{ n atomic.Int64 }

// enter counts a request unless limit are already in flight.
func (f *inFlight) enter(limit int) bool {
	if f.n.Add(1) > int64(limit) && limit > 0 {
		f.n.Add(-1)
		return false
	}
	return true
}

func (f *inFlight) leave() { f.n.Add(-1) }
