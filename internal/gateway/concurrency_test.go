package gateway

import (
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/pki"
)

// Concurrent allowed and denied requests, direct and through the endpoint, while the spec is
// swapped: every request gets its own answer and exactly one audit event (run with -race).
func TestConcurrentRequests(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.keys["alice"], e.keys["bob"]
	s := e.session("app", "s1", time.Hour)
	cert := endpointCert(t, e.ca, pki.KindEndpoint, testEndpoint)
	const workers, each = 6, 20
	var wg sync.WaitGroup
	errs := make(chan string, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				var c testCall
				want := 200
				switch (w + i) % 3 {
				case 0:
					c = testCall{method: "GET", path: "/prod/orders", creds: &alice}
				case 1:
					c = testCall{method: "GET", path: "/prod/orders", creds: &bob}
					want = 403
				case 2:
					c = testCall{method: "GET", path: "/prod/private/x", creds: &s, cert: cert, endpointHdrs: viaEndpoint(testAPI, "10.0.1.15")}
				}
				if status, body, _ := e.send(t, c); status != want {
					errs <- body
				}
			}
		}()
	}
	// Reload the same file a few times meanwhile: each new *Spec gets fresh caches.
	for range 3 {
		next, err := parseSpec(e)
		if err != nil {
			t.Fatal(err)
		}
		e.spec.Store(next)
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for b := range errs {
		t.Errorf("unexpected answer: %s", b)
	}
	if n := len(e.audit.take()); n != workers*each {
		t.Errorf("%d audit events for %d requests", n, workers*each)
	}
	for len(e.hits) > 0 {
		<-e.hits
	}
}
