package sts

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/nodeapi"
)

// The watch call tells a node's agent, as soon as this STS knows it, that the session it
// serves no longer works: the sessions of its role were revoked (by a detector response
// or by hand), its own node was removed, or the session was refused for another reason.
// The agent then fetches fresh credentials at once instead of at its next scheduled
// refresh, so workloads are refused for as little time as possible and the session a
// thief holds stays refused. The node's certificate is the proof: a stolen session key
// cannot open a watch.
//
//	POST /phantom/node/watch  {"accessKeyId": "ASIA…", "sessionToken": "…"}
//
// The answer is 200 with a stream of JSON lines (application/x-ndjson), flushed one by
// one:
//
//	{"event":"heartbeat"}                          every WatchHeartbeat
//	{"event":"refresh","reason":"SessionRevoked"}  the session no longer works; the stream ends
//	{"event":"revoked"}                            the node itself was removed; the stream ends
//	{"event":"reconnect"}                          after WatchMaxDuration; the stream ends
//
// Refusals before the stream (no node certificate, a session of another node, an
// unreadable token) are the node API's JSON errors. One watch per node: a new one ends the
// node's previous stream (an agent that renewed its certificate or its credentials
// reconnects). Opening a watch is one audit event (WatchNodeSession); what it reports is
// in the agent's own credentials calls that follow.

// Watch defaults.
const (
	DefaultWatchHeartbeat   = 15 * time.Second
	DefaultWatchMaxDuration = 10 * time.Minute
	// watchTouchEvery bounds how often a watch records the node's contact.
	watchTouchEvery = time.Minute
)

// Session states a watch reports (the "reason" of a refresh event).
const (
	SessionValid   = ""
	SessionRevoked = "SessionRevoked"
	SessionExpired = "SessionExpired"
	SessionInvalid = "SessionInvalid"
)

// ErrSessionStateUnknown is what NodeSessions.SessionState returns when this STS cannot
// tell (its state is not loaded or is stale): the watch waits rather than send an agent
// after credentials it could not get.
var ErrSessionStateUnknown = errors.New("sts: session state unknown")

// NodeSessions is what the node API knows about nodes and their sessions (*sts.Identity).
type NodeSessions interface {
	// NodeRevoked reports whether a node was removed and not enrolled again since, as
	// far as the identity service's last load knows.
	NodeRevoked(node string) bool
	// NodeRevocation returns the time a node was last removed at, if ever: a registry
	// record enrolled after it is a node admitted again.
	NodeRevocation(node string) (time.Time, bool)
	// SessionState names the node a session was issued to ("" when none, or when the
	// token is not a genuine unexpired one) and why it no longer works (SessionRevoked,
	// SessionExpired, SessionInvalid; SessionValid when it does). An error means the
	// state is unknown for now (ErrSessionStateUnknown).
	SessionState(accessKeyID, sessionToken string) (node, state string, err error)
	// Changed is closed at the next change of revocations (and of anything else the
	// identity service holds).
	Changed() <-chan struct{}
}

// watchStream is a watch the node API accepted: serveNode streams it once recorded.
type watchStream struct {
	node, accessKeyID, token string
	nc                       *NodeConfig
	enrolled                 time.Time // the node's enrollment the watch was opened under
}

// revoked reports whether the node was removed since the enrollment the watch was
// opened under.
func (ws *watchStream) revoked() bool {
	if ws.enrolled.IsZero() { // no registry
		return ws.nc.Sessions.NodeRevoked(ws.node)
	}
	before, ok := ws.nc.Sessions.NodeRevocation(ws.node)
	return ok && !ws.enrolled.After(before)
}

func (h *Handler) watchNode(ctx context.Context, c *call, nc *NodeConfig, req *nodeapi.Request) (any, *apiError) {
	node, _, aerr := h.nodePeer(ctx, c, nc)
	if aerr != nil {
		return nil, aerr
	}
	if nc.Sessions == nil {
		return nil, &apiError{Code: "UnknownOperationException", Message: "This STS does not serve node watches.", Status: http.StatusNotFound}
	}
	if !only(req, "accessKeyId", "sessionToken") || req.AccessKeyID == "" || req.SessionToken == "" {
		return nil, validationError("A watch request has an accessKeyId and a sessionToken, and nothing else.")
	}
	c.ev.RequestParameters = map[string]any{"accessKeyId": truncate(req.AccessKeyID, 32)}
	owner, state, err := nc.Sessions.SessionState(req.AccessKeyID, req.SessionToken)
	switch {
	case err != nil:
		h.log.Warn("sts node watch: session state unknown", "request_id", c.id, "node", node.Name, "error", err)
		return nil, &apiError{Code: "ServiceUnavailable", Message: "The perimeter state is not available; retry.", Status: http.StatusServiceUnavailable}
	case owner != "" && owner != node.Name:
		return nil, accessDenied("The session was not issued to node " + node.Name + ".")
	case owner == "" && state == SessionInvalid:
		return nil, validationError("The session token is not a session of this perimeter.")
	}
	c.ev.ResponseElements = map[string]any{"node": node.Name, "sessionState": watchStateName(state)}
	return &watchStream{node: node.Name, accessKeyID: req.AccessKeyID, token: req.SessionToken, nc: nc, enrolled: c.enrolled}, nil
}

func watchStateName(s string) string {
	if s == SessionValid {
		return "Valid"
	}
	return s
}

// watchers ends a node's previous stream when it opens another.
type watchers struct {
	mu   sync.Mutex
	next uint64
	m    map[string]watcher
}

type watcher struct {
	id     uint64
	cancel context.CancelFunc
}

// add registers a node's stream and ends its previous one; the returned func removes it.
func (ws *watchers) add(node string, cancel context.CancelFunc) func() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.m == nil {
		ws.m = map[string]watcher{}
	}
	if old, ok := ws.m[node]; ok {
		old.cancel()
	}
	ws.next++
	id := ws.next
	ws.m[node] = watcher{id: id, cancel: cancel}
	return func() {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		if cur, ok := ws.m[node]; ok && cur.id == id {
			delete(ws.m, node)
		}
	}
}

// streamWatch writes the stream of an accepted watch until the session stops working, the
// node is removed, the stream has lasted long enough, or the node goes away.
func (h *Handler) streamWatch(w http.ResponseWriter, c *call, ws *watchStream) {
	ctx, cancel := context.WithCancel(c.r.Context())
	defer cancel()
	defer h.watches.add(ws.node, cancel)()

	nc := ws.nc
	beat := nc.WatchHeartbeat
	if beat <= 0 {
		beat = DefaultWatchHeartbeat
	}
	life := nc.WatchMaxDuration
	if life <= 0 {
		life = DefaultWatchMaxDuration
	}
	rc := http.NewResponseController(w)
	// The listener's read and write timeouts bound ordinary calls; a stream lives longer.
	// Each write gets its own deadline below.
	_ = rc.SetReadDeadline(time.Time{})
	hd := w.Header()
	hd.Set("Content-Type", nodeapi.WatchContentType)
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("x-amzn-RequestId", c.id)
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send := func(ev nodeapi.WatchEvent) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(beat + 10*time.Second))
		if err := enc.Encode(ev); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(nodeapi.WatchEvent{Event: nodeapi.EventHeartbeat}) {
		return
	}
	tick := time.NewTicker(beat)
	defer tick.Stop()
	end := time.NewTimer(life)
	defer end.Stop()
	touched := time.Now()
	for {
		// Take the channel before looking, so a change in between wakes the wait below.
		changed := nc.Sessions.Changed()
		if ws.revoked() {
			send(nodeapi.WatchEvent{Event: nodeapi.EventRevoked})
			h.log.Info("sts node watch: node revoked", "request_id", c.id, "node", ws.node)
			return
		}
		if _, state, err := nc.Sessions.SessionState(ws.accessKeyID, ws.token); err == nil && state != SessionValid {
			send(nodeapi.WatchEvent{Event: nodeapi.EventRefresh, Reason: state})
			h.log.Info("sts node watch: told the node to refresh", "request_id", c.id, "node", ws.node, "reason", state)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			send(nodeapi.WatchEvent{Event: nodeapi.EventReconnect})
			return
		case <-tick.C:
			if !send(nodeapi.WatchEvent{Event: nodeapi.EventHeartbeat}) {
				return
			}
			if nc.Registry != nil && time.Since(touched) >= watchTouchEvery {
				touched = time.Now()
				h.touch(ctx, nc, ws.node, c)
			}
		case <-changed:
		}
	}
}
