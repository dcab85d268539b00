package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// open opens a store in dir and closes it when the test ends.
func open(t testing.TB, dir string, opts ...Option) *Store {
	t.Helper()
	s, err := New(dir, opts...)
	if err != nil {
		t.Fatalf("New(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "store"))
	storagetest.Run(t, s)
	// Twice against the same store: the suite must not depend on a fresh
	// one, as it will not get one from a shared database.
	storagetest.Run(t, s)
}

// TestConformanceAfterReopen runs the suite on a store reopened from a
// directory another store filled: the state rebuilt from files must behave
// like the state built live.
func TestConformanceAfterReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	first, err := New(dir, WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	storagetest.Run(t, first)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	storagetest.Run(t, open(t, dir))
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second New on an open directory: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := New(dir)
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	again.Close()
}

// TestReopen: everything a store knows survives Close and New: pending
// queues in order with their NotNow state, cleared queues stay cleared,
// answered commands stay answered, and new enqueues go after old ones.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := storagetest.NewDevice()
	u := d.NewUser()
	re := storagetest.NewDevice()
	off := storagetest.NewDevice()
	storagetest.Enroll(t, s, d, u, re, off)
	if err := s.StoreTokenUpdate(d.Request(), d.TokenUpdate(nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Disable(off.Request()); err != nil {
		t.Fatal(err)
	}
	a, b, c := storagetest.NewCommand("A"), storagetest.NewCommand("B"), storagetest.NewCommand("C")
	for _, cmd := range []*mdm.Command{a, b, c} {
		mustEnqueue(t, s, cmd, d.ID(), u.ID(), re.ID())
	}
	report(t, s, d, a.CommandUUID, mdm.StatusNotNow)
	report(t, s, d, b.CommandUUID, mdm.StatusAcknowledged)
	report(t, s, u, a.CommandUUID, mdm.StatusAcknowledged)
	report(t, s, u, b.CommandUUID, mdm.StatusAcknowledged)
	report(t, s, u, c.CommandUUID, mdm.StatusAcknowledged)
	if err := s.StoreAuthenticate(re.Request(), re.Authenticate()); err != nil {
		t.Fatal(err)
	}
	bootstrap := storagetest.RandomBytes(32)
	if err := s.StoreBootstrapToken(d.Request(), d.SetBootstrapToken(bootstrap)); err != nil {
		t.Fatal(err)
	}
	hash := storagetest.RandomCertHash()
	if err := s.AssociateCertHash(ctx, d.ID(), hash, d.Cert.NotAfter); err != nil {
		t.Fatal(err)
	}
	topic := storagetest.NewTopic()
	certPEM, keyPEM := storagetest.NewPushCert(topic)
	if err := s.StorePushCert(ctx, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	_, token, err := s.RetrievePushCert(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	// a was NotNow'd before the restart: the deferral lives in memory, so
	// a restart ends it like an Idle would, and a is first again.
	next(t, s, d, a)
	next(t, s, u, nil)
	next(t, s, re, nil) // cleared before the restart
	// A new command goes after the old ones, and to the re-enrolled
	// device once it is back.
	later := storagetest.NewCommand("Later")
	if err := s.StoreTokenUpdate(re.Request(), re.TokenUpdate(nil)); err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, s, later, d.ID(), re.ID())
	report(t, s, d, a.CommandUUID, mdm.StatusAcknowledged)
	next(t, s, d, c)
	report(t, s, d, c.CommandUUID, mdm.StatusAcknowledged)
	next(t, s, d, later)
	next(t, s, re, later)
	if _, err := s.EnqueueCommand(ctx, []string{d.ID()}, a); !errors.Is(err, storage.ErrCommandExists) {
		t.Fatalf("enqueue of a CommandUUID from before the restart: %v, want ErrCommandExists", err)
	}

	if n, err := s.RetrieveTokenUpdateTally(ctx, d.ID()); err != nil || n != 2 {
		t.Fatalf("tally after reopen = %d, %v; want 2", n, err)
	}
	info, err := s.RetrievePushInfo(ctx, []string{d.ID(), u.ID(), off.ID()})
	if err != nil || len(info) != 2 || info[off.ID()] != nil {
		t.Fatalf("push info after reopen: %v, %v; want d and u", info, err)
	}
	tok, err := s.RetrieveBootstrapToken(d.Request(), d.GetBootstrapToken())
	if err != nil || tok == nil || string(tok.BootstrapToken) != string(bootstrap) {
		t.Fatalf("bootstrap token after reopen: %v, %v", tok, err)
	}
	if ok, err := s.IsCertHashAssociated(ctx, d.ID(), hash); err != nil || !ok {
		t.Fatalf("cert hash after reopen: %v, %v", ok, err)
	}
	if stale, err := s.IsPushCertStale(ctx, topic, token); err != nil || stale {
		t.Fatalf("push cert stale after reopen: %v, %v", stale, err)
	}
}

// TestUncommittedEnqueue: a crash after the targets file was written but
// before the command file leaves no trace at the next start, and the
// CommandUUID can be enqueued again.
func TestUncommittedEnqueue(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	cmd := storagetest.NewCommand("Lost")
	if err := s.writeFile(s.queuedPath(cmd.CommandUUID), fmt.Appendf(nil, `{"command_uuid":%q,"seq":99,"ids":[%q]}`, cmd.CommandUUID, d.ID())); err != nil {
		t.Fatal(err)
	}
	// A leftover temporary file, too.
	if err := os.WriteFile(filepath.Join(dir, "tmp", "w-leftover"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, dir)
	next(t, s, d, nil)
	if _, err := os.Stat(s.queuedPath(cmd.CommandUUID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("uncommitted targets file kept: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(entries) != 0 {
		t.Fatalf("tmp not emptied: %v", entries)
	}
	mustEnqueue(t, s, cmd, d.ID())
	next(t, s, d, cmd)
}

// TestQueuedFileLifetime: a command's targets file lives while some target
// has not answered it finally, and goes when the last one has (or was
// cleared).
func TestQueuedFileLifetime(t *testing.T) {
	s := open(t, t.TempDir())
	d1, d2 := storagetest.NewDevice(), storagetest.NewDevice()
	storagetest.Enroll(t, s, d1, d2)
	cmd := storagetest.NewCommand("Shared")
	mustEnqueue(t, s, cmd, d1.ID(), d2.ID())
	queued := func() bool {
		_, err := os.Stat(s.queuedPath(cmd.CommandUUID))
		return err == nil
	}
	report(t, s, d1, cmd.CommandUUID, mdm.StatusAcknowledged)
	report(t, s, d2, cmd.CommandUUID, mdm.StatusNotNow)
	if !queued() {
		t.Fatal("targets file removed while d2 still has the command pending")
	}
	if err := s.StoreAuthenticate(d2.Request(), d2.Authenticate()); err != nil {
		t.Fatal(err)
	}
	if queued() {
		t.Fatal("targets file kept after every target answered or was cleared")
	}
	if _, err := os.Stat(s.commandPath(cmd.CommandUUID)); err != nil {
		t.Fatalf("command file: %v (kept for results and CommandUUID uniqueness)", err)
	}
}

// TestResultRecords: the result file of an (enrollment, command) keeps
// the first final answer, its raw report and the NotNow history.
func TestResultRecords(t *testing.T) {
	s := open(t, t.TempDir())
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	cmd := storagetest.NewCommand("ProfileList")
	mustEnqueue(t, s, cmd, d.ID())
	report(t, s, d, cmd.CommandUUID, mdm.StatusNotNow)
	read := func() *resultRecord {
		var rec resultRecord
		if ok, err := readJSON(s.resultPath(d.ID(), cmd.CommandUUID), &rec); err != nil || !ok {
			t.Fatalf("result record: %v, %v", ok, err)
		}
		return &rec
	}
	first := read()
	if first.Status != mdm.StatusNotNow || first.NotNowCount != 1 || first.FirstNotNowAt.IsZero() || !first.LastNotNowAt.Equal(first.FirstNotNowAt) {
		t.Fatalf("after NotNow: %+v", first)
	}
	// The second NotNow happens at a strictly later time: wait for the
	// clock to pass the first one's (the record keeps nanoseconds).
	for !time.Now().After(first.LastNotNowAt) {
		runtime.Gosched()
	}
	before := time.Now()
	report(t, s, d, cmd.CommandUUID, mdm.StatusNotNow)
	after := time.Now()
	second := read()
	if second.NotNowCount != 2 || !second.FirstNotNowAt.Equal(first.FirstNotNowAt) {
		t.Fatalf("after the second NotNow: %+v, want the count at 2 and the first time kept", second)
	}
	if !second.LastNotNowAt.After(first.LastNotNowAt) || second.LastNotNowAt.Before(before) || second.LastNotNowAt.After(after) {
		t.Fatalf("LastNotNowAt = %v after the second NotNow at [%v, %v], first at %v: not updated to the second report's time",
			second.LastNotNowAt, before, after, first.LastNotNowAt)
	}
	ack := d.Report(cmd.CommandUUID, mdm.StatusAcknowledged)
	if err := s.StoreCommandReport(d.Request(), ack); err != nil {
		t.Fatal(err)
	}
	report(t, s, d, cmd.CommandUUID, mdm.StatusError) // too late
	rec := read()
	if rec.Status != mdm.StatusAcknowledged || string(rec.Result) != string(ack.Raw) {
		t.Fatalf("result = %s %q, want the first final answer", rec.Status, rec.Result)
	}
	if rec.NotNowCount != 2 || !rec.FirstNotNowAt.Equal(first.FirstNotNowAt) || !rec.LastNotNowAt.Equal(second.LastNotNowAt) {
		t.Fatalf("NotNow history = %d, %v, %v; want the two NotNows' kept by the final answer", rec.NotNowCount, rec.FirstNotNowAt, rec.LastNotNowAt)
	}
}

// TestIDsStayInside: enrollment IDs, CommandUUIDs, hashes and topics that
// look like paths never create anything outside the store's directory.
func TestIDsStayInside(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	s := open(t, filepath.Join(parent, "store"))
	for _, udid := range []string{".", "..", "../..", "../escape", "/tmp/escape", `..\escape`, "a/../../escape"} {
		d := storagetest.NewDeviceWithUDID(udid)
		u := d.NewUserWithID("../../escape")
		storagetest.Enroll(t, s, d, u)
		cmd := storagetest.NewCommandWithUUID("../../escape-"+storagetest.NewUUID(), "Escape")
		mustEnqueue(t, s, cmd, d.ID(), u.ID())
		next(t, s, d, cmd)
		next(t, s, u, cmd)
		report(t, s, d, cmd.CommandUUID, mdm.StatusAcknowledged)
		if err := s.AssociateCertHash(ctx, "../"+udid, "../../escape", d.Cert.NotAfter); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "store" {
		t.Fatalf("the store's parent holds %v, want only the store", entries)
	}
	if _, err := os.Stat("/tmp/escape"); err == nil {
		t.Fatal("/tmp/escape was created")
	}
}

var safeName = regexp.MustCompile(`^([a-z0-9_-]{1,200}|~[0-9a-f]{64})$`)

// unescape reverses fileName for names that are not hashed.
func unescape(name string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] != '_' {
			b.WriteByte(name[i])
			continue
		}
		if i+2 >= len(name) {
			return "", fmt.Errorf("truncated escape in %q", name)
		}
		v, err := strconv.ParseUint(name[i+1:i+3], 16, 8)
		if err != nil {
			return "", err
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

func FuzzFileName(f *testing.F) {
	for _, seed := range []string{"", ".", "..", "../x", "a/b", "ABC", "abc", "0000-AAAA:user", "_41", "~", "日本", strings.Repeat("x", 300)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name := fileName(s)
		if !safeName.MatchString(name) {
			t.Fatalf("fileName(%q) = %q: not a safe name", s, name)
		}
		if strings.HasPrefix(name, "~") {
			return
		}
		back, err := unescape(name)
		if err != nil || back != s {
			t.Fatalf("fileName(%q) = %q does not map back (%q, %v): not one-to-one", s, name, back, err)
		}
	})
}

func TestFileNameCase(t *testing.T) {
	if fileName("ABC") == fileName("abc") {
		t.Fatal("names differing in case collide")
	}
	if strings.ToLower(fileName("ABC")) == strings.ToLower(fileName("abc")) {
		t.Fatal("names differing in case collide on a case-insensitive file system")
	}
}

func mustEnqueue(t testing.TB, s *Store, cmd *mdm.Command, ids ...string) {
	t.Helper()
	errs, err := s.EnqueueCommand(context.Background(), ids, cmd)
	if err != nil || len(errs) != 0 {
		t.Fatalf("enqueue %s: %v, %v", cmd.CommandUUID, errs, err)
	}
}

func report(t testing.TB, s *Store, c *storagetest.Channel, uuid, status string) {
	t.Helper()
	if err := s.StoreCommandReport(c.Request(), c.Report(uuid, status)); err != nil {
		t.Fatalf("report %s %s: %v", status, uuid, err)
	}
}

// next asserts c's next command is want (nil: none).
func next(t testing.TB, s *Store, c *storagetest.Channel, want *mdm.Command) {
	t.Helper()
	got, err := s.RetrieveNextCommand(c.Request())
	if err != nil {
		t.Fatalf("next command of %s: %v", c.ID(), err)
	}
	switch {
	case want == nil && got != nil:
		t.Fatalf("next command of %s: %s, want none", c.ID(), got.CommandUUID)
	case want != nil && (got == nil || got.CommandUUID != want.CommandUUID || string(got.Raw) != string(want.Raw)):
		t.Fatalf("next command of %s: %v, want %s", c.ID(), got, want.CommandUUID)
	}
}

// Benchmarks. RetrieveNextCommand never syncs, so the history benchmarks
// build their history without fsync (10,000 enqueues and answers at
// several syncs each would take minutes on a slow disk and measure
// nothing). The enqueue benchmarks build their fleet without fsync, then
// reopen the directory with fsync on and time real, durable enqueues.

func BenchmarkNextCommand(b *testing.B) {
	for _, history := range []int{10, 10000} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			storagetest.BenchmarkNextCommand(b, open(b, b.TempDir(), WithNoSync()), history)
		})
	}
}

func BenchmarkEnqueue(b *testing.B) {
	for _, targets := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("targets=%d", targets), func(b *testing.B) {
			dir := b.TempDir()
			fleet, err := New(dir, WithNoSync())
			if err != nil {
				b.Fatal(err)
			}
			devs := storagetest.EnrollDevices(b, fleet, targets)
			fleet.Close()
			ids := make([]string, len(devs))
			for i, d := range devs {
				ids[i] = d.ID()
			}
			storagetest.BenchmarkEnqueueTo(b, open(b, dir), ids)
		})
	}
}

func BenchmarkCommandRoundTrip(b *testing.B) {
	storagetest.BenchmarkCommandRoundTrip(b, open(b, b.TempDir()))
}

func BenchmarkReportAndNext(b *testing.B) {
	storagetest.BenchmarkReportAndNext(b, open(b, b.TempDir()), 100)
}

func BenchmarkEnrollPair(b *testing.B) {
	storagetest.BenchmarkEnrollPair(b, open(b, b.TempDir()), true)
}
