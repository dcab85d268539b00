package storagetest

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// testConcurrency: enqueuers, devices draining their queues (two pollers
// on one of them), TokenUpdates, push-info reads and stray reports all run
// at once. Nothing is lost (every command reaches a final status on every
// device, every TokenUpdate is counted), nothing is duplicated (a command
// is never handed out again once final to a single poller, and the queues
// end empty), and each enqueuer's commands arrive in its order. Run it
// under -race.
func testConcurrency(t *testing.T, s storage.Store) {
	const (
		devices       = 6
		enqueuers     = 3
		perEnqueuer   = 15
		tokenUpdaters = 2
		tokenUpdates  = 5
	)
	ctx := context.Background()
	devs := make([]*Channel, devices)
	ids := make([]string, devices)
	for i := range devs {
		devs[i] = NewDevice()
		ids[i] = devs[i].ID()
	}
	Enroll(t, s, devs...)

	// Every command is built before any goroutine starts, so the origin
	// map is read-only while they run.
	type origin struct{ enqueuer, index int }
	cmds := make([][]*mdm.Command, enqueuers)
	origins := make(map[string]origin)
	for e := range cmds {
		cmds[e] = make([]*mdm.Command, perEnqueuer)
		for k := range cmds[e] {
			cmds[e][k] = NewCommand("DeviceInformation")
			origins[cmds[e][k].CommandUUID] = origin{e, k}
		}
	}
	// Every fifth command is answered NotNow the first time it is seen.
	notNowFirst := func(uuid string) bool { return origins[uuid].index%5 == 2 }

	var enqueued atomic.Bool
	var enqWG, wg sync.WaitGroup
	for e := range enqueuers {
		enqWG.Go(func() {
			for _, cmd := range cmds[e] {
				errs, err := s.EnqueueCommand(ctx, ids, cmd)
				if err != nil {
					t.Errorf("enqueue %s: %v", cmd.CommandUUID, err)
					continue
				}
				for id, err := range errs {
					if err != nil {
						t.Errorf("enqueue %s to %s: %v", cmd.CommandUUID, id, err)
					}
				}
			}
		})
	}
	wg.Go(func() {
		enqWG.Wait()
		enqueued.Store(true)
	})

	// acked[i] collects the commands device i answered finally.
	acked := make([]map[string]bool, devices)
	var ackedMu sync.Mutex
	poll := func(dev int, strict bool) {
		c := devs[dev]
		r := c.Request()
		seen := make(map[string]bool)
		notNowed := make(map[string]bool)
		last := make([]int, enqueuers)
		for i := range last {
			last[i] = -1
		}
		skip := false
		for {
			// Read before polling: if every enqueue had finished before
			// an empty poll, the queue really is drained.
			done := enqueued.Load()
			cmd, err := s.RetrieveNextCommand(r)
			if err != nil {
				t.Errorf("device %d: next command: %v", dev, err)
				return
			}
			if cmd == nil {
				if skip {
					skip = false
					if err := s.StoreCommandReport(r, c.Idle()); err != nil {
						t.Errorf("device %d: Idle: %v", dev, err)
						return
					}
					continue
				}
				if done {
					return
				}
				runtime.Gosched()
				continue
			}
			uuid := cmd.CommandUUID
			o, ok := origins[uuid]
			if !ok {
				t.Errorf("device %d: handed unknown command %s", dev, uuid)
				return
			}
			ackedMu.Lock()
			final := acked[dev][uuid]
			ackedMu.Unlock()
			if strict && final {
				t.Errorf("device %d: command %s handed out again after its final status", dev, uuid)
				return
			}
			if !seen[uuid] {
				seen[uuid] = true
				if strict && o.index <= last[o.enqueuer] {
					t.Errorf("device %d: enqueuer %d's command %d arrived after its command %d", dev, o.enqueuer, o.index, last[o.enqueuer])
				}
				last[o.enqueuer] = max(last[o.enqueuer], o.index)
			}
			status := mdm.StatusAcknowledged
			if notNowFirst(uuid) && !notNowed[uuid] {
				notNowed[uuid] = true
				status = mdm.StatusNotNow
			}
			if err := s.StoreCommandReport(r, c.Report(uuid, status)); err != nil {
				t.Errorf("device %d: report %s %s: %v", dev, status, uuid, err)
				return
			}
			if status == mdm.StatusNotNow {
				skip = true // deferred until this poller's next Idle
			} else {
				ackedMu.Lock()
				acked[dev][uuid] = true
				ackedMu.Unlock()
			}
		}
	}
	for i := range devs {
		acked[i] = make(map[string]bool)
		wg.Go(func() { poll(i, i != 0) })
	}
	// A second poller on device 0: the same enrollment from two
	// connections at once. At-least-once allows both to be handed the
	// same command; the store must still end consistent.
	wg.Go(func() { poll(0, false) })

	// TokenUpdates (from two goroutines at once, so increments of one
	// tally race) and push-info reads on the same enrollments meanwhile.
	for range tokenUpdaters {
		wg.Go(func() {
			for range tokenUpdates {
				for _, c := range devs[1:] {
					if err := s.StoreTokenUpdate(c.Request(), c.TokenUpdate(nil)); err != nil {
						t.Errorf("TokenUpdate %s: %v", c.ID(), err)
					}
				}
				info, err := s.RetrievePushInfo(ctx, ids)
				if err != nil || len(info) != devices {
					t.Errorf("push info during load: %d of %d, %v", len(info), devices, err)
				}
			}
		})
	}
	// Stray reports for commands nobody enqueued.
	wg.Go(func() {
		for i := range 3 * devices {
			c := devs[i%devices]
			if err := s.StoreCommandReport(c.Request(), c.Report(NewUUID(), mdm.StatusAcknowledged)); err != nil {
				t.Errorf("stray report: %v", err)
			}
		}
	})
	wg.Wait()
	if t.Failed() {
		return
	}

	for i, c := range devs {
		if len(acked[i]) != enqueuers*perEnqueuer {
			t.Errorf("device %d answered %d commands finally, want %d", i, len(acked[i]), enqueuers*perEnqueuer)
		}
		wantNone(t, s, c)
	}
	for _, c := range devs[1:] {
		wantTally(t, s, c, 1+tokenUpdaters*tokenUpdates)
	}
}
