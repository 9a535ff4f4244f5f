package proctest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Session is a role session that renews itself before it expires, for load that runs
// longer than a session lives (an hour by the spec's maxSessionDuration).
type Session struct {
	creds   atomic.Pointer[aws.Credentials]
	renewed atomic.Int64
	errs    chan error
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// KeepSession assumes the cluster's role with user and keeps doing so: every renew, or
// when 0 once three quarters of the session's lifetime have passed. A failed renewal is
// retried every few seconds (and reported on Errors) while the current session lasts.
func (c *Cluster) KeepSession(ctx context.Context, user aws.Credentials, name string, renew time.Duration) (*Session, error) {
	first, err := c.AssumeRole(ctx, user, name)
	if err != nil {
		return nil, err
	}
	s := &Session{errs: make(chan error, 16)}
	s.creds.Store(&first)
	ctx, s.stop = context.WithCancel(ctx)
	s.wg.Go(func() {
		cur := first
		issued := time.Now()
		for {
			next := renew
			if next <= 0 {
				next = cur.Expires.Sub(issued) * 3 / 4
			}
			wait := time.Until(issued.Add(next))
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				got, err := c.AssumeRole(ctx, user, name)
				if err == nil {
					cur, issued = got, time.Now()
					s.creds.Store(&got)
					s.renewed.Add(1)
					break
				}
				if ctx.Err() != nil {
					return
				}
				select {
				case s.errs <- fmt.Errorf("renew session %s (current one expires %s): %w", name, cur.Expires.Format(time.RFC3339), err):
				default:
				}
				wait = 3 * time.Second
			}
		}
	})
	return s, nil
}

// Creds returns the current session's credentials.
func (s *Session) Creds() aws.Credentials { return *s.creds.Load() }

// Renewals is how many times the session was renewed.
func (s *Session) Renewals() int { return int(s.renewed.Load()) }

// Errors receives failed renewals (the last ones are dropped when nobody reads).
func (s *Session) Errors() <-chan error { return s.errs }

// Close stops renewing.
func (s *Session) Close() {
	s.stop()
	s.wg.Wait()
}
