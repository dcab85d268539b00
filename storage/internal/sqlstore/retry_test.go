package sqlstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRetry(t *testing.T) {
	ctx := context.Background()
	deadlock := errors.New("deadlock")
	other := errors.New("other")
	isDeadlock := func(err error) bool { return errors.Is(err, deadlock) }
	failing := func(n int, err error) (func() error, *int) {
		calls := 0
		return func() error {
			calls++
			if calls <= n {
				return err
			}
			return nil
		}, &calls
	}

	fn, calls := failing(2, deadlock)
	if err := Retry(ctx, 5, isDeadlock, fn); err != nil || *calls != 3 {
		t.Fatalf("two deadlocks then success: %v after %d calls; want nil after 3", err, *calls)
	}
	fn, calls = failing(10, deadlock)
	err := Retry(ctx, 4, isDeadlock, fn)
	if !errors.Is(err, deadlock) || *calls != 4 {
		t.Fatalf("deadlocks every time: %v after %d calls; want the deadlock after 4", err, *calls)
	}
	fn, calls = failing(10, other)
	if err := Retry(ctx, 4, isDeadlock, fn); !errors.Is(err, other) || *calls != 1 {
		t.Fatalf("an error not retried: %v after %d calls; want it after 1", err, *calls)
	}
	fn, calls = failing(10, deadlock)
	if err := Retry(ctx, 0, isDeadlock, fn); !errors.Is(err, deadlock) || *calls != 1 {
		t.Fatalf("attempts 0: %v after %d calls; want one attempt", err, *calls)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	fn, calls = failing(10, deadlock)
	err = Retry(cancelled, 5, isDeadlock, fn)
	if !errors.Is(err, deadlock) || !errors.Is(err, context.Canceled) || *calls != 1 {
		t.Fatalf("cancelled context: %v after %d calls; want deadlock and Canceled after 1", err, *calls)
	}

	// The backoff stays small: ten attempts are over in well under a
	// second even at the cap.
	start := time.Now()
	fn, _ = failing(100, deadlock)
	Retry(ctx, 10, isDeadlock, fn)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("10 attempts took %v", d)
	}
}
