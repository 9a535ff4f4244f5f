package mfa

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// TestCodeRFC6238: the SHA-1 test vectors of RFC 6238 Appendix B (8 digits there; a
// 6-digit code is the same value mod 10^6).
func TestCodeRFC6238(t *testing.T) {
	seed := []byte("12345678901234567890")
	for _, tc := range []struct {
		unix int64
		want string
	}{
		{59, "287082"},
		{1111111109, "081804"},
		{1111111111, "050471"},
		{1234567890, "005924"},
		{2000000000, "279037"},
		{20000000000, "353130"},
	} {
		if got := Code(seed, Step(time.Unix(tc.unix, 0))); got != tc.want {
			t.Errorf("Code at %d = %s, want %s", tc.unix, got, tc.want)
		}
	}
}

func TestParseCode(t *testing.T) {
	for _, ok := range []string{"000000", "123456", "999999"} {
		if _, err := ParseCode(ok); err != nil {
			t.Errorf("ParseCode(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "12345", "1234567", "12345a", " 12345", "١٢٣٤٥٦", "12 456", "+12345"} {
		if _, err := ParseCode(bad); err == nil {
			t.Errorf("ParseCode(%q) accepted", bad)
		}
	}
}

func TestSerialNumbers(t *testing.T) {
	const acct = "123456789012"
	for _, tc := range []struct{ path, name, want string }{
		{"", "alice", "arn:aws:iam::123456789012:mfa/alice"},
		{"/", "alice-phone", "arn:aws:iam::123456789012:mfa/alice-phone"},
		{"/people/", "alice", "arn:aws:iam::123456789012:mfa/people/alice"},
	} {
		got, err := SerialNumber(acct, tc.path, tc.name)
		if err != nil || got != tc.want {
			t.Errorf("SerialNumber(%q, %q) = %q, %v; want %q", tc.path, tc.name, got, err, tc.want)
		}
		if _, err := ParseSerial(acct, got); err != nil {
			t.Errorf("ParseSerial(%q): %v", got, err)
		}
	}
	for _, tc := range []struct{ path, name string }{
		{"/", ""}, {"/", "a/b"}, {"/", "a b"}, {"people", "a"}, {"/people", "a"}, {"//", "a"}, {"/", strings.Repeat("a", 227)},
	} {
		if _, err := SerialNumber(acct, tc.path, tc.name); err == nil {
			t.Errorf("SerialNumber(%q, %q) accepted", tc.path, tc.name)
		}
	}
	for _, bad := range []string{
		"arn:aws:iam::210987654321:mfa/alice", // another account
		"arn:aws:iam::123456789012:user/alice",
		"arn:aws:iam::123456789012:mfa/",
		"arn:aws:iam::123456789012:mfa//x",
		"GAHT12345678", // a hardware token's serial: not a virtual device of this perimeter
		"arn:aws:iam::123456789012:mfa/a\x00",
		"arn:aws:iam::123456789012:mfa/" + strings.Repeat("a", 230),
	} {
		if _, err := ParseSerial(acct, bad); err == nil {
			t.Errorf("ParseSerial(%q) accepted", bad)
		}
	}
}

func TestURI(t *testing.T) {
	seed := []byte("12345678901234567890")
	got := URI("Phantom", "alice@123456789012", seed)
	want := "otpauth://totp/Phantom:alice@123456789012?issuer=Phantom&secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	if got != want {
		t.Errorf("URI = %s\nwant  %s", got, want)
	}
}

// memStore is a device store in memory with the store's compare-and-set semantics.
type memStore struct {
	mu sync.Mutex
	d  store.MFADevice
}

func (m *memStore) GetMFADevice(_ context.Context, serial string) (store.MFADevice, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if serial != m.d.Serial {
		return store.MFADevice{}, store.ErrNotFound
	}
	return m.d, nil
}

func (m *memStore) CountMFAAttempt(_ context.Context, serial, user string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if serial != m.d.Serial || user != m.d.User || user == "" {
		return 0, store.ErrNotFound
	}
	m.d.Failures++
	return m.d.Failures, nil
}

func (m *memStore) AcceptMFACode(_ context.Context, serial, user string, step int64) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if serial != m.d.Serial || user != m.d.User || step <= m.d.LastStep {
		return false, nil
	}
	m.d.LastStep, m.d.Failures = step, 0
	return true, nil
}

const serial = "arn:aws:iam::123456789012:mfa/alice"

func newDevice(now time.Time) *memStore {
	return &memStore{d: store.MFADevice{Serial: serial, User: "alice", Seed: []byte("12345678901234567890"), LastStep: Step(now) - 5}}
}

func refused(t *testing.T, err error, what string) {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) {
		t.Fatalf("%s: err = %v, want a refusal", what, err)
	}
}

func TestVerify(t *testing.T) {
	now := time.Unix(1111111111, 0)
	st := newDevice(now)
	v := NewVerifier(st, func() time.Time { return now })
	seed := st.d.Seed
	ctx := context.Background()

	at, err := v.Verify(ctx, "alice", serial, Code(seed, Step(now)))
	if err != nil {
		t.Fatalf("the current code: %v", err)
	}
	if !at.Equal(StepTime(Step(now))) || now.Sub(at) >= Period {
		t.Errorf("authenticated at %s, want the start of the step of %s", at, now)
	}
	// The same code twice: refused (RFC 6238 §5.2).
	_, err = v.Verify(ctx, "alice", serial, Code(seed, Step(now)))
	refused(t, err, "the same code again")
	// The previous step's code, after the current one was used: refused too.
	_, err = v.Verify(ctx, "alice", serial, Code(seed, Step(now)-1))
	refused(t, err, "an earlier code after a later one")
	// The next step's code (the device's clock a little ahead) is accepted once.
	if _, err := v.Verify(ctx, "alice", serial, Code(seed, Step(now)+1)); err != nil {
		t.Errorf("the next step's code: %v", err)
	}
	// Codes beyond the window, another user, another device, a malformed code.
	_, err = v.Verify(ctx, "alice", serial, Code(seed, Step(now)+3))
	refused(t, err, "a code three steps ahead")
	_, err = v.Verify(ctx, "bob", serial, Code(seed, Step(now)+2))
	refused(t, err, "another user naming alice's device")
	_, err = v.Verify(ctx, "alice", "arn:aws:iam::123456789012:mfa/other", Code(seed, Step(now)+2))
	refused(t, err, "an unknown device")
	_, err = v.Verify(ctx, "alice", serial, "12345")
	refused(t, err, "a 5-digit code")
}

// TestVerifyLocksAfterFailures: MaxFailures wrong codes lock the device; the right code is
// refused then, until a resync clears the count.
func TestVerifyLocksAfterFailures(t *testing.T) {
	now := time.Unix(2000000000, 0)
	st := newDevice(now)
	v := NewVerifier(st, func() time.Time { return now })
	good := Code(st.d.Seed, Step(now))
	bad := "000000"
	if bad == good {
		bad = "111111"
	}
	for i := 0; i < MaxFailures; i++ {
		_, err := v.Verify(context.Background(), "alice", serial, bad)
		refused(t, err, "a wrong code")
	}
	_, err := v.Verify(context.Background(), "alice", serial, good)
	refused(t, err, "the right code on a locked device")
	st.d.Failures = 0 // what ResyncMFADevice does
	if _, err := v.Verify(context.Background(), "alice", serial, good); err != nil {
		t.Errorf("after resync: %v", err)
	}
}

// TestVerifyConcurrentReplay: one code sent by many requests at once is accepted once.
func TestVerifyConcurrentReplay(t *testing.T) {
	now := time.Unix(1234567890, 0)
	st := newDevice(now)
	v := NewVerifier(st, func() time.Time { return now })
	code := Code(st.d.Seed, Step(now))
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(context.Background(), "alice", serial, code); err == nil {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("one code accepted %d times", ok.Load())
	}
}

func TestConsecutive(t *testing.T) {
	seed := []byte("12345678901234567890")
	now := time.Unix(1700000000, 0)
	n := Step(now)
	for _, drift := range []int64{-EnrollWindow, -3, 0, 4, EnrollWindow - 1} {
		s, ok := Consecutive(seed, Code(seed, n+drift), Code(seed, n+drift+1), now)
		if !ok || s != n+drift+1 {
			t.Errorf("drift %d: got step %d, %v", drift, s, ok)
		}
	}
	if _, ok := Consecutive(seed, Code(seed, n), Code(seed, n+2), now); ok {
		t.Error("two codes a step apart accepted as consecutive")
	}
	if _, ok := Consecutive(seed, Code(seed, n+1), Code(seed, n), now); ok {
		t.Error("codes in the wrong order accepted")
	}
	if _, ok := Consecutive(seed, Code(seed, n-EnrollWindow-5), Code(seed, n-EnrollWindow-4), now); ok {
		t.Error("codes from long ago accepted")
	}
}
