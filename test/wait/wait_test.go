package wait

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestForSeesTheCondition(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			n.Add(1)
		}
	}()
	Until(t, 10*time.Second, "three increments", func() bool { return n.Load() == 3 })
}

// fakeTB records a Fatalf instead of ending the test.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = format
	panic(f)
}

func TestForFailsAtTheDeadline(t *testing.T) {
	tb := &fakeTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != tb {
				panic(r)
			}
		}()
		Until(tb, 20*time.Millisecond, "never", func() bool { return false })
	}()
	if tb.failed == "" {
		t.Fatal("For did not fail at its deadline")
	}
}
