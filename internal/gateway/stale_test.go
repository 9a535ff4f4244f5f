package gateway

import (
	"errors"
	"sync/atomic"
	"testing"
)

// TestStaleStateDenies: once Fresh reports the state too old, a call that was allowed is
// refused with 503 in API Gateway's shape, recorded once, and never reaches the backend;
// when the state is fresh again it is allowed again.
func TestStaleStateDenies(t *testing.T) {
	var stale atomic.Bool
	e := newEnv(t, func(c *Config) {
		c.Fresh = func() error {
			if stale.Load() {
				return errors.New("identity: credentials not confirmed by the store recently enough")
			}
			return nil
		}
	})
	alice := e.keys["alice"]
	call := testCall{method: "GET", path: "/prod/orders", creds: &alice}
	if status, body, _ := e.send(t, call); status != 200 {
		t.Fatalf("fresh state: status %d, body %s", status, body)
	}
	e.audit.take()
	<-e.hits

	stale.Store(true)
	status, body, hdr := e.send(t, call)
	if status != 503 || hdr.Get("X-Amzn-Errortype") != "ServiceUnavailableException" {
		t.Fatalf("stale state: status %d, type %q, body %s; want 503 ServiceUnavailableException", status, hdr.Get("X-Amzn-Errortype"), body)
	}
	ev := e.oneEvent(t)
	if ev.ErrorCode != "PerimeterStateStale" || ev.RequestID != hdr.Get("X-Amzn-Requestid") || ev.AdditionalEventData["reason"] == nil {
		t.Errorf("event: errorCode %q, requestID %q, additionalEventData %v", ev.ErrorCode, ev.RequestID, ev.AdditionalEventData)
	}
	e.noHit(t)

	stale.Store(false)
	if status, body, _ := e.send(t, call); status != 200 {
		t.Fatalf("fresh again: status %d, body %s", status, body)
	}
}
