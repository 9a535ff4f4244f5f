package store

import "sync"

// Notifier is implemented by stores that can tell holders of in-memory snapshots that
// something changed, so they reload at once instead of at their next poll of Version.
// *Postgres hears every process (LISTEN/NOTIFY); *SQLite hears only writes made through
// the same handle, so other processes sharing its file are still seen by polling Version.
type Notifier interface {
	// Subscribe returns a channel (buffer 1, non-blocking sends, so bursts coalesce) that
	// receives after any committed change that bumps Version, and after the listener
	// reconnects (notifications may have been missed). A receive may also come when
	// nothing changed; the subscriber re-reads what it holds. cancel unsubscribes; after
	// it returns nothing more is sent. The channel is never closed.
	Subscribe() (ch <-chan struct{}, cancel func())
}

// hub fans wakeups out to subscribers.
type hub struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

func (h *hub) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = make(map[chan struct{}]struct{})
	}
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs, ch)
			h.mu.Unlock()
		})
	}
}

// wake sends to every subscriber without blocking: a full buffer already holds a wakeup.
// Sending under the lock is what makes cancel final.
func (h *hub) wake() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
