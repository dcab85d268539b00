package sqlstore

import (
	"fmt"
	"testing"
	"time"
)

func TestThrottle(t *testing.T) {
	th := NewThrottle(time.Minute)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if !th.Due("a", t0) {
		t.Fatal("a key never written is not due")
	}
	th.Done("a", t0)
	for _, c := range []struct {
		at   time.Time
		want bool
	}{
		{t0.Add(time.Second), false},
		{t0.Add(59 * time.Second), false},
		{t0.Add(time.Minute), true},
		{t0.Add(-time.Second), true}, // the clock went back: write
	} {
		if got := th.Due("a", c.at); got != c.want {
			t.Errorf("Due at %v = %v, want %v", c.at.Sub(t0), got, c.want)
		}
	}
	if !th.Due("b", t0.Add(time.Second)) {
		t.Fatal("keys are independent")
	}

	// Old keys are swept once the map is large.
	for i := range throttleSweepAt {
		th.Done(fmt.Sprint("old", i), t0)
	}
	th.Done("new", t0.Add(2*time.Minute))
	th.mu.Lock()
	n := len(th.last)
	th.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d keys after a sweep, want 1", n)
	}
	if th.Due("new", t0.Add(2*time.Minute+time.Second)) {
		t.Fatal("the swept map forgot a recent key")
	}
}
