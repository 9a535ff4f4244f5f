package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// imdsAccessKey reads the access key id IMDS serves now ("" when it serves none).
func imdsAccessKey(t testing.TB, a *servedAgent) string {
	t.Helper()
	tok := imdsToken(t, a, "60")
	code, _, body := req(t, "GET", a.imds+"/latest/meta-data/iam/security-credentials/app", "X-aws-ec2-metadata-token", tok)
	if code != 200 {
		return ""
	}
	var doc struct{ AccessKeyId string }
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.AccessKeyId
}

// waitServed polls IMDS until it serves an access key other than old, and says how long
// that took; it fails after limit.
func waitServed(t testing.TB, a *servedAgent, old string, limit time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		if k := imdsAccessKey(t, a); k != "" && k != old {
			return k, time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("IMDS still serves %s %s after the revocation", old, time.Since(start))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRevocationHealsWithinTwoSeconds: when the sessions of the node's role are revoked,
// the agent hears it on its watch and IMDS and the container endpoint serve new
// credentials within 2 s (the bound); the new ones resolve, the old stay refused.
// On the old agent IMDS kept serving the revoked session until its scheduled refresh.
func TestRevocationHealsWithinTwoSeconds(t *testing.T) {
	p := newPerimeter(t)
	a := startAgent(t, p, "service-a-1", nil)
	old := imdsAccessKey(t, a)
	oldCreds, _ := a.Credentials()
	for i := range 3 {
		revoked := time.Now()
		if _, err := p.ids.RevokeSessions(context.Background(), "app"); err != nil {
			t.Fatal(err)
		}
		fresh, _ := waitServed(t, a, old, 10*time.Second)
		testenv.Latency(t, fmt.Sprintf("revocation %d to IMDS serving new credentials", i+1), time.Since(revoked), 2*time.Second, 10*time.Second)
		c, ok := a.Credentials()
		if !ok || c.AccessKeyID != fresh {
			t.Fatalf("the agent serves %s, IMDS %s", c.AccessKeyID, fresh)
		}
		if _, err := p.ids.Resolve(context.Background(), c.AccessKeyID, c.Token); err != nil {
			t.Errorf("the fresh session does not resolve: %v", err)
		}
		code, _, body := req(t, "GET", a.container+ContainerPath, "Authorization", a.ContainerToken())
		if code != 200 || !json.Valid([]byte(body)) || !containsKey(body, fresh) {
			t.Errorf("container endpoint: %d, want the fresh key %s", code, fresh)
		}
		old = fresh
	}
	if _, err := p.ids.Resolve(context.Background(), oldCreds.AccessKeyID, oldCreds.Token); err == nil {
		t.Error("the first (revoked) session resolves again")
	}
}

func containsKey(doc, key string) bool {
	var d struct{ AccessKeyId string }
	return json.Unmarshal([]byte(doc), &d) == nil && d.AccessKeyId == key
}

// TestNoWatchKeepsRevokedCredentials is the old behaviour, kept behind NoWatch (an STS
// without the watch call): the revoked session is served until the scheduled refresh.
func TestNoWatchKeepsRevokedCredentials(t *testing.T) {
	p := newPerimeter(t)
	a := startAgent(t, p, "service-a-1", func(c *Config) { c.NoWatch = true })
	old := imdsAccessKey(t, a)
	if _, err := p.ids.RevokeSessions(context.Background(), "app"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if k := imdsAccessKey(t, a); k != old {
		t.Fatalf("IMDS serves %s without a watch; want the revoked %s until the scheduled refresh", k, old)
	}
}

// TestNodeRevokedStopsServing: a removed node's agent stops serving the credentials it
// holds (they are refused everywhere); a restart with a new join token enrolls it again.
func TestNodeRevokedStopsServing(t *testing.T) {
	p := newPerimeter(t)
	state := t.TempDir()
	a := startAgent(t, p, "service-a-1", func(c *Config) { c.StateDir = state })
	if imdsAccessKey(t, a) == "" {
		t.Fatal("no credentials before the revocation")
	}
	if _, err := p.ids.RevokeNode(context.Background(), "service-a-1"); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	for imdsAccessKey(t, a) != "" {
		if time.Since(removed) > 10*time.Second {
			t.Fatal("IMDS still serves credentials 10s after the node was removed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	testenv.Latency(t, "the node's removal to IMDS serving nothing", time.Since(removed), 2*time.Second, 10*time.Second)
	code, _, _ := req(t, "GET", a.container+ContainerPath, "Authorization", a.ContainerToken())
	if code != 503 {
		t.Errorf("container endpoint after removal: %d, want 503", code)
	}
	a.Close()

	// The saved certificate is refused; a join token given again re-enrolls.
	b := startAgent(t, p, "service-a-1", func(c *Config) { c.StateDir = state })
	if err := p.ids.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if imdsAccessKey(t, b) == "" {
		t.Error("no credentials after enrolling again")
	}
}

// TestNodeRevokedBeforeWatchStopsServing: a node removed while its agent's watch is not
// open (the agent just started, or the stream is reconnecting) is refused when the watch
// opens: 403 InvalidClientCertificate, before any stream. That refusal is the removal
// the stream would have reported, and the agent stops serving, rather than retrying the
// watch and serving the node's credentials until they expire.
func TestNodeRevokedBeforeWatchStopsServing(t *testing.T) {
	p := newPerimeter(t)
	hold := make(chan struct{})
	p.holdWatch.Store(&hold)
	a := startAgent(t, p, "service-a-1", nil)
	if imdsAccessKey(t, a) == "" {
		t.Fatal("no credentials before the revocation")
	}
	if _, err := p.ids.RevokeNode(context.Background(), "service-a-1"); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	p.holdWatch.Store(nil)
	close(hold)
	for imdsAccessKey(t, a) != "" {
		if time.Since(removed) > 10*time.Second {
			t.Fatal("IMDS still serves credentials 10s after the node was removed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	testenv.Latency(t, "the node's removal to IMDS serving nothing", time.Since(removed), 2*time.Second, 10*time.Second)
}

// TestNodeRefusedOnRefreshStopsServing: with no watch, a refresh that STS refuses because
// the node's certificate is refused (the node was removed) stops the agent serving too.
func TestNodeRefusedOnRefreshStopsServing(t *testing.T) {
	p := newPerimeter(t)
	a := startAgent(t, p, "service-a-1", func(c *Config) { c.NoWatch = true })
	if imdsAccessKey(t, a) == "" {
		t.Fatal("no credentials before the revocation")
	}
	if _, err := p.ids.RevokeNode(context.Background(), "service-a-1"); err != nil {
		t.Fatal(err)
	}
	a.requestRefresh()
	deadline := time.Now().Add(10 * time.Second)
	for imdsAccessKey(t, a) != "" {
		if time.Now().After(deadline) {
			t.Fatal("IMDS still serves credentials after STS refused the node's refresh")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
