package console

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// TestNodesPage: the nodes page lists every node of the spec and every enrolled one with
// its status, certificate serial and expiry and last contact; it needs
// ec2:DescribeInstances, and a denial is audited.
func TestNodesPage(t *testing.T) {
	e := newEnv(t)
	e.st.nodes = []store.Node{
		{Name: "service-a-1", Role: "app", CertSerial: "5ca1ab1e", EnrolledAt: t0.Add(-48 * time.Hour), CertNotAfter: t0.Add(24 * time.Hour),
			LastContact: t0.Add(-30 * time.Second), LastContactIP: "10.0.1.15"},
		{Name: "retired-9", Role: "app", CertSerial: "0dd", EnrolledAt: t0.Add(-72 * time.Hour), CertNotAfter: t0.Add(-time.Hour)},
	}
	e.ids.nodeRevoked = map[string]time.Time{"retired-9": t0.Add(-time.Hour)}
	r := e.signedIn(aliceKey).get("/nodes")
	if r.status != http.StatusOK {
		t.Fatalf("GET /nodes: %d %s", r.status, r.body)
	}
	for _, want := range []string{"service-a-1", "5ca1ab1e", "2026-11-30 03:00:00", "2026-11-29 02:59:30", "10.0.1.15", // active, with its certificate and contact
		"service-a-2", "NotEnrolled", // in the spec, never enrolled
		"retired-9", "Revoked", "(not in the spec)"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the nodes page does not show %q", want)
		}
	}
	if strings.Count(r.body, ">Active<") != 1 {
		t.Errorf("want exactly one Active node")
	}
	if r := e.signedIn(bobKey).get("/nodes"); r.status != http.StatusForbidden {
		t.Fatalf("bob (no ec2:DescribeInstances): %d", r.status)
	}
	if evs := e.aud.named("DescribeInstances"); len(evs) != 1 || evs[0].ErrorCode != "AccessDenied" {
		t.Fatalf("denial audit: %+v", evs)
	}
}
