package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// findings lists the perimeter's findings (archived or not) the way an operator would:
// `phantom findings list --output json` on the data directory `phantom up` runs.
func (u *upServer) findings(t *testing.T) []detect.Finding {
	t.Helper()
	out, err := exec.Command(u.bin, "findings", "list", "--all", "--output", "json", "--data-dir", u.dataDir).Output()
	if err != nil {
		t.Fatalf("phantom findings list: %v", err)
	}
	var doc struct{ Findings []detect.Finding }
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("phantom findings list printed %q: %v", out, err)
	}
	return doc.Findings
}

// awaitFinding polls for a finding of a type containing typ about principal, and
// returns it with how long after since it was first seen.
func (u *upServer) awaitFinding(t *testing.T, typ, principal string, within time.Duration, since time.Time) (detect.Finding, time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, f := range u.findings(t) {
			if k := f.Resource.AccessKeyDetails; strings.Contains(f.Type, typ) && k != nil &&
				(strings.Contains(k.PrincipalARN, principal) || k.AccessKeyID == principal) {
				return f, f.CreatedAt.Sub(since)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s finding about %s within %s; findings: %s", typ, principal, within, summarize(u.findings(t)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func summarize(fs []detect.Finding) string {
	var b strings.Builder
	for _, f := range fs {
		p := ""
		if f.Resource.AccessKeyDetails != nil {
			p = f.Resource.AccessKeyDetails.PrincipalARN
		}
		fmt.Fprintf(&b, "\n  %s %.1f x%d %s", f.Type, f.Severity, f.Service.Count, p)
	}
	return b.String()
}

// TestUpDetection runs the detection scenarios against `phantom up`: normal traffic of the
// workload and the demo user raises nothing; the node's credentials replayed from another
// address raise an exfiltration finding within 1 s, the role's sessions are revoked
// automatically and the stolen credentials' next call is denied; an access-denied sweep
// raises a recon finding and a burst of bad signatures a brute-force finding — and
// nothing else is found.
func TestUpDetection(t *testing.T) {
	testenv.LookPath(t, "curl")
	if testing.Short() {
		t.Skip("runs phantom up")
	}
	u := startUp(t, buildPhantom(t))
	user := u.user()
	api := u.env["PHANTOM_API_URL"]
	viaEndpoint := func(path string) string { return "https://" + u.env["PHANTOM_ENDPOINT_ADDR"] + "/prod" + path }

	// Normal traffic: Service A through its agent, proxy and endpoint; the demo user's reads.
	sdk := u.newSDKServiceA(t, "imds")
	var stolen aws.Credentials
	for i := range 10 {
		r, creds := sdk.call(t, u.env["PHANTOM_NODE_API_URL"])
		if r.Status != http.StatusOK {
			t.Fatalf("Service A call %d: %s", i, r)
		}
		stolen = creds
		if r := u.curl(t, &user, viaEndpoint(fmt.Sprintf("/orders/%d", i))); r.Status != http.StatusOK && r.Status != http.StatusNotFound {
			t.Fatalf("demo user read %d: %s", i, r)
		}
	}
	time.Sleep(500 * time.Millisecond) // the detector has seen all of it
	if fs := u.findings(t); len(fs) != 0 {
		t.Fatalf("normal traffic raised findings:%s", summarize(fs))
	}

	t.Run("exfiltration: node credentials replayed from another address", func(t *testing.T) {
		c := u.goClient(t, nil)
		c.Transport.(*http.Transport).DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext
		replayed := time.Now()
		if r := u.signedGo(t, c, stolen, api, nil); r.Status != http.StatusForbidden {
			t.Fatalf("replay from 127.0.0.2: %s", r)
		}
		// Target 1 s; reported, and a failure only past 5 s (a loaded CI machine).
		f, latency := u.awaitFinding(t, "InstanceCredentialExfiltration", "assumed-role/service-a/service-a-1", 6*time.Second, replayed)
		testenv.Latency(t, fmt.Sprintf("exfiltration finding %s (severity %.1f) after the replayed call", f.Type, f.Severity), latency, time.Second, 5*time.Second)
		// The response revoked the role's sessions: the stolen credentials, used from the
		// node itself where they worked before, are now denied.
		var r reply
		eventually(t, "stolen credentials denied after the automatic revocation", func() error {
			if r = u.signedGo(t, u.goClient(t, nil), stolen, api, nil); r.Status != http.StatusForbidden {
				return fmt.Errorf("still %s", r)
			}
			return nil
		})
		if ev := u.eventFor(t, r); ev.ErrorCode != "AccessDenied" {
			t.Fatalf("revoked session's audit event: %+v", ev)
		}
		u.awaitEvent(t, "the audited revocation", func(e *audit.Event) bool {
			return e.EventSource == "detector.phantom.amazonaws.com" && e.EventName == "RevokeSessions" && e.ErrorCode == ""
		})
	})

	t.Run("recon: an access-denied sweep", func(t *testing.T) {
		start := time.Now()
		for i := range 15 {
			r := u.curl(t, &user, viaEndpoint(fmt.Sprintf("/admin/resource-%d", i)))
			if r.Status != http.StatusForbidden {
				t.Fatalf("sweep call %d: %s", i, r)
			}
		}
		f, _ := u.awaitFinding(t, detect.TypeAccessDenied, "user/demo", 3*time.Second, start)
		t.Logf("recon finding %s count %d", f.Type, f.Service.Count)
	})

	t.Run("brute force: a burst of bad signatures", func(t *testing.T) {
		start := time.Now()
		bad := user
		bad.SecretAccessKey = strings.Repeat("y", 40)
		for i := range 15 {
			if r := u.curl(t, &bad, api); r.Status != http.StatusForbidden {
				t.Fatalf("bad signature %d: %s", i, r)
			}
		}
		f, _ := u.awaitFinding(t, detect.TypeBruteForce, user.AccessKeyID, 3*time.Second, start)
		t.Logf("brute force finding %s count %d", f.Type, f.Service.Count)
	})

	// Nothing else: exactly these three findings.
	fs := u.findings(t)
	if len(fs) != 3 {
		t.Fatalf("want exactly the exfiltration, recon and brute-force findings, got:%s", summarize(fs))
	}
}
