package sqlstore

import (
	"sync"
	"time"
)

// Throttle limits a write per key (an enrollment's last_seen_at) to about
// once per interval within one process. It is an optimisation, not state:
// it starts empty, each replica has its own, and forgetting a key only
// means one more write. Correctness must never depend on it.
type Throttle struct {
	interval time.Duration
	mu       sync.Mutex
	last     map[string]time.Time
	swept    time.Time
}

// throttleSweepAt is the size from which Done drops expired keys (at most
// once per interval), so that the map holds roughly the keys written in
// the last interval.
const throttleSweepAt = 1024

// NewThrottle returns a Throttle allowing one write per key per interval.
func NewThrottle(interval time.Duration) *Throttle {
	return &Throttle{interval: interval, last: make(map[string]time.Time)}
}

// Due reports whether key's write is due at now: it was not written (as
// far as this process knows) within the interval.
func (t *Throttle) Due(key string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.last[key]
	return !ok || now.Sub(at) >= t.interval || now.Before(at)
}

// Done records that key was written at now.
func (t *Throttle) Done(key string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last[key] = now
	if len(t.last) >= throttleSweepAt && now.Sub(t.swept) >= t.interval {
		for k, at := range t.last {
			if now.Sub(at) >= t.interval {
				delete(t.last, k)
			}
		}
		t.swept = now
	}
}
