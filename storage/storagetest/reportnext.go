package storagetest

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// plainStore hides a store's optional extensions (such as
// storage.CommandReportAndNexter), so that the helpers that use them
// (storage.StoreReportAndRetrieveNext…) take their fallbacks: the
// storage.Store methods, the path every backend had before.
type plainStore struct{ storage.Store }

// RunReportAndNext drives the command queue as the server does, one
// storage.StoreReportAndRetrieveNext per device request, and wants the
// outcomes the two-call path gives (the rest of the suite): once through
// the store as it is (its fast path, if it has one) and once with the fast
// path hidden. Then both paths are run side by side on one random
// sequence and must agree at every step. Run includes it; a backend may
// also run it alone, e.g. in a mode the whole suite does not fit.
func RunReportAndNext(t *testing.T, s storage.Store) {
	type path struct {
		name  string
		store storage.Store
	}
	paths := []path{{"TwoCalls", plainStore{s}}}
	if _, ok := s.(storage.CommandReportAndNexter); ok {
		paths = append(paths, path{"FastPath", s})
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			for _, tc := range []struct {
				name string
				fn   func(*testing.T, storage.Store)
			}{
				{"FIFO", testReportAndNextFIFO},
				{"AtLeastOnce", testReportAndNextAtLeastOnce},
				{"FinalStatuses", testReportAndNextFinalStatuses},
				{"NotNowThenIdle", testReportAndNextNotNow},
				{"IdleNamingACommand", testReportAndNextIdle},
				{"UnknownAndDuplicate", testReportAndNextUnknown},
				{"PerChannel", testReportAndNextPerChannel},
			} {
				t.Run(tc.name, func(t *testing.T) { tc.fn(t, p.store) })
			}
		})
	}
	t.Run("SameAsTwoCalls", func(t *testing.T) { testReportAndNextSameAsTwoCalls(t, s) })
}

// exchange sends c's report (commandUUID and status; Idle: an Idle
// report) through storage.StoreReportAndRetrieveNext and asserts the
// command it answers with: want, byte-exact, or none for nil. The answer
// must also be what RetrieveNextCommand reads back afterwards: handing a
// command out consumes nothing.
func exchange(t testing.TB, s storage.Store, c *Channel, commandUUID, status string, want *mdm.Command) {
	t.Helper()
	report := c.Report(commandUUID, status)
	if status == mdm.StatusIdle && commandUUID == "" {
		report = c.Idle()
	}
	got, err := storage.StoreReportAndRetrieveNext(s, c.Request(), report)
	if err != nil {
		t.Fatalf("%s report %s from %s: %v", status, commandUUID, c.ID(), err)
	}
	switch {
	case want == nil && got != nil:
		t.Fatalf("after %s %s from %s: got %s, want none", status, commandUUID, c.ID(), got.CommandUUID)
	case want != nil && got == nil:
		t.Fatalf("after %s %s from %s: got none, want %s", status, commandUUID, c.ID(), want.CommandUUID)
	case want != nil && got.CommandUUID != want.CommandUUID:
		t.Fatalf("after %s %s from %s: got %s, want %s", status, commandUUID, c.ID(), got.CommandUUID, want.CommandUUID)
	case want != nil && (got.RequestType() != want.RequestType() || !bytes.Equal(got.Raw, want.Raw)):
		t.Fatalf("command %s not delivered byte-exact: %q %q, want %q %q", want.CommandUUID, got.RequestType(), got.Raw, want.RequestType(), want.Raw)
	}
	if want == nil {
		wantNone(t, s, c)
	} else {
		wantNext(t, s, c, want)
	}
}

// idle is exchange with an Idle report.
func idle(t testing.TB, s storage.Store, c *Channel, want *mdm.Command) {
	t.Helper()
	exchange(t, s, c, "", mdm.StatusIdle, want)
}

// enqueueEach enqueues n new commands to c, one call each, and returns
// them in order.
func enqueueEach(t testing.TB, s storage.Store, c *Channel, n int) []*mdm.Command {
	t.Helper()
	cmds := make([]*mdm.Command, n)
	for i := range cmds {
		cmds[i] = NewCommand("ProfileList")
		mustEnqueue(t, s, cmds[i], c.ID())
	}
	return cmds
}

// testReportAndNextFIFO: a device draining its queue gets every command in
// enqueue order, one per request, then an empty answer.
func testReportAndNextFIFO(t *testing.T, s storage.Store) {
	d := NewDevice()
	idle(t, s, d, nil) // an enrollment the store has never seen
	Enroll(t, s, d)
	idle(t, s, d, nil)
	cmds := enqueueEach(t, s, d, 10)
	idle(t, s, d, cmds[0])
	for i, c := range cmds {
		var next *mdm.Command
		if i+1 < len(cmds) {
			next = cmds[i+1]
		}
		exchange(t, s, d, c.CommandUUID, mdm.StatusAcknowledged, next)
	}
	idle(t, s, d, nil)
}

// testReportAndNextAtLeastOnce: a command handed out but not answered is
// handed out again, request after request.
func testReportAndNextAtLeastOnce(t *testing.T, s storage.Store) {
	d := NewDevice()
	Enroll(t, s, d)
	cmds := enqueueEach(t, s, d, 2)
	idle(t, s, d, cmds[0])
	idle(t, s, d, cmds[0]) // the device never answered: again
	idle(t, s, d, cmds[0])
	exchange(t, s, d, cmds[0].CommandUUID, mdm.StatusAcknowledged, cmds[1])
	idle(t, s, d, cmds[1])
	exchange(t, s, d, cmds[1].CommandUUID, mdm.StatusAcknowledged, nil)
}

// testReportAndNextFinalStatuses: every Status but Idle and NotNow is
// final: the command never comes back, Idle or not.
func testReportAndNextFinalStatuses(t *testing.T, s storage.Store) {
	for _, status := range []string{
		mdm.StatusAcknowledged,
		mdm.StatusError,
		mdm.StatusCommandFormatError,
		"SomeFutureStatus",
	} {
		t.Run(status, func(t *testing.T) {
			d := NewDevice()
			Enroll(t, s, d)
			cmds := enqueueEach(t, s, d, 2)
			idle(t, s, d, cmds[0])
			exchange(t, s, d, cmds[0].CommandUUID, status, cmds[1])
			idle(t, s, d, cmds[1]) // cmds[0] never comes back
			exchange(t, s, d, cmds[1].CommandUUID, status, nil)
			idle(t, s, d, nil)
		})
	}
}

// testReportAndNextNotNow: a NotNow'd command is skipped for the rest of
// the exchange, answered commands included, and comes back in its place
// at the next Idle; a later final answer is final.
func testReportAndNextNotNow(t *testing.T, s storage.Store) {
	d := NewDevice()
	Enroll(t, s, d)
	c := enqueueEach(t, s, d, 3)
	idle(t, s, d, c[0])
	exchange(t, s, d, c[0].CommandUUID, mdm.StatusNotNow, c[1])
	exchange(t, s, d, c[1].CommandUUID, mdm.StatusNotNow, c[2])
	exchange(t, s, d, c[2].CommandUUID, mdm.StatusAcknowledged, nil) // c[0], c[1] deferred
	exchange(t, s, d, c[1].CommandUUID, mdm.StatusNotNow, nil)       // twice is fine
	// A command enqueued during the deferral is not deferred.
	late := NewCommand("Late")
	mustEnqueue(t, s, late, d.ID())
	idle(t, s, d, c[0]) // the Idle: eligible again, in their places
	exchange(t, s, d, c[0].CommandUUID, mdm.StatusAcknowledged, c[1])
	exchange(t, s, d, c[1].CommandUUID, mdm.StatusNotNow, late)
	exchange(t, s, d, late.CommandUUID, mdm.StatusAcknowledged, nil)
	idle(t, s, d, c[1])
	exchange(t, s, d, c[1].CommandUUID, mdm.StatusError, nil)
	idle(t, s, d, nil)
}

// testReportAndNextIdle: an Idle that (wrongly) names a pending command
// records nothing for it, and a non-Idle report naming no command is
// harmless.
func testReportAndNextIdle(t *testing.T, s storage.Store) {
	d := NewDevice()
	Enroll(t, s, d)
	c := enqueueEach(t, s, d, 2)
	exchange(t, s, d, c[0].CommandUUID, mdm.StatusIdle, c[0])
	exchange(t, s, d, "", mdm.StatusAcknowledged, c[0])
	exchange(t, s, d, "", mdm.StatusNotNow, c[0])
	exchange(t, s, d, c[0].CommandUUID, mdm.StatusNotNow, c[1])
	exchange(t, s, d, c[0].CommandUUID, mdm.StatusIdle, c[0]) // ends the deferral
}

// testReportAndNextUnknown: reports for unknown commands, for final ones
// and for someone else's, and reports from an unknown enrollment, change
// nothing and fail nothing.
func testReportAndNextUnknown(t *testing.T, s storage.Store) {
	d, other := NewDevice(), NewDevice()
	Enroll(t, s, d, other)
	c := enqueueEach(t, s, d, 2)
	theirs := NewCommand("Theirs")
	mustEnqueue(t, s, theirs, other.ID())
	for _, status := range []string{mdm.StatusAcknowledged, mdm.StatusNotNow, mdm.StatusError} {
		exchange(t, s, d, NewUUID(), status, c[0])
	}
	exchange(t, s, d, c[0].CommandUUID, mdm.StatusAcknowledged, c[1])
	// Duplicates of a final answer, a late NotNow included.
	exchange(t, s, d, c[0].CommandUUID, mdm.StatusAcknowledged, c[1])
	exchange(t, s, d, c[0].CommandUUID, mdm.StatusError, c[1])
	exchange(t, s, d, c[0].CommandUUID, mdm.StatusNotNow, c[1])
	idle(t, s, d, c[1])
	// Another enrollment's command, answered by d.
	exchange(t, s, d, theirs.CommandUUID, mdm.StatusAcknowledged, c[1])
	exchange(t, s, d, theirs.CommandUUID, mdm.StatusNotNow, c[1])
	idle(t, s, other, theirs)
	// An enrollment the store has never seen.
	stranger := NewDevice()
	exchange(t, s, stranger, c[1].CommandUUID, mdm.StatusAcknowledged, nil)
	exchange(t, s, stranger, c[1].CommandUUID, mdm.StatusNotNow, nil)
	idle(t, s, stranger, nil)
	idle(t, s, d, c[1])
}

// testReportAndNextPerChannel: a device channel and its user channel keep
// their own queues and deferrals, a command queued to both included.
func testReportAndNextPerChannel(t *testing.T, s storage.Store) {
	d := NewDevice()
	u := d.NewUser()
	Enroll(t, s, d, u)
	both := NewCommand("Both")
	mustEnqueue(t, s, both, d.ID(), u.ID())
	mine := NewCommand("UserOnly")
	mustEnqueue(t, s, mine, u.ID())
	idle(t, s, d, both)
	exchange(t, s, d, both.CommandUUID, mdm.StatusNotNow, nil)
	// Neither the device's NotNow nor its later answer touch the user
	// channel's copy; the user channel's Idle does not end the device's
	// deferral.
	idle(t, s, u, both)
	exchange(t, s, u, both.CommandUUID, mdm.StatusAcknowledged, mine)
	wantNone(t, s, d)
	idle(t, s, d, both)
	exchange(t, s, d, both.CommandUUID, mdm.StatusAcknowledged, nil)
	exchange(t, s, u, mine.CommandUUID, mdm.StatusAcknowledged, nil)
}

// testReportAndNextSameAsTwoCalls runs one random sequence of enqueues and
// device reports — answers to the command handed out, stray, duplicate and
// late answers, Idles — on two enrollments of s: one through
// storage.StoreReportAndRetrieveNext on s, the other through the two calls.
// Both must hand out the same (corresponding) command at every step.
func testReportAndNextSameAsTwoCalls(t *testing.T, s storage.Store) {
	type side struct {
		store storage.Store
		ch    *Channel
		cmds  []*mdm.Command // enqueued so far, in order
		index map[string]int // CommandUUID → position in cmds
	}
	fast := &side{store: s, ch: NewDevice(), index: map[string]int{}}
	slow := &side{store: plainStore{s}, ch: NewDevice(), index: map[string]int{}}
	sides := []*side{fast, slow}
	Enroll(t, s, fast.ch, slow.ch)
	position := func(sd *side, c *mdm.Command) int {
		if c == nil {
			return -1
		}
		i, ok := sd.index[c.CommandUUID]
		if !ok {
			t.Fatalf("%s was handed %s, never queued to it", sd.ch.ID(), c.CommandUUID)
		}
		return i
	}
	seed := rand.Uint64()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("random sequence seed: %d", seed)
		}
	})
	rng := rand.New(rand.NewPCG(seed, seed))
	statuses := []string{mdm.StatusAcknowledged, mdm.StatusError, mdm.StatusNotNow, mdm.StatusNotNow, mdm.StatusIdle}
	handedOut := -1 // position of the command last handed out, or -1
	for step := range 300 {
		op := rng.IntN(10)
		if op < 3 || len(fast.cmds) == 0 {
			for _, sd := range sides {
				cmd := NewCommand("ProfileList")
				mustEnqueue(t, s, cmd, sd.ch.ID())
				sd.index[cmd.CommandUUID] = len(sd.cmds)
				sd.cmds = append(sd.cmds, cmd)
			}
			continue
		}
		status := statuses[rng.IntN(len(statuses))]
		target := rng.IntN(len(fast.cmds)) // a stray, duplicate or late answer
		if op < 8 && handedOut >= 0 {
			target = handedOut // answer what was handed out, as devices do
		}
		var got [2]int
		for i, sd := range sides {
			report := sd.ch.Report(sd.cmds[target].CommandUUID, status)
			if status == mdm.StatusIdle {
				report = sd.ch.Idle()
			}
			next, err := storage.StoreReportAndRetrieveNext(sd.store, sd.ch.Request(), report)
			if err != nil {
				t.Fatalf("step %d: %s of #%d: %v", step, status, target, err)
			}
			got[i] = position(sd, next)
			if next != nil && !bytes.Equal(next.Raw, sd.cmds[got[i]].Raw) {
				t.Fatalf("step %d: command #%d not delivered byte-exact", step, got[i])
			}
		}
		if got[0] != got[1] {
			t.Fatalf("step %d: after %s of #%d: fast path hands out #%d, two calls #%d", step, status, target, got[0], got[1])
		}
		handedOut = got[0]
	}
	// And the state they leave is the same: drain both.
	for _, sd := range sides {
		mustIdle(t, sd.store, sd.ch)
	}
	for range len(fast.cmds) + 1 {
		var got [2]int
		for i, sd := range sides {
			next, err := sd.store.RetrieveNextCommand(sd.ch.Request())
			if err != nil {
				t.Fatal(err)
			}
			got[i] = position(sd, next)
			if next != nil {
				mustReport(t, sd.store, sd.ch, next.CommandUUID, mdm.StatusAcknowledged)
			}
		}
		if got[0] != got[1] {
			t.Fatalf("draining: fast path hands out #%d, two calls #%d", got[0], got[1])
		}
		if got[0] < 0 {
			return
		}
	}
	t.Fatal("draining: queue never emptied")
}

// BenchmarkReportAndNextCombined is BenchmarkReportAndNext through
// storage.StoreReportAndRetrieveNext, as the server now calls it: one
// storage call per device request (one database round trip on the
// backends that implement storage.CommandReportAndNexter).
func BenchmarkReportAndNextCombined(b *testing.B, store storage.Store, depth int) {
	benchmarkReportAndNext(b, store, depth, func(r *mdm.Request, report *mdm.CommandResults) (*mdm.Command, error) {
		return storage.StoreReportAndRetrieveNext(store, r, report)
	})
}

// Modes are the two ways BenchmarkDeviceRoundTrip and BenchmarkEnrollPair
// can reach a store, for backends to run both as sub-benchmarks:
// "separate" hides the store's optional one-call extensions
// (storage.CommandReportAndNexter, storage.CertAuthAssociator), as every
// call was made before they existed; "combined" uses them.
var Modes = []struct {
	Name     string
	Combined bool
}{{"separate", false}, {"combined", true}}

// BenchmarkDeviceRoundTrip times one command's whole life as the server
// handles it: one enqueue, then the device's two requests — an Idle
// answered with the command, its Acknowledged answered with an empty
// queue — each a report and a next-command lookup. Through
// storage.StoreReportAndRetrieveNext (combined) or with the fast path
// hidden (the two calls per request the server made before).
func BenchmarkDeviceRoundTrip(b *testing.B, store storage.Store, combined bool) {
	if !combined {
		store = plainStore{store}
	}
	ctx := context.Background()
	d := EnrollDevices(b, store, 1)[0]
	ids := []string{d.ID()}
	r := d.Request()
	idleReport := d.Idle()
	next := commandsToAcknowledge(b, d)
	for b.Loop() {
		w := next()
		if _, err := store.EnqueueCommand(ctx, ids, w.cmd); err != nil {
			b.Fatalf("enqueue: %v", err)
		}
		got, err := storage.StoreReportAndRetrieveNext(store, r, idleReport)
		if err != nil || got == nil || got.CommandUUID != w.cmd.CommandUUID {
			b.Fatalf("Idle: next command %v, %v; want %s", got, err, w.cmd.CommandUUID)
		}
		if got, err = storage.StoreReportAndRetrieveNext(store, r, w.report); err != nil || got != nil {
			b.Fatalf("Acknowledged: next command %v, %v; want none", got, err)
		}
	}
}
