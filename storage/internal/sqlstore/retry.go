package sqlstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Retry backoff bounds: the first retry waits up to retryBase, each next
// one up to twice as long, never more than retryCap.
const (
	retryBase = 2 * time.Millisecond
	retryCap  = 100 * time.Millisecond
)

// Retry runs fn, and runs it again while it fails with an error retryable
// accepts (a deadlock or lock-wait timeout the database rolled the
// transaction back for), at most attempts times in all. Between attempts
// it sleeps a random ("full jitter") time that grows with each attempt, so
// that transactions that collided do not collide again in lock step. fn
// must be a whole transaction: it is restarted from its beginning.
func Retry(ctx context.Context, attempts int, retryable func(error) bool, fn func() error) error {
	var err error
	for i := 0; i < max(attempts, 1); i++ {
		if i > 0 {
			limit := min(retryBase<<(i-1), retryCap)
			t := time.NewTimer(rand.N(limit) + 1)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%w (retry abandoned: %w)", err, ctx.Err())
			case <-t.C:
			}
		}
		if err = fn(); err == nil || !retryable(err) {
			return err
		}
	}
	return fmt.Errorf("%w (gave up after %d attempts)", err, max(attempts, 1))
}
