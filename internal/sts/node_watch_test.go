package sts

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/nodeapi"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// credentialsOf asks the node API for cert's node's credentials.
func (e *nodeEnv) credentialsOf(t testing.TB, cert *tls.Certificate) nodeapi.Credentials {
	t.Helper()
	r := e.post(t, cert, "/phantom/node/credentials", `{}`)
	if r.status != http.StatusOK {
		t.Fatalf("credentials: %d %s", r.status, r.body)
	}
	var c nodeapi.Credentials
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// watchEvents opens a watch and returns its events as they come, closed when the stream
// ends. A refusal before the stream fails the test with the body.
func (e *nodeEnv) watchEvents(t testing.TB, cert *tls.Certificate, akid, token string) <-chan nodeapi.WatchEvent {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/phantom/node/watch", strings.NewReader(jsonBody(t, map[string]string{"accessKeyId": akid, "sessionToken": token})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := e.client(cert)
	c.Timeout = 0
	resp, err := c.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		resp.Body.Close()
		t.Fatalf("watch: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan nodeapi.WatchEvent, 64)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev nodeapi.WatchEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				out <- ev
			}
		}
	}()
	return out
}

// next returns the next event other than a heartbeat, or fails after d.
func next(t testing.TB, evs <-chan nodeapi.WatchEvent, d time.Duration) (nodeapi.WatchEvent, time.Duration) {
	t.Helper()
	start := time.Now()
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				t.Fatalf("the stream ended without an event after %s", time.Since(start))
			}
			if ev.Event != "heartbeat" {
				return ev, time.Since(start)
			}
		case <-timeout:
			t.Fatalf("no event within %s", d)
		}
	}
}

// TestNodeWatchRevokeSessions: a node watching its session hears of a revocation of its
// role's sessions as soon as the identity service has it, and its next credentials work.
func TestNodeWatchRevokeSessions(t *testing.T) {
	e := newNodeEnv(t)
	cert := e.enroll(t, "service-a-1")
	creds := e.credentialsOf(t, cert)
	evs := e.watchEvents(t, cert, creds.AccessKeyID, creds.Token)
	if ev := <-evs; ev.Event != "heartbeat" {
		t.Fatalf("first event %+v, want a heartbeat", ev)
	}
	if ev := e.lastEvent(t); ev.EventName != "WatchNodeSession" || ev.ErrorCode != "" || ev.ResponseElements["sessionState"] != "Valid" {
		t.Fatalf("watch audit event %+v", ev)
	}
	// Another role's revocation changes nothing for this node.
	if _, err := e.svc.RevokeSessions(context.Background(), "instance"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-evs:
		if ev.Event != "heartbeat" {
			t.Fatalf("after another role's revocation: %+v", ev)
		}
	case <-time.After(300 * time.Millisecond):
	}
	revoked := time.Now()
	if _, err := e.svc.RevokeSessions(context.Background(), "app"); err != nil {
		t.Fatal(err)
	}
	ev, _ := next(t, evs, 10*time.Second)
	if ev.Event != "refresh" || ev.Reason != SessionRevoked {
		t.Fatalf("event %+v, want refresh SessionRevoked", ev)
	}
	testenv.Latency(t, "revocation to the watch's refresh event", time.Since(revoked), 2*time.Second, 10*time.Second)
	fresh := e.credentialsOf(t, cert)
	if _, err := e.svc.Resolve(context.Background(), fresh.AccessKeyID, fresh.Token); err != nil {
		t.Errorf("fresh credentials after the revocation: %v", err)
	}
	if _, err := e.svc.Resolve(context.Background(), creds.AccessKeyID, creds.Token); err == nil {
		t.Error("the revoked session still resolves")
	}
	// A watch of the revoked session is told at once.
	if ev, _ := next(t, e.watchEvents(t, cert, creds.AccessKeyID, creds.Token), 10*time.Second); ev.Event != "refresh" {
		t.Errorf("watch of a revoked session: %+v, want refresh", ev)
	}
}

// TestNodeWatchNodeRevoked: removing the node ends its watch with "revoked", and the node
// API refuses its certificate from then on.
func TestNodeWatchNodeRevoked(t *testing.T) {
	e := newNodeEnv(t)
	cert := e.enroll(t, "service-a-1")
	creds := e.credentialsOf(t, cert)
	evs := e.watchEvents(t, cert, creds.AccessKeyID, creds.Token)
	<-evs
	if _, err := e.svc.RevokeNode(context.Background(), "service-a-1"); err != nil {
		t.Fatal(err)
	}
	if ev, _ := next(t, evs, 10*time.Second); ev.Event != "revoked" {
		t.Fatalf("event %+v, want revoked", ev)
	}
	for _, path := range []string{"/phantom/node/credentials", "/phantom/node/watch"} {
		body := `{}`
		if strings.HasSuffix(path, "watch") {
			body = jsonBody(t, map[string]string{"accessKeyId": creds.AccessKeyID, "sessionToken": creds.Token})
		}
		r := e.post(t, cert, path, body)
		if r.status != http.StatusForbidden || r.err.Type != "InvalidClientCertificate" || !strings.Contains(r.err.Message, "revoked") {
			t.Errorf("%s from the removed node: %d %s", path, r.status, r.body)
		}
	}
	// A new join token admits it again.
	again := e.enroll(t, "service-a-1")
	if err := e.svc.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.credentialsOf(t, again)
}

// TestNodeWatchRefusals: a watch needs the node's certificate, a session of that node and
// nothing else in the body; it reconnects after its maximum duration; a second watch of
// the node ends the first.
func TestNodeWatchRefusals(t *testing.T) {
	e := newNodeEnv(t)
	cert := e.enroll(t, "service-a-1")
	other := e.enroll(t, "other-vpc")
	creds := e.credentialsOf(t, cert)
	body := jsonBody(t, map[string]string{"accessKeyId": creds.AccessKeyID, "sessionToken": creds.Token})
	for _, tc := range []struct {
		name   string
		cert   *tls.Certificate
		body   string
		status int
		code   string
	}{
		{"no certificate", nil, body, http.StatusForbidden, "InvalidClientCertificate"},
		{"another node's session", other, body, http.StatusForbidden, "AccessDenied"},
		{"no token", cert, `{"accessKeyId":"` + creds.AccessKeyID + `"}`, http.StatusBadRequest, "ValidationError"},
		{"a csr too", cert, `{"accessKeyId":"` + creds.AccessKeyID + `","sessionToken":"` + creds.Token + `","csr":"x"}`, http.StatusBadRequest, "ValidationError"},
		{"tampered token", cert, jsonBody(t, map[string]string{"accessKeyId": creds.AccessKeyID, "sessionToken": creds.Token[:len(creds.Token)-4] + "AAAA"}), http.StatusBadRequest, "ValidationError"},
		{"unknown member", cert, `{"accessKeyId":"a","sessionToken":"b","x":1}`, http.StatusBadRequest, "SerializationException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post(t, tc.cert, "/phantom/node/watch", tc.body)
			if r.status != tc.status || r.err.Type != tc.code {
				t.Errorf("got %d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
		})
	}
	// The session is not a member of the other calls.
	if r := e.post(t, cert, "/phantom/node/credentials", body); r.status != http.StatusBadRequest {
		t.Errorf("credentials with a session in the body: %d %s", r.status, r.body)
	}

	first := e.watchEvents(t, cert, creds.AccessKeyID, creds.Token)
	<-first
	second := e.watchEvents(t, cert, creds.AccessKeyID, creds.Token)
	<-second
	for range first { // the first stream ends: one watch per node
	}
	ev, d := next(t, second, 15*time.Second)
	if ev.Event != "reconnect" {
		t.Errorf("after the maximum duration: %+v, want reconnect", ev)
	}
	testenv.Latency(t, "the reconnect event of a 3 s watch", d, 4*time.Second, 15*time.Second)
}
