package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/phantom-perimeter/phantom/internal/nodeapi"
)

// The revocation watch: the agent keeps a POST /phantom/node/watch open on STS's node
// API (over mTLS, with the node certificate) for the session it serves. When STS says the
// session stopped working — its role's sessions were revoked by a detector response or by
// hand — the agent fetches fresh credentials at once, so IMDS and the container endpoint
// serve working ones within moments of the revocation instead of at the next scheduled
// refresh. When STS says the node itself was removed, the agent stops serving the
// credentials it holds. A new session, or a renewed certificate, reopens the watch.

const (
	// watchIdle: a stream that says nothing for this long (STS sends a heartbeat every
	// 15 s) is taken for dead and reopened.
	watchIdle = 45 * time.Second
	// watchMaxLine bounds one event line.
	watchMaxLine = 4 << 10
	// watchRetryMin and watchRetryMax bound the backoff between failed watches.
	watchRetryMin = 250 * time.Millisecond
	watchRetryMax = 15 * time.Second
)

// errWatchUnsupported: the STS answered that it does not serve watches.
var errWatchUnsupported = errors.New("sts does not serve node watches")

// watch keeps a watch open for the current session until ctx ends.
func (a *Agent) watch(ctx context.Context) {
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		changed := *a.sessChanged.Load()
		s := a.sess.Load()
		if s == nil || s.stopped {
			select {
			case <-ctx.Done():
			case <-changed:
			}
			continue
		}
		sctx, cancel := context.WithCancel(ctx)
		a.watchMu.Lock()
		a.watchCancel = cancel
		// A session stored since s was read has already called restartWatch, before this
		// cancel was there to call.
		stale := a.sess.Load() != s
		a.watchMu.Unlock()
		if stale {
			cancel()
			continue
		}
		ev, err := a.client.watch(sctx, s.creds.AccessKeyID, s.creds.Token)
		cancel()
		switch {
		case ev.Event == nodeapi.EventRefresh:
			a.log.Warn("STS says the credentials stopped working; fetching new ones now", "node", a.Node(), "access_key_id", s.creds.AccessKeyID, "reason", ev.Reason)
			a.requestRefresh()
			backoff = 0
			a.waitNewSession(ctx, changed, s)
		case ev.Event == nodeapi.EventRevoked || nodeRefused(err):
			// A watch opened after the node was removed (at start, or while the stream
			// reconnected) is refused before any stream: the same news.
			a.log.Error("STS says this node was removed; no longer serving its credentials", "node", a.Node(), "error", err)
			a.stopServing(s)
			a.requestRefresh()
			backoff = 0
			a.waitNewSession(ctx, changed, s)
		case ev.Event == nodeapi.EventReconnect:
			backoff = 0
		case ctx.Err() != nil:
			return
		case sctx.Err() != nil:
			// Ended here: a new session or certificate; reopen at once.
			backoff = 0
		default:
			backoff = min(max(backoff*2, watchRetryMin), watchRetryMax)
			if errors.Is(err, errWatchUnsupported) {
				backoff = watchRetryMax * 4
			}
			a.log.Debug("watch ended; reopening", "node", a.Node(), "error", err, "retry_in", backoff.String())
			t := time.NewTimer(backoff/2 + randDuration(a.rand, backoff/2))
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			case <-changed:
				t.Stop()
			}
		}
	}
}

// requestRefresh asks the refresh loop for new credentials now.
func (a *Agent) requestRefresh() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// waitNewSession waits until a session other than old is stored (or ctx ends), so a
// watch is not reopened for credentials STS already said are refused. It asks again now
// and then while the refresh keeps failing.
func (a *Agent) waitNewSession(ctx context.Context, changed <-chan struct{}, old *session) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for a.sess.Load() == old {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			return
		case <-t.C:
			a.requestRefresh()
		}
	}
}

// stopServing stops serving s (the node was removed): IMDS and the container endpoint
// answer 503 until STS hands out credentials again.
func (a *Agent) stopServing(s *session) {
	c := *s
	c.stopped = true
	a.sess.CompareAndSwap(s, &c)
}

// nodeRefused reports whether err is STS refusing the node's certificate (the node was
// removed, or its certificate superseded by a newer enrollment): the node is no longer one
// of the perimeter's, whatever its credentials' expiry says.
func nodeRefused(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusForbidden && e.Code == codeNodeRefused
}

// codeNodeRefused is the node API's error for a node certificate it refuses.
const codeNodeRefused = "InvalidClientCertificate"

// restartWatch ends the current watch stream; the watch loop reopens it.
func (a *Agent) restartWatch() {
	a.watchMu.Lock()
	defer a.watchMu.Unlock()
	if a.watchCancel != nil {
		a.watchCancel()
		a.watchCancel = nil
	}
}

// watch opens a watch for a session and reads it until an event that ends it (refresh,
// revoked, reconnect), an error, or ctx. The zero event comes with the error.
func (c *stsClient) watch(ctx context.Context, accessKeyID, token string) (nodeapi.WatchEvent, error) {
	b, err := json.Marshal(&nodeapi.Request{AccessKeyID: accessKeyID, SessionToken: token})
	if err != nil {
		return nodeapi.WatchEvent{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+nodeapi.WatchPath, bytes.NewReader(b))
	if err != nil {
		return nodeapi.WatchEvent{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "phantom-agent")
	// The ordinary client's timeout covers a whole exchange; a stream lasts minutes. The
	// transport still bounds the handshake and the wait for the response header.
	resp, err := c.stream.Do(req)
	if err != nil {
		return nodeapi.WatchEvent{}, fmt.Errorf("sts node API watch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		var e nodeapi.Error
		_ = json.Unmarshal(data, &e)
		if resp.StatusCode == http.StatusNotFound {
			return nodeapi.WatchEvent{}, errWatchUnsupported
		}
		return nodeapi.WatchEvent{}, &Error{Status: resp.StatusCode, Code: truncate(e.Type, 64), Message: truncate(e.Message, 256)}
	}
	// Silence for watchIdle ends the stream: a connection that died without a word.
	idle := time.AfterFunc(watchIdle, cancel)
	defer idle.Stop()
	return readWatch(resp.Body, func() { idle.Reset(watchIdle) })
}

// readWatch reads a watch stream's events until one that ends it (refresh, revoked,
// reconnect), calling alive for each line. Heartbeats and events it does not know are
// skipped; a line that is not a JSON event, or longer than watchMaxLine, ends it with an
// error.
func readWatch(r io.Reader, alive func()) (nodeapi.WatchEvent, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), watchMaxLine)
	for sc.Scan() {
		alive()
		var ev nodeapi.WatchEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nodeapi.WatchEvent{}, fmt.Errorf("sts node API watch: malformed event: %w", err)
		}
		switch ev.Event {
		case nodeapi.EventRefresh, nodeapi.EventRevoked, nodeapi.EventReconnect:
			return ev, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nodeapi.WatchEvent{}, fmt.Errorf("sts node API watch: %w", err)
	}
	return nodeapi.WatchEvent{}, errors.New("sts node API watch: the stream ended without a word")
}
