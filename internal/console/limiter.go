package console

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// The sign-in limiter. Sign-in attempts are counted per source address, per access key
// and in all, each in a token bucket that only failures drain:
//
//   - An address that spent its bucket is refused (429, Retry-After) until it refills:
//     one address guessing is stopped.
//   - An access key that spent its bucket has its attempts paced, one per keyRefill, each
//     waiting at most maxDelay: a distributed guess at one key is slowed, and the key's
//     owner still gets in (an attacker cannot lock a user out by failing on the user's
//     key).
//   - When the failures of everyone spend the global bucket, every attempt is paced
//     through one lane, one per globalPace, each waiting at most maxDelay: a flood from
//     many addresses slows the answers, it does not lock anyone out.
//
// The buckets live in the store, so every console replica counts the same attempts. An
// attempt takes its tokens when it is admitted, in one store transaction that locks the
// buckets against every other replica (store.UpdateLimitBuckets), and gives them back
// when it did not fail (signed in, or the credential could not be checked): attempts in
// flight count, so concurrent attempts split across replicas never get past a bucket
// together, and what stays taken is exactly the failures. A bucket full again with no
// pacing slot ahead is deleted (sessions.sweep). When the store cannot be reached no
// attempt is admitted.
const (
	signinBurst  = 5                // failures an address may make at once
	signinRefill = 12 * time.Second // one more every 12 s
	keyBurst     = 20
	keyRefill    = 3 * time.Second
	globalBurst  = 200
	globalRefill = 50 * time.Millisecond // 20 failures a second, sustained, before pacing
	globalPace   = 50 * time.Millisecond
	maxDelay     = 5 * time.Second // the longest an attempt is made to wait
)

// bucketKind is the parameters of one kind of bucket.
type bucketKind struct {
	prefix string
	burst  float64
	refill time.Duration
	pace   time.Duration // 0: refused when empty, not paced
}

var (
	addrBuckets   = bucketKind{"addr/", signinBurst, signinRefill, 0}
	keyBuckets    = bucketKind{"key/", keyBurst, keyRefill, keyRefill}
	globalBuckets = bucketKind{"global", globalBurst, globalRefill, globalPace}
)

// level is b's tokens at now (a bucket never stored is full; time running backwards,
// another replica's clock, refills nothing).
func (k bucketKind) level(b store.LimitBucket, now time.Time) float64 {
	if b.At.IsZero() {
		return k.burst
	}
	return min(k.burst, b.Tokens+float64(max(0, now.Sub(b.At)))/float64(k.refill))
}

// set stores level lv at now in b, with when it is idle again.
func (k bucketKind) set(b *store.LimitBucket, lv float64, now time.Time) {
	if b.At.IsZero() || b.Pace.Before(now) {
		b.Pace = now
	}
	b.Tokens, b.At = lv, now
	b.IdleAt = now.Add(time.Duration((k.burst - lv) * float64(k.refill)))
	b.IdleAt = later(b.IdleAt, b.Pace)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// paced returns how long an attempt must wait for its slot in b's lane, taking the slot:
// slots are k.pace apart, and none is further than maxDelay away.
func (k bucketKind) paced(b *store.LimitBucket, now time.Time) time.Duration {
	slot := b.Pace
	if slot.Before(now) {
		slot = now
	}
	if d := slot.Sub(now); d >= maxDelay {
		return maxDelay // the lane is full: wait the longest, do not queue further
	}
	b.Pace = slot.Add(k.pace)
	b.IdleAt = later(b.IdleAt, b.Pace)
	return slot.Sub(now)
}

// limiter counts sign-in attempts in the store.
type limiter struct{ st SessionStore }

// ticket is an admitted attempt: the buckets it took a token from.
type ticket struct {
	names []string
	kinds []bucketKind
}

var errThrottled = errors.New("throttled")

// admit decides a sign-in attempt from ip for key before its credential is checked: ok
// false when the address must wait retry; otherwise the attempt waits delay first, and
// its outcome is settled with the ticket. An error means the store could not count it:
// the attempt is refused.
func (l *limiter) admit(ctx context.Context, ip, key string, now time.Time) (t ticket, ok bool, retry, delay time.Duration, err error) {
	names := []string{addrBuckets.prefix + ip, globalBuckets.prefix}
	kinds := []bucketKind{addrBuckets, globalBuckets}
	if key != "" {
		names, kinds = append(names, keyBuckets.prefix+key), append(kinds, keyBuckets)
	}
	err = l.st.UpdateLimitBuckets(ctx, names, func(bs []store.LimitBucket) error {
		t, retry, delay = ticket{}, 0, 0
		for i, k := range kinds {
			b := &bs[i]
			lv := k.level(*b, now)
			switch {
			case lv >= 1:
				k.set(b, lv-1, now)
				t.names, t.kinds = append(t.names, names[i]), append(t.kinds, k)
			case k.pace == 0:
				retry = time.Duration((1 - lv) * float64(k.refill))
				return errThrottled // nothing is taken
			default:
				k.set(b, lv, now)
				delay = max(delay, k.paced(b, now))
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, errThrottled):
		return ticket{}, false, retry, 0, nil
	case err != nil:
		return ticket{}, false, 0, 0, fmt.Errorf("%w: sign-in limiter: %w", errSessionStore, err)
	}
	return t, true, 0, delay, nil
}

// settle gives back the tokens of an attempt that did not fail; a failed one keeps them
// taken.
func (l *limiter) settle(ctx context.Context, t ticket, failed bool, now time.Time) error {
	if failed || len(t.names) == 0 {
		return nil
	}
	return l.st.UpdateLimitBuckets(ctx, t.names, func(bs []store.LimitBucket) error {
		for i, k := range t.kinds {
			k.set(&bs[i], min(k.burst, k.level(bs[i], now)+1), now)
		}
		return nil
	})
}
