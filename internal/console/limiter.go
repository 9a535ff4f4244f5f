package console

import (
	"sync"
	"time"
)

// The sign-in limiter. Failed sign-ins are counted per source address, per access key
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
// Memory is bounded: each table keeps at most maxLimited entries. A new address or key
// that finds its table full, even after forgetting the refilled entries, is not tracked
// (it is never refused for it); the global bucket still paces it.
const (
	signinBurst  = 5                // failures an address may make at once
	signinRefill = 12 * time.Second // one more every 12 s
	keyBurst     = 20
	keyRefill    = 3 * time.Second
	globalBurst  = 200
	globalRefill = 50 * time.Millisecond // 20 failures a second, sustained, before pacing
	globalPace   = 50 * time.Millisecond
	maxDelay     = 5 * time.Second // the longest an attempt is made to wait
	maxLimited   = 10000           // entries per table
)

// buckets are token buckets by name, refilled one token every refill up to burst.
type buckets struct {
	burst  float64
	refill time.Duration
	max    int
	m      map[string]*bucket
	swept  time.Time // when a full table last forgot its refilled buckets
}

type bucket struct {
	tokens float64
	at     time.Time
	pace   time.Time // next free slot while the bucket is empty (paced tables)
}

func newBuckets(burst int, refill time.Duration, max int) *buckets {
	return &buckets{burst: float64(burst), refill: refill, max: max, m: map[string]*bucket{}}
}

func (bs *buckets) level(b *bucket, now time.Time) float64 {
	return min(bs.burst, b.tokens+float64(now.Sub(b.at))/float64(bs.refill))
}

// get returns name's bucket, or nil when it has none (create: a new one, unless the table
// is full even after forgetting refilled buckets).
func (bs *buckets) get(name string, now time.Time, create bool) *bucket {
	if b := bs.m[name]; b != nil || !create {
		return b
	}
	if len(bs.m) >= bs.max {
		// At most once a second, so a flood of new names costs no sweep each.
		if now.Sub(bs.swept) >= time.Second {
			bs.swept = now
			for k, b := range bs.m {
				if bs.level(b, now) >= bs.burst && !b.pace.After(now) {
					delete(bs.m, k)
				}
			}
		}
		if len(bs.m) >= bs.max {
			return nil
		}
	}
	b := &bucket{tokens: bs.burst, at: now}
	bs.m[name] = b
	return b
}

// take spends a token of name's bucket (a failure).
func (bs *buckets) take(name string, now time.Time) {
	if b := bs.get(name, now, true); b != nil {
		b.tokens, b.at = max(0, bs.level(b, now)-1), now
	}
}

// paced returns how long an attempt must wait for its slot when b is empty (0 when it is
// not), taking the slot: slots are interval apart, and none is further than maxDelay
// away.
func paced(b *bucket, level float64, now time.Time, interval time.Duration) time.Duration {
	if level >= 1 {
		return 0
	}
	slot := b.pace
	if slot.Before(now) {
		slot = now
	}
	if d := slot.Sub(now); d >= maxDelay {
		return maxDelay // the lane is full: wait the longest, do not queue further
	}
	b.pace = slot.Add(interval)
	return slot.Sub(now)
}

type limiter struct {
	mu     sync.Mutex
	addrs  *buckets
	keys   *buckets
	global *buckets // one bucket, ""
}

func newLimiter() *limiter {
	return &limiter{
		addrs:  newBuckets(signinBurst, signinRefill, maxLimited),
		keys:   newBuckets(keyBurst, keyRefill, maxLimited),
		global: newBuckets(globalBurst, globalRefill, 1),
	}
}

// admit decides a sign-in attempt from ip for key before its credential is checked: ok
// false when the address must wait retry; otherwise the attempt waits delay first.
func (l *limiter) admit(ip, key string, now time.Time) (ok bool, retry, delay time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.addrs.get(ip, now, false); b != nil {
		if lv := l.addrs.level(b, now); lv < 1 {
			return false, time.Duration((1 - lv) * float64(l.addrs.refill)), 0
		}
	}
	if b := l.keys.get(key, now, false); b != nil && key != "" {
		delay = paced(b, l.keys.level(b, now), now, l.keys.refill)
	}
	if g := l.global.get("", now, true); g != nil {
		delay = max(delay, paced(g, l.global.level(g, now), now, globalPace))
	}
	return true, 0, delay
}

// fail counts a failed sign-in from ip for key.
func (l *limiter) fail(ip, key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addrs.take(ip, now)
	if key != "" {
		l.keys.take(key, now)
	}
	l.global.take("", now)
}
