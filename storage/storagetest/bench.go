package storagetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// EnrollDevices enrolls n new device channels in store and returns them.
// They share one identity certificate (storage never checks it) and skip
// Authenticate: an enrollment is known, and can be queued to, from its
// first TokenUpdate. Benchmarks use it to build their fleet.
func EnrollDevices(tb testing.TB, store storage.Store, n int) []*Channel {
	tb.Helper()
	cert := NewIdentityCert("storagetest fleet")
	devs := make([]*Channel, n)
	for i := range devs {
		devs[i] = newChannel(mdm.Enrollment{UDID: NewUUID()}, cert)
		if err := store.StoreTokenUpdate(devs[i].Request(), devs[i].TokenUpdate(nil)); err != nil {
			tb.Fatalf("TokenUpdate: %v", err)
		}
	}
	return devs
}

// commandWork is a command to enqueue and the device's Acknowledged
// report of it.
type commandWork struct {
	cmd    *mdm.Command
	report *mdm.CommandResults
}

// commandsToAcknowledge hands out new commands with d's Acknowledged
// reports of them, built in untimed batches (see batched).
func commandsToAcknowledge(b *testing.B, d *Channel) func() commandWork {
	return batched(b, 256, func() commandWork {
		cmd := NewCommand("ProfileList")
		return commandWork{cmd, d.Report(cmd.CommandUUID, mdm.StatusAcknowledged)}
	})
}

// batched returns a function handing out values made by build, made in
// batches of n with the timer stopped, so that building them is not timed
// and the timer (whose stops are costly) stops rarely.
func batched[T any](b *testing.B, n int, build func() T) func() T {
	var buf []T
	return func() T {
		if len(buf) == 0 {
			b.StopTimer()
			for range n {
				buf = append(buf, build())
			}
			b.StartTimer()
		}
		v := buf[0]
		buf = buf[1:]
		return v
	}
}

// BenchmarkNextCommand times RetrieveNextCommand for an enrollment that has
// already answered history commands (all Acknowledged) and has one pending.
// DESIGN.md §2 wants its cost independent of history.
func BenchmarkNextCommand(b *testing.B, store storage.Store, history int) {
	ctx := context.Background()
	d := EnrollDevices(b, store, 1)[0]
	ids := []string{d.ID()}
	for range history {
		cmd := NewCommand("ProfileList")
		if _, err := store.EnqueueCommand(ctx, ids, cmd); err != nil {
			b.Fatalf("enqueue: %v", err)
		}
		// As a device does: fetch, then answer. (The lookup also lets
		// PostgreSQL reclaim the answered rows' index entries, as real
		// traffic does, where nothing else vacuums.)
		if _, err := store.RetrieveNextCommand(d.Request()); err != nil {
			b.Fatalf("next command: %v", err)
		}
		if err := store.StoreCommandReport(d.Request(), d.Report(cmd.CommandUUID, mdm.StatusAcknowledged)); err != nil {
			b.Fatalf("report: %v", err)
		}
	}
	pending := NewCommand("DeviceInformation")
	if _, err := store.EnqueueCommand(ctx, ids, pending); err != nil {
		b.Fatalf("enqueue: %v", err)
	}
	r := d.Request()
	for b.Loop() {
		cmd, err := store.RetrieveNextCommand(r)
		if err != nil {
			b.Fatalf("next command: %v", err)
		}
		if cmd == nil || cmd.CommandUUID != pending.CommandUUID {
			b.Fatalf("next command: got %v, want %s", cmd, pending.CommandUUID)
		}
	}
}

// BenchmarkEnqueue times one EnqueueCommand to targets enrolled devices
// (enrolled first, untimed), and reports the cost per target as well.
func BenchmarkEnqueue(b *testing.B, store storage.Store, targets int) {
	devs := EnrollDevices(b, store, targets)
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = d.ID()
	}
	BenchmarkEnqueueTo(b, store, ids)
}

// BenchmarkEnqueueTo times one EnqueueCommand to ids, which must be known
// enrollments (see EnrollDevices). It lets a backend build its fleet in a
// cheaper mode than the one it is timed in.
func BenchmarkEnqueueTo(b *testing.B, store storage.Store, ids []string) {
	ctx := context.Background()
	newCommand := batched(b, 64, func() *mdm.Command { return NewCommand("InstallProfile") })
	n := 0
	for b.Loop() {
		cmd := newCommand()
		errs, err := store.EnqueueCommand(ctx, ids, cmd)
		if err != nil {
			b.Fatalf("enqueue: %v", err)
		}
		for id, err := range errs {
			if err != nil {
				b.Fatalf("enqueue to %s: %v", id, err)
			}
		}
		n++
	}
	if n > 0 && len(ids) > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*len(ids)), "ns/target")
	}
}

// BenchmarkCommandRoundTrip times one command's whole life on one
// enrollment: enqueue, hand out (RetrieveNextCommand), Acknowledged
// report — the work of one API call and one device request.
func BenchmarkCommandRoundTrip(b *testing.B, store storage.Store) {
	ctx := context.Background()
	d := EnrollDevices(b, store, 1)[0]
	ids := []string{d.ID()}
	r := d.Request()
	next := commandsToAcknowledge(b, d)
	for b.Loop() {
		w := next()
		if _, err := store.EnqueueCommand(ctx, ids, w.cmd); err != nil {
			b.Fatalf("enqueue: %v", err)
		}
		got, err := store.RetrieveNextCommand(r)
		if err != nil || got == nil {
			b.Fatalf("next command: %v, %v", got, err)
		}
		if err := store.StoreCommandReport(r, w.report); err != nil {
			b.Fatalf("report: %v", err)
		}
	}
}

// BenchmarkReportAndNext times the server's hot path for a device working
// through its queue: store an Acknowledged report, then fetch the next
// command. depth commands are queued at a time, outside the timer.
func BenchmarkReportAndNext(b *testing.B, store storage.Store, depth int) {
	benchmarkReportAndNext(b, store, depth, func(r *mdm.Request, report *mdm.CommandResults) (*mdm.Command, error) {
		if err := store.StoreCommandReport(r, report); err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		return store.RetrieveNextCommand(r)
	})
}

// benchmarkReportAndNext works one device through depth-deep queues,
// timing reportAndNext (store a report, fetch the next command) and
// checking it hands out the commands in order.
func benchmarkReportAndNext(b *testing.B, store storage.Store, depth int,
	reportAndNext func(*mdm.Request, *mdm.CommandResults) (*mdm.Command, error)) {
	ctx := context.Background()
	d := EnrollDevices(b, store, 1)[0]
	ids := []string{d.ID()}
	r := d.Request()
	var queue []*mdm.Command
	var reports []*mdm.CommandResults
	for b.Loop() {
		if len(queue) == 0 {
			b.StopTimer()
			for range depth {
				cmd := NewCommand("ProfileList")
				if _, err := store.EnqueueCommand(ctx, ids, cmd); err != nil {
					b.Fatalf("enqueue: %v", err)
				}
				queue = append(queue, cmd)
				reports = append(reports, d.Report(cmd.CommandUUID, mdm.StatusAcknowledged))
			}
			b.StartTimer()
		}
		next, err := reportAndNext(r, reports[0])
		if err != nil {
			b.Fatalf("report and next: %v", err)
		}
		queue, reports = queue[1:], reports[1:]
		if len(queue) > 0 && (next == nil || next.CommandUUID != queue[0].CommandUUID) {
			b.Fatalf("next command: got %v, want %s", next, queue[0].CommandUUID)
		}
	}
}
