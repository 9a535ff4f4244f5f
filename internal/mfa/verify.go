package mfa

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// MaxFailures is how many attempts a device takes without an accepted code before it
// refuses every code until resynchronised: with three steps accepted per attempt, ten
// guesses at a 6-digit code succeed with probability 3e-5.
const MaxFailures = 10

// Window is how many steps before and after now a code may come from when a session is
// asked for (RFC 6238 §5.2 recommends at most one step of network delay); enrolment and
// resynchronisation, where the device's clock may have drifted, look EnrollWindow steps
// either way.
const (
	Window       = 1
	EnrollWindow = 10
)

// Store is what verification needs of the store (store.Store satisfies it).
type Store interface {
	GetMFADevice(ctx context.Context, serial string) (store.MFADevice, error)
	CountMFAAttempt(ctx context.Context, serial, user string) (int, error)
	AcceptMFACode(ctx context.Context, serial, user string, step int64) (bool, error)
}

// Refusal is a code that does not authenticate: wrong, used already, from a device that
// is not the user's, or a device locked after MaxFailures. Callers answer every Refusal
// the same way (which one it was is for the log and the audit record).
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return "mfa code refused: " + r.Reason }

// Verifier checks codes against the store's devices.
type Verifier struct {
	store Store
	now   func() time.Time
}

// NewVerifier returns a Verifier over st; now nil means time.Now.
func NewVerifier(st Store, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{store: st, now: now}
}

// Verify takes code from the device serial enabled for user, once. It returns when the
// code's step began (the time the user authenticated, for aws:MultiFactorAuthAge). A
// refused code is a *Refusal; any other error is the store's.
func (v *Verifier) Verify(ctx context.Context, user, serial, code string) (time.Time, error) {
	if _, err := ParseCode(code); err != nil {
		return time.Time{}, &Refusal{Reason: err.Error()}
	}
	// Counted before it is checked, so concurrent guesses are all counted.
	n, err := v.store.CountMFAAttempt(ctx, serial, user)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, &Refusal{Reason: "no MFA device " + serial + " is enabled for " + user}
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("verify mfa code: %w", err)
	}
	if n > MaxFailures {
		return time.Time{}, &Refusal{Reason: fmt.Sprintf("device %s is locked after %d failed codes; resync it", serial, MaxFailures)}
	}
	d, err := v.store.GetMFADevice(ctx, serial)
	if err != nil {
		return time.Time{}, fmt.Errorf("verify mfa code: %w", err)
	}
	if d.User != user {
		// Deactivated between the two reads.
		return time.Time{}, &Refusal{Reason: "no MFA device " + serial + " is enabled for " + user}
	}
	now := Step(v.now())
	step, ok := match(d.Seed, code, now-Window, now+Window)
	if !ok {
		return time.Time{}, &Refusal{Reason: "the code is not the device's"}
	}
	if step <= d.LastStep {
		return time.Time{}, &Refusal{Reason: "the code (or a later one) was used already"}
	}
	taken, err := v.store.AcceptMFACode(ctx, serial, user, step)
	if err != nil {
		return time.Time{}, fmt.Errorf("verify mfa code: %w", err)
	}
	if !taken {
		// Another request (on this replica or another) took this step or a later one.
		return time.Time{}, &Refusal{Reason: "the code (or a later one) was used already"}
	}
	return StepTime(step), nil
}

// Consecutive finds two consecutive codes of seed, code1 then code2, within EnrollWindow
// steps of now, as enable-mfa-device and resync-mfa-device take them, and returns the
// second code's step.
func Consecutive(seed []byte, code1, code2 string, now time.Time) (int64, bool) {
	if _, err := ParseCode(code1); err != nil {
		return 0, false
	}
	if _, err := ParseCode(code2); err != nil {
		return 0, false
	}
	n := Step(now)
	s1, ok1 := match(seed, code1, n-EnrollWindow, n+EnrollWindow)
	s2, ok2 := match(seed, code2, s1+1, s1+1)
	if !ok1 || !ok2 {
		return 0, false
	}
	return s2, true
}
