//go:build linux

package file

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// groupSyncer makes directory entries (files created, renamed or removed)
// durable for many concurrent writers at once: instead of an fsync per
// directory per write, writers wait for one syncfs(2) of the store's file
// system that started after their change — a group commit. Under
// concurrent load one syncfs covers a whole batch of device requests;
// alone, a writer pays about what a directory fsync costs. File contents
// are still fsynced one by one before their rename, so a crash can never
// expose a torn record.
type groupSyncer struct {
	dir *os.File // any descriptor on the file system will do
	// syncfs is syncfs(2); tests replace it.
	syncfs func(*os.File) error

	mu        sync.Mutex
	cond      sync.Cond
	started   uint64 // generation of the newest syncfs started
	completed uint64 // generation of the newest syncfs finished
	running   bool
	waiting   int              // writers blocked until a running syncfs ends (tests watch it)
	failed    map[uint64]error // generations whose syncfs failed
}

// newGroupSyncer opens dir for syncfs.
func newGroupSyncer(dir string) (*groupSyncer, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	g := &groupSyncer{dir: f, syncfs: syncfs, failed: make(map[uint64]error)}
	g.cond.L = &g.mu
	return g, nil
}

// wait returns once a syncfs that started after the call has finished,
// running it itself if no other writer is: every change made before the
// call is then durable.
func (g *groupSyncer) wait() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	// A syncfs already running may have started before the caller's
	// change, so only the next one counts.
	target := g.started + 1
	for g.completed < target {
		if g.running {
			g.waiting++
			g.cond.Wait()
			g.waiting--
			continue
		}
		g.running = true
		g.started++
		gen := g.started
		g.mu.Unlock()
		err := g.syncfs(g.dir)
		g.mu.Lock()
		g.running = false
		g.completed = gen
		if err != nil {
			g.failed[gen] = err
		}
		g.cond.Broadcast()
	}
	if err, ok := g.failed[target]; ok {
		return fmt.Errorf("syncfs: %w", err)
	}
	// Keep the failures of the last few generations only: a waiter
	// looks at its own target right after it completes.
	for gen := range g.failed {
		if gen+1024 < g.completed {
			delete(g.failed, gen)
		}
	}
	return nil
}

// close releases the descriptor.
func (g *groupSyncer) close() error { return g.dir.Close() }

// syncfs calls syncfs(2) on f's file system.
func syncfs(f *os.File) error {
	for {
		err := unix.Syncfs(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
