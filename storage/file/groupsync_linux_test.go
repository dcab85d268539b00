//go:build linux

package file

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGroupSyncer checks the group commit: a writer never returns before
// a syncfs that started after it called, writers arriving during a
// running syncfs share the next one, and a failed syncfs is reported to
// the writers that relied on it.
func TestGroupSyncer(t *testing.T) {
	g, err := newGroupSyncer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()

	// The real syncfs works.
	if err := g.wait(); err != nil {
		t.Fatal(err)
	}

	var calls atomic.Int32
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	fail := atomic.Bool{}
	g.syncfs = func(*os.File) error {
		calls.Add(1)
		entered <- struct{}{}
		<-release
		if fail.Load() {
			return errors.New("disk on fire")
		}
		return nil
	}

	// The first writer starts a syncfs and blocks in it.
	first := make(chan error, 1)
	go func() { first <- g.wait() }()
	<-entered
	// Ten writers arrive while it runs: the running syncfs may predate
	// their changes, so none of them may return with it.
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() { errs <- g.wait() })
	}
	waitWaiting(t, g, 10)
	release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// Exactly one more syncfs serves all ten; make it fail. Until it
	// ends, none of them has returned: the first syncfs did not count
	// for them.
	<-entered
	waitWaiting(t, g, 9) // one of the ten runs the syncfs, nine wait on it
	if n := len(errs); n != 0 {
		t.Fatalf("%d writers returned on a syncfs that started before they called", n)
	}
	fail.Store(true)
	release <- struct{}{}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Error("a writer relying on a failed syncfs got no error")
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d syncfs calls for 11 writers in two waves, want 2", n)
	}

	// After a failure, the next writer gets a fresh, successful syncfs.
	fail.Store(false)
	done := make(chan error, 1)
	go func() { done <- g.wait() }()
	<-entered
	release <- struct{}{}
	if err := <-done; err != nil {
		t.Errorf("after recovery: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d syncfs calls after recovery, want 3", n)
	}
}

// waitWaiting waits until n writers are blocked on g's running syncfs.
func waitWaiting(t *testing.T, g *groupSyncer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		waiting := g.waiting
		g.mu.Unlock()
		if waiting == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writers waiting on the running syncfs, want %d", waiting, n)
		}
		runtime.Gosched()
	}
}
