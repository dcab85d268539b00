// Package storagetest is the storage conformance suite: one set of tests
// every backend (file, inmem, mysql, pgsql) runs, so that they all keep the
// contract of DESIGN.md §2 (command queue semantics) and §6 (storage), plus
// the helpers and benchmarks those tests are built from.
//
// The suite runs against one store shared by all its subtests — for the SQL
// backends, one real database shared with other runs — so every subtest
// works on fresh random UDIDs, CommandUUIDs, topics and hashes, and never
// assumes the store is empty.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// Run runs the conformance suite against store, each behaviour as its own
// subtest. The caller creates the store once; Run may be called more than
// once against the same store (or database).
func Run(t *testing.T, store storage.Store, opts ...Option) {
	var cfg config
	for _, opt := range opts {
		opt(&cfg)
	}
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store)
	}{
		{"QueueFIFO", testQueueFIFO},
		{"QueueFIFOInterleaved", testQueueFIFOInterleaved},
		{"QueueByteExact", testQueueByteExact},
		{"QueueAtLeastOnce", testQueueAtLeastOnce},
		{"QueueFinalStatuses", testQueueFinalStatuses},
		{"QueueNotNow", testQueueNotNow},
		{"QueueIdle", testQueueIdle},
		{"QueueUnknownAndDuplicateReports", testQueueUnknownAndDuplicateReports},
		{"QueuePerChannel", testQueuePerChannel},
		{"ReportAndNext", RunReportAndNext},
		{"EnqueueMultiTarget", testEnqueueMultiTarget},
		{"EnqueueUnknownIDs", testEnqueueUnknownIDs},
		{"EnqueueExistingCommandUUID", testEnqueueExistingCommandUUID},
		{"UnusualEnrollmentIDs", testUnusualEnrollmentIDs},
		{"ReEnrollClears", testReEnrollClears},
		{"TokenUpdateTally", testTokenUpdateTally},
		{"DisableDevice", testDisableDevice},
		{"DisableUserChannel", testDisableUserChannel},
		{"PushInfo", testPushInfo},
		{"PushCert", testPushCert},
		{"BootstrapToken", testBootstrapToken},
		{"CertAuth", testCertAuth},
		{"CertAssociation", testCertAssociation},
		{"EnrollmentTypeFixed", testEnrollmentTypeFixed},
		{"UserAuthenticate", testUserAuthenticate},
		{"MigrationCheckins", testMigrationCheckins},
		{"Concurrency", testConcurrency},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, store) })
	}
	t.Run("PushToken", func(t *testing.T) { RunPushToken(t, store) })
	t.Run("CertAuthLookup", func(t *testing.T) { RunCertAuthLookup(t, store) })
	t.Run("Outbox", func(t *testing.T) { RunOutbox(t, store) })
	t.Run("Lease", func(t *testing.T) { RunLease(t, store) })
	t.Run("Repush", func(t *testing.T) { RunRepush(t, store) })
	t.Run("SCEP", func(t *testing.T) { RunSCEP(t, store) })
	if !cfg.noResults {
		t.Run("Inspection", func(t *testing.T) { RunInspection(t, store) })
	}
}

// mustEnqueue enqueues cmd to ids and fails on any error, per-ID included.
func mustEnqueue(t testing.TB, s storage.Store, cmd *mdm.Command, ids ...string) {
	t.Helper()
	errs, err := s.EnqueueCommand(context.Background(), ids, cmd)
	if err != nil {
		t.Fatalf("enqueue %s to %v: %v", cmd.CommandUUID, ids, err)
	}
	for id, err := range errs {
		if err != nil {
			t.Fatalf("enqueue %s: id %q: %v", cmd.CommandUUID, id, err)
		}
	}
}

// wantNext asserts that c's next command is want, delivered byte-exact.
func wantNext(t testing.TB, s storage.Store, c *Channel, want *mdm.Command) {
	t.Helper()
	got, err := s.RetrieveNextCommand(c.Request())
	if err != nil {
		t.Fatalf("next command of %s: %v", c.ID(), err)
	}
	if got == nil {
		t.Fatalf("next command of %s: got none, want %s", c.ID(), want.CommandUUID)
	}
	if got.CommandUUID != want.CommandUUID {
		t.Fatalf("next command of %s: got %s, want %s", c.ID(), got.CommandUUID, want.CommandUUID)
	}
	if got.RequestType() != want.RequestType() {
		t.Fatalf("command %s: RequestType %q, want %q", want.CommandUUID, got.RequestType(), want.RequestType())
	}
	if !bytes.Equal(got.Raw, want.Raw) {
		t.Fatalf("command %s not delivered byte-exact:\n got %q\nwant %q", want.CommandUUID, got.Raw, want.Raw)
	}
}

// wantNone asserts that c has no next command.
func wantNone(t testing.TB, s storage.Store, c *Channel) {
	t.Helper()
	got, err := s.RetrieveNextCommand(c.Request())
	if err != nil {
		t.Fatalf("next command of %s: %v", c.ID(), err)
	}
	if got != nil {
		t.Fatalf("next command of %s: got %s, want none", c.ID(), got.CommandUUID)
	}
}

// mustReport stores c's report for commandUUID with status.
func mustReport(t testing.TB, s storage.Store, c *Channel, commandUUID, status string) {
	t.Helper()
	if err := s.StoreCommandReport(c.Request(), c.Report(commandUUID, status)); err != nil {
		t.Fatalf("report %s %s from %s: %v", status, commandUUID, c.ID(), err)
	}
}

// mustIdle stores c's Idle report.
func mustIdle(t testing.TB, s storage.Store, c *Channel) {
	t.Helper()
	if err := s.StoreCommandReport(c.Request(), c.Idle()); err != nil {
		t.Fatalf("Idle report from %s: %v", c.ID(), err)
	}
}

// mustDisable disables c's enrollment, as CheckOut does.
func mustDisable(t testing.TB, s storage.Store, c *Channel) {
	t.Helper()
	if err := s.Disable(c.Request()); err != nil {
		t.Fatalf("disable %s: %v", c.ID(), err)
	}
}

// mustTokenUpdate stores c's TokenUpdate carrying unlockToken.
func mustTokenUpdate(t testing.TB, s storage.Store, c *Channel, unlockToken []byte) {
	t.Helper()
	if err := s.StoreTokenUpdate(c.Request(), c.TokenUpdate(unlockToken)); err != nil {
		t.Fatalf("TokenUpdate %s: %v", c.ID(), err)
	}
}

// mustAuthenticate stores c's Authenticate.
func mustAuthenticate(t testing.TB, s storage.Store, c *Channel) {
	t.Helper()
	if err := s.StoreAuthenticate(c.Request(), c.Authenticate()); err != nil {
		t.Fatalf("Authenticate %s: %v", c.ID(), err)
	}
}

// wantTally asserts c's token-update tally.
func wantTally(t testing.TB, s storage.Store, c *Channel, want int) {
	t.Helper()
	got, err := s.RetrieveTokenUpdateTally(context.Background(), c.ID())
	if err != nil {
		t.Fatalf("tally of %s: %v", c.ID(), err)
	}
	if got != want {
		t.Fatalf("tally of %s = %d, want %d", c.ID(), got, want)
	}
}

// pushInfo returns the push info of channels, keyed by enrollment ID.
func pushInfo(t testing.TB, s storage.Store, channels ...*Channel) map[string]*mdm.Push {
	t.Helper()
	ids := make([]string, len(channels))
	for i, c := range channels {
		ids[i] = c.ID()
	}
	info, err := s.RetrievePushInfo(context.Background(), ids)
	if err != nil {
		t.Fatalf("push info of %v: %v", ids, err)
	}
	return info
}

// wantPushable asserts which of channels RetrievePushInfo returns: exactly
// those in enabled, with their current push info.
func wantPushable(t testing.TB, s storage.Store, channels []*Channel, enabled ...*Channel) {
	t.Helper()
	info := pushInfo(t, s, channels...)
	want := make(map[string]*Channel)
	for _, c := range enabled {
		want[c.ID()] = c
	}
	for _, c := range channels {
		got, ok := info[c.ID()]
		w, enabled := want[c.ID()]
		switch {
		case enabled && !ok:
			t.Fatalf("push info: %s missing, want it (enabled)", c.ID())
		case !enabled && ok:
			t.Fatalf("push info: %s present, want it absent (disabled or unknown)", c.ID())
		case enabled:
			if got == nil || !bytes.Equal(got.Token, w.Push.Token) || got.PushMagic != w.Push.PushMagic || got.Topic != w.Push.Topic {
				t.Fatalf("push info of %s = %+v, want %+v", c.ID(), got, w.Push)
			}
		}
	}
	if len(info) > len(want) {
		t.Fatalf("push info has %d entries, want %d: %v", len(info), len(want), info)
	}
}

// wantBootstrapToken asserts the bootstrap token c reads (nil: none).
func wantBootstrapToken(t testing.TB, s storage.Store, c *Channel, want []byte) {
	t.Helper()
	got, err := s.RetrieveBootstrapToken(c.Request(), c.GetBootstrapToken())
	if err != nil {
		t.Fatalf("bootstrap token of %s: %v", c.ID(), err)
	}
	switch {
	case want == nil && got != nil:
		t.Fatalf("bootstrap token of %s = %x, want none", c.ID(), got.BootstrapToken)
	case want != nil && got == nil:
		t.Fatalf("bootstrap token of %s: none, want %x", c.ID(), want)
	case want != nil && !bytes.Equal(got.BootstrapToken, want):
		t.Fatalf("bootstrap token of %s = %x, want %x", c.ID(), got.BootstrapToken, want)
	}
}

// errNotFoundFor asserts that errs reports id as not found.
func errNotFoundFor(t testing.TB, errs map[string]error, id string) {
	t.Helper()
	if err := errs[id]; !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("enqueue to %q: error %v, want one wrapping storage.ErrNotFound", id, err)
	}
}

// Option adjusts Run for a backend's mode.
type Option func(*config)

type config struct{ noResults bool }

// KeepsNoResults tells Run the store drops answered commands at once
// (delete=1), so the inspection reads of results are not run.
func KeepsNoResults() Option { return func(c *config) { c.noResults = true } }
