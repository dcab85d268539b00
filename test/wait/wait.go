// Package wait lets a test wait for an event it cannot be told of
// directly (a delivery another goroutine or process makes, a background
// job's lease): it polls a condition until it holds, failing the test at
// a deadline (STYLE §10). Prefer a channel or testing/synctest where the
// code under test can signal.
package wait

import (
	"testing"
	"time"
)

// Poll is how often For checks its condition.
const Poll = 5 * time.Millisecond

// For polls cond until it holds, failing tb with what() if it has not
// within timeout.
func For(tb testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("after %v, still waiting for %s", timeout, what())
		}
		time.Sleep(Poll)
	}
}

// Until is For with a fixed description.
func Until(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	For(tb, timeout, cond, func() string { return what })
}
