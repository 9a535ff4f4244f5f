package handoff

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/phantom-perimeter/phantom/internal/accept"
)

// Cred is a Unix socket peer's credentials, as the kernel reports them (SO_PEERCRED,
// unix(7)): the process at the other end cannot choose them.
type Cred struct {
	PID      int32
	UID, GID uint32
}

// FDConfig configures the same-host transport, on either side.
type FDConfig struct {
	// Path is the Unix socket's path. The gateway creates it (a stale socket there, one
	// nobody listens on, is replaced; a socket another process serves on, or any other
	// file, is refused); the endpoint connects to it.
	Path string
	// UIDs are the uids the peer process may run as; empty means this process's own.
	UIDs []uint32
	// Mode is the socket file's permission bits, 0600 when zero; 0660 lets an endpoint
	// of the socket's group connect (the peer's uid is still checked).
	Mode os.FileMode
	// PeerCred reads the peer's credentials; nil is SO_PEERCRED. Tests substitute it.
	PeerCred func(*net.UnixConn) (Cred, error)
	// Logger receives refusals of peers and malformed handoffs; nil is slog.Default().
	Logger *slog.Logger
}

func (c *FDConfig) defaults() {
	if len(c.UIDs) == 0 {
		c.UIDs = []uint32{uint32(os.Getuid())}
	}
	if c.Mode == 0 {
		c.Mode = 0o600
	}
	if c.PeerCred == nil {
		c.PeerCred = peerCred
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// checkPeer admits a Unix socket peer whose uid is one of uids.
func checkPeer(uc *net.UnixConn, cred func(*net.UnixConn) (Cred, error), uids []uint32) error {
	cr, err := cred(uc)
	if err != nil {
		return fmt.Errorf("read the peer's credentials: %w", err)
	}
	if !slices.Contains(uids, cr.UID) {
		return fmt.Errorf("peer process %d runs as uid %d, not one of %v", cr.PID, cr.UID, uids)
	}
	return nil
}

func peerCred(uc *net.UnixConn) (Cred, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return Cred{}, err
	}
	var cr Cred
	var serr error
	err = rc.Control(func(fd uintptr) {
		cr, serr = getsockoptUcred(int(fd))
	})
	return cr, errors.Join(err, serr)
}

// FDListener is the gateway's end of the same-host transport: it accepts endpoint
// processes on its Unix socket and delivers the connections they pass to a Listener.
type FDListener struct {
	*Listener
	cfg   FDConfig
	ul    *net.UnixListener
	wg    sync.WaitGroup
	mu    sync.Mutex
	peers map[*net.UnixConn]struct{}
}

// ListenFD creates the Unix socket cfg.Path and serves endpoint processes on it until
// the returned listener is closed. Its Addr is a TCP address of port 0: the port a caller
// connected to comes with each connection.
func ListenFD(cfg FDConfig) (*FDListener, error) {
	cfg.defaults()
	if err := removeStale(cfg.Path); err != nil {
		return nil, err
	}
	ul, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: cfg.Path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("listen on handoff socket %s: %w", cfg.Path, err)
	}
	// Connecting needs write permission on the socket file. Between bind and this chmod
	// the file has the umask's mode; a peer that connects then is still checked by uid.
	if err := os.Chmod(cfg.Path, cfg.Mode); err != nil {
		ul.Close()
		return nil, fmt.Errorf("restrict the handoff socket: %w", err)
	}
	l := &FDListener{Listener: NewListener(&net.TCPAddr{IP: net.IPv4zero}), cfg: cfg, ul: ul, peers: map[*net.UnixConn]struct{}{}}
	l.stop = l.stopAll
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// removeStale removes a socket a gateway left at path when it died (kill -9 does not
// unlink it), and refuses to remove one that still answers: another gateway serves on it,
// and replacing its file would take its endpoint processes' next connections from it. A
// connect to a socket nobody listens on fails with ECONNREFUSED (unix(7)); any other
// answer is refused too, closed.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("handoff socket %s: %w", path, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("handoff socket %s exists and is not a socket", path)
	}
	uc, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err == nil {
		uc.Close()
		return fmt.Errorf("handoff socket %s is in use: another process serves on it (stop it, or give this gateway another --handoff-dir)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("handoff socket %s exists and its state is unknown, so it is not replaced: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove the stale handoff socket: %w", err)
	}
	return nil
}

func (l *FDListener) stopAll() {
	l.ul.Close()
	l.mu.Lock()
	for uc := range l.peers {
		uc.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

func (l *FDListener) acceptLoop() {
	defer l.wg.Done()
	var backoff accept.Backoff
	for {
		uc, err := l.ul.AcceptUnix()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if backoff.Retry(err, l.done) {
				l.cfg.Logger.Warn("handoff socket accept failed; retrying", "socket", l.cfg.Path, "error", err, "retry_in", backoff.Wait())
				continue
			}
			select {
			case <-l.done:
			default:
				l.cfg.Logger.Error("handoff socket accept failed; no more endpoint processes are accepted on it", "socket", l.cfg.Path, "error", err)
			}
			return
		}
		backoff.Reset()
		if err := checkPeer(uc, l.cfg.PeerCred, l.cfg.UIDs); err != nil {
			l.cfg.Logger.Error("handoff socket refused a peer", "socket", l.cfg.Path, "error", err)
			uc.Close()
			continue
		}
		l.mu.Lock()
		select {
		case <-l.done:
			l.mu.Unlock()
			uc.Close()
			return
		default:
		}
		l.peers[uc] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serve(uc)
	}
}

// ackAccepted is the one-byte message with which the gateway tells an endpoint process it
// passed the uid check. The endpoint waits for it before passing any connection: the
// kernel completes a connect to a listening socket before the gateway has looked at the
// peer, and a refused endpoint would otherwise pass its callers into a socket closed
// unread, never knowing (FDSender.conn).
const ackAccepted = 0x01

// serve receives connections from one endpoint process: one message per connection, its
// preamble and exactly one descriptor. Anything else ends the peer's session.
func (l *FDListener) serve(uc *net.UnixConn) {
	defer l.wg.Done()
	defer func() {
		l.mu.Lock()
		delete(l.peers, uc)
		l.mu.Unlock()
		uc.Close()
	}()
	_ = uc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := uc.Write([]byte{ackAccepted}); err != nil {
		return
	}
	_ = uc.SetWriteDeadline(time.Time{})
	buf := make([]byte, MaxPreamble+1)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	for {
		c, err := l.receive(uc, buf, oob)
		if err != nil {
			select {
			case <-l.done:
			default:
				if !errors.Is(err, errPeerGone) {
					l.cfg.Logger.Error("handoff refused; closing the endpoint's socket session", "socket", l.cfg.Path, "error", err)
				}
			}
			return
		}
		if !l.Deliver(c) {
			return
		}
	}
}

var errPeerGone = errors.New("handoff: peer closed")

func (l *FDListener) receive(uc *net.UnixConn, buf, oob []byte) (*Conn, error) {
	n, oobn, flags, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	fds, ferr := parseRights(oob[:oobn])
	closeAll := func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
	switch {
	case n == 0 && oobn == 0:
		return nil, errPeerGone
	case ferr != nil:
		closeAll()
		return nil, ferr
	case flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0:
		closeAll()
		return nil, fmt.Errorf("%w: message or descriptors truncated", ErrPreamble)
	case len(fds) != 1:
		closeAll()
		return nil, fmt.Errorf("handoff: %d descriptors in a message, not 1", len(fds))
	}
	p, err := Parse(buf[:n])
	if err == nil && p.Raw {
		err = fmt.Errorf("%w: the raw flag on a passed socket, which is raw already", ErrPreamble)
	}
	if err != nil {
		closeAll()
		return nil, err
	}
	f := os.NewFile(uintptr(fds[0]), "handoff")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("handoff: the descriptor is not a socket: %w", err)
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("handoff: the descriptor is a %T, not a TCP connection", nc)
	}
	// The socket itself says who the caller is: a preamble that contradicts it is refused.
	if err := matchSocket(tc, p); err != nil {
		tc.Close()
		return nil, err
	}
	return NewConn(tc, p), nil
}

// matchSocket checks the preamble against the passed socket's own addresses.
func matchSocket(tc *net.TCPConn, p Preamble) error {
	ra, _ := tc.RemoteAddr().(*net.TCPAddr)
	la, _ := tc.LocalAddr().(*net.TCPAddr)
	if ra == nil || la == nil {
		return errors.New("handoff: the passed socket has no addresses")
	}
	src := netip.AddrPortFrom(ra.AddrPort().Addr().Unmap().WithZone(""), ra.AddrPort().Port())
	if src != p.Source || uint16(la.Port) != p.DstPort {
		return fmt.Errorf("%w: it names %v to port %d, the socket is %v to port %d", ErrPreamble, p.Source, p.DstPort, src, la.Port)
	}
	return nil
}

func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("handoff: control message: %w", err)
	}
	var fds []int
	for i := range msgs {
		f, err := syscall.ParseUnixRights(&msgs[i])
		if err != nil {
			for _, fd := range fds {
				syscall.Close(fd)
			}
			return nil, fmt.Errorf("handoff: control message: %w", err)
		}
		fds = append(fds, f...)
	}
	return fds, nil
}

// FDSender is the endpoint's end of the same-host transport: it passes accepted caller
// connections to the gateway over the Unix socket, re-connecting when the gateway
// restarts. Its methods are safe for concurrent use.
type FDSender struct {
	cfg FDConfig
	mu  sync.Mutex
	uc  *net.UnixConn
}

// NewFDSender returns a sender to the gateway's socket cfg.Path; it connects on first use.
func NewFDSender(cfg FDConfig) *FDSender {
	cfg.defaults()
	return &FDSender{cfg: cfg}
}

// Connect connects to the gateway now, so a misconfiguration shows at start.
func (s *FDSender) Connect() error {
	_, err := s.conn()
	return err
}

func (s *FDSender) conn() (*net.UnixConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.uc != nil {
		return s.uc, nil
	}
	uc, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: s.cfg.Path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("connect to the gateway's handoff socket %s: %w", s.cfg.Path, err)
	}
	// The process that listens is the one callers are handed to: it must be the gateway's
	// user, not whoever managed to create a socket at this path.
	if err := checkPeer(uc, s.cfg.PeerCred, s.cfg.UIDs); err != nil {
		uc.Close()
		return nil, fmt.Errorf("handoff socket %s: %w", s.cfg.Path, err)
	}
	// And the gateway must have admitted this process (its own uid check).
	_ = uc.SetReadDeadline(time.Now().Add(writeTimeout))
	var b [2]byte
	n, err := uc.Read(b[:])
	if err != nil || n != 1 || b[0] != ackAccepted {
		uc.Close()
		return nil, fmt.Errorf("handoff socket %s: the gateway did not accept this endpoint process (uid %d; the gateway's --handoff-peer-uid must name it): %v", s.cfg.Path, os.Getuid(), errOr(err, n))
	}
	_ = uc.SetReadDeadline(time.Time{})
	s.uc = uc
	return uc, nil
}

func (s *FDSender) drop(uc *net.UnixConn) {
	s.mu.Lock()
	if s.uc == uc {
		s.uc = nil
	}
	s.mu.Unlock()
	uc.Close()
}

// Send passes c, a caller's TCP connection, with p to the gateway. The caller keeps its
// own descriptor and closes it after; the socket stays open in the gateway.
func (s *FDSender) Send(c *net.TCPConn, p Preamble) error {
	msg, err := p.Append(make([]byte, 0, 64))
	if err != nil {
		return err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	// One retry on a fresh connection: the gateway may have restarted since the last send.
	for attempt := 0; ; attempt++ {
		uc, err := s.conn()
		if err != nil {
			return err
		}
		var werr error
		_ = uc.SetWriteDeadline(time.Now().Add(writeTimeout))
		cerr := rc.Control(func(fd uintptr) {
			_, _, werr = uc.WriteMsgUnix(msg, syscall.UnixRights(int(fd)), nil)
		})
		if cerr != nil {
			return fmt.Errorf("handoff: the caller's socket: %w", cerr)
		}
		if werr == nil {
			return nil
		}
		s.drop(uc)
		if attempt == 1 {
			return fmt.Errorf("pass a connection to the gateway: %w", werr)
		}
	}
}

// Close closes the connection to the gateway.
func (s *FDSender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.uc != nil {
		err := s.uc.Close()
		s.uc = nil
		return err
	}
	return nil
}

// errOr is err, or what was read instead of the acceptance.
func errOr(err error, n int) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%d bytes where one was expected", n)
}
