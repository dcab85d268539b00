package pgsql

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/lib/pq"
)

func TestWithRetry(t *testing.T) {
	deadlock := fmt.Errorf("acking: %w", &pq.Error{Code: "40P01", Message: "deadlock detected"})
	serialization := &pq.Error{Code: "40001", Message: "could not serialize access"}
	other := &pq.Error{Code: "23505", Message: "duplicate key"}
	for _, tc := range []struct {
		name      string
		failures  []error // returned by the first attempts, in order
		wantCalls int
		wantErr   error
	}{
		{"success", nil, 1, nil},
		{"deadlock then success", []error{deadlock}, 2, nil},
		{"conflicts then success", []error{serialization, deadlock, serialization}, 4, nil},
		{"gives up", []error{deadlock, deadlock, deadlock, deadlock, deadlock, deadlock}, maxAttempts, deadlock},
		{"not retryable", []error{other}, 1, other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := withRetry(context.Background(), func() error {
				calls++
				if calls <= len(tc.failures) {
					return tc.failures[calls-1]
				}
				return nil
			})
			if calls != tc.wantCalls || !errors.Is(err, tc.wantErr) {
				t.Fatalf("%d calls, error %v; want %d calls, error %v", calls, err, tc.wantCalls, tc.wantErr)
			}
		})
	}
	t.Run("context ends the wait", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		err := withRetry(ctx, func() error {
			calls++
			cancel()
			return deadlock
		})
		if calls != 1 || !errors.Is(err, deadlock) {
			t.Fatalf("%d calls, error %v; want 1 call and the deadlock", calls, err)
		}
	})
}
