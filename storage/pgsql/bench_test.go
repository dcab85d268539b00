package pgsql

import (
	"context"
	"fmt"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// The benchmarks run on a fresh database each, with pools sized as in
// production. Run them with -run '^$' -bench . and PICOMDM_TEST_PGSQL_DSN.

// BenchmarkNextCommand times RetrieveNextCommand after 10, 10,000 and
// 100,000 answered commands, with storagetest's history: each command
// enqueued and answered, never looked up in between. (100,000 round trips
// would take minutes, so that history is written set-based, to the same
// end state.)
//
// Nothing vacuums the queue table here, which is the worst case: the
// answered rows' entries stay in command_queue_next, ahead of the pending
// one, until VACUUM, and each lookup steps over them (cheaply, once the
// first lookup has marked them dead: about 9µs per 1,000). With autovacuum
// on — PostgreSQL's default, and the schema asks for command_queue to be
// vacuumed after 1,000 dead rows — that lasts a minute at most. See
// BenchmarkNextCommandDeviceFlow for the history real devices leave.
func BenchmarkNextCommand(b *testing.B) {
	for _, history := range []int{10, 10_000, 100_000} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			s := openFresh(b, nil)
			if history <= 10_000 {
				storagetest.BenchmarkNextCommand(b, s, history)
				return
			}
			d := storagetest.EnrollDevices(b, s, 1)[0]
			bulkHistory(b, s, d.ID(), history, "history")
			benchmarkNextCommandLoop(b, s, d)
		})
	}
}

// BenchmarkNextCommandDeviceFlow is BenchmarkNextCommand with the history
// built as devices build it: every command is handed out (looked up)
// before it is answered, as the server does in every device request. That
// lookup's index scan marks the previous answer's index entry dead, and
// the next enqueue into the same index page reclaims it, so the
// enrollment's stretch of command_queue_next stays a page or two however
// long its history, without any VACUUM. The 100,000-command history is
// written set-based, which skips those lookups, so it is vacuumed to reach
// the same state.
func BenchmarkNextCommandDeviceFlow(b *testing.B) {
	for _, history := range []int{10, 10_000, 100_000} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			s := openFresh(b, nil)
			d := storagetest.EnrollDevices(b, s, 1)[0]
			if history > 10_000 {
				bulkHistory(b, s, d.ID(), history, "history")
				mustExec(b, s, `VACUUM command_queue`)
				benchmarkNextCommandLoop(b, s, d)
				return
			}
			ctx := context.Background()
			r := d.Request()
			for range history {
				cmd := storagetest.NewCommand("ProfileList")
				if _, err := s.EnqueueCommand(ctx, []string{d.ID()}, cmd); err != nil {
					b.Fatalf("enqueue: %v", err)
				}
				if got, err := s.RetrieveNextCommand(r); err != nil || got == nil {
					b.Fatalf("next command: %v, %v", got, err)
				}
				if err := s.StoreCommandReport(r, d.Report(cmd.CommandUUID, mdm.StatusAcknowledged)); err != nil {
					b.Fatalf("report: %v", err)
				}
			}
			benchmarkNextCommandLoop(b, s, d)
		})
	}
}

// benchmarkNextCommandLoop enqueues one command to d and times looking it
// up, as storagetest.BenchmarkNextCommand does after its history.
func benchmarkNextCommandLoop(b *testing.B, s *Store, d *storagetest.Channel) {
	pending := storagetest.NewCommand("DeviceInformation")
	mustEnqueue(b, s, pending, d.ID())
	r := d.Request()
	for b.Loop() {
		cmd, err := s.RetrieveNextCommand(r)
		if err != nil {
			b.Fatalf("next command: %v", err)
		}
		if cmd == nil || cmd.CommandUUID != pending.CommandUUID {
			b.Fatalf("next command: got %v, want %s", cmd, pending.CommandUUID)
		}
	}
}

func BenchmarkEnqueue(b *testing.B) {
	for _, targets := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("targets=%d", targets), func(b *testing.B) {
			s := openFresh(b, nil)
			// The fleet is enrolled set-based (100,000 TokenUpdates would
			// take minutes); the enqueue is timed as the API calls it.
			storagetest.BenchmarkEnqueueTo(b, s, bulkFleet(b, s, targets))
		})
	}
}

func BenchmarkCommandRoundTrip(b *testing.B) {
	storagetest.BenchmarkCommandRoundTrip(b, openFresh(b, nil))
}

// BenchmarkReportAndNext: a device working through its queue, each
// request a report and a next-command lookup: as two calls (separate) or
// through StoreCommandReportAndRetrieveNext (combined, one statement).
func BenchmarkReportAndNext(b *testing.B) {
	b.Run("separate", func(b *testing.B) {
		storagetest.BenchmarkReportAndNext(b, openFresh(b, nil), 100)
	})
	b.Run("combined", func(b *testing.B) {
		storagetest.BenchmarkReportAndNextCombined(b, openFresh(b, nil), 100)
	})
}

// BenchmarkDeviceRoundTrip: enqueue, then the device's Idle and
// Acknowledged requests, as two calls each (separate) or one (combined).
func BenchmarkDeviceRoundTrip(b *testing.B) {
	for _, mode := range storagetest.Modes {
		b.Run(mode.Name, func(b *testing.B) {
			storagetest.BenchmarkDeviceRoundTrip(b, openFresh(b, nil), mode.Combined)
		})
	}
}

// BenchmarkEnrollPair: a device's Authenticate and TokenUpdate with their
// cert-auth calls, cert-auth's decision in steps or in one statement.
func BenchmarkEnrollPair(b *testing.B) {
	for _, mode := range storagetest.Modes {
		b.Run(mode.Name, func(b *testing.B) {
			storagetest.BenchmarkEnrollPair(b, openFresh(b, nil), mode.Combined)
		})
	}
}
