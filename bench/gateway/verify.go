package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/gateway"
)

// assertionLog keeps the first max requests the backend received through the gateway
// (those carrying an identity assertion), so the bench can verify them afterwards as a
// backend would; the backend under load verifies nothing.
type assertionLog struct {
	max  int
	mu   sync.Mutex
	reqs []*http.Request
	on   bool
}

func (l *assertionLog) keep(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.on && len(l.reqs) < l.max && r.Header.Get("X-Phantom-Identity") != "" {
		l.reqs = append(l.reqs, r.Clone(context.Background()))
	}
}

func (l *assertionLog) start() {
	l.mu.Lock()
	l.on, l.reqs = true, nil
	l.mu.Unlock()
}

func (l *assertionLog) stop() []*http.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.on = false
	return l.reqs
}

// verifyCost calls the gateway directly until the backend has kept n assertions, then
// verifies each once (signature, audience, expiry, the request binding, the replay cache)
// with gateway.AssertionVerifier, as a backend in Go would, and returns the CPU time per
// verification: the backend's own cost of the identity assertion, which the bench's
// backend does not pay under load.
func verifyCost(ctx context.Context, p *perimeter, n int) (time.Duration, error) {
	p.assertions.max = n
	p.assertions.start()
	direct := p.targets[1]
	for i := 0; i < 4*n; i++ {
		if err := call(ctx, v4.NewSigner(), p.creds, direct); err != nil {
			p.assertions.stop()
			return 0, err
		}
		p.assertions.mu.Lock()
		enough := len(p.assertions.reqs) >= n
		p.assertions.mu.Unlock()
		if enough {
			break
		}
	}
	reqs := p.assertions.stop()
	if len(reqs) == 0 {
		return 0, fmt.Errorf("the backend received no identity assertion")
	}
	v, err := gateway.NewAssertionVerifier(gateway.AssertionVerifierConfig{Key: p.backendKey, Audience: benchAPI})
	if err != nil {
		return 0, err
	}
	cpu0 := cpuTime()
	for _, r := range reqs {
		if _, err := v.VerifyRequest(r); err != nil {
			return 0, fmt.Errorf("verify an assertion: %w", err)
		}
	}
	// CPU time rather than wall time: the loop runs alone in the process, and other
	// processes on a shared machine stretch its wall time, not its CPU time.
	return (cpuTime() - cpu0) / time.Duration(len(reqs)), nil
}
