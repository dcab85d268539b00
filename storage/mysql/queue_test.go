package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// bulkEnroll inserts n device enrollments straight into the table, the
// way n TokenUpdates would leave them, in a few multi-row INSERTs: a
// fleet for tests and benchmarks that would take minutes to enroll one
// TokenUpdate at a time. It returns their IDs.
func bulkEnroll(tb testing.TB, s *Store, n int) []string {
	tb.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = storagetest.NewUUID()
	}
	err := chunks(ids, func(chunk []string) error {
		var args []any
		for _, id := range chunk {
			args = append(args, id, id, storagetest.RandomBytes(32), "<plist/>")
		}
		row := "(?, ?, 'Device', 'com.apple.mgmt.External.bulk', 'magic', ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))"
		_, err := s.db.Exec(`INSERT INTO enrollments
	(id, device_id, type, topic, push_magic, token, token_update, enrolled_at, last_seen_at, updated_at)
VALUES `+strings.TrimSuffix(strings.Repeat(row+", ", len(chunk)), ", "), args...)
		return err
	})
	if err != nil {
		tb.Fatalf("bulk enroll: %v", err)
	}
	return ids
}

// channelOf returns a device channel for an ID made by bulkEnroll.
func channelOf(id string) *storagetest.Channel { return storagetest.NewDeviceWithUDID(id) }

// TestConcurrentAcks: 1,000 enrollments acknowledge one shared command
// from 64 goroutines (64 connections) at once: no deadlock or lock-wait
// timeout surfaces, every result is stored and the queue is left empty;
// with delete=1, no result is kept and the command row goes with the last
// answer.
func TestConcurrentAcks(t *testing.T) {
	for _, path := range reportPaths {
		for _, del := range []string{"0", "1"} {
			t.Run(path.name+"/delete="+del, func(t *testing.T) {
				testConcurrentAcks(t, path, map[string]string{"delete": del, "max_open_conns": "64"})
			})
		}
	}
}

func testConcurrentAcks(t *testing.T, path reportPath, options map[string]string) {
	s := path.open(t, options)
	const devices, workers = 1000, 64
	ids := bulkEnroll(t, s, devices)
	cmd := storagetest.NewCommand("DeviceInformation")
	errs, err := s.EnqueueCommand(context.Background(), ids, cmd)
	if err != nil || len(errs) != 0 {
		t.Fatalf("enqueue: %v, %v", errs, err)
	}
	chans := make([]*storagetest.Channel, devices)
	reports := make([]*mdm.CommandResults, devices)
	for i, id := range ids {
		chans[i] = channelOf(id)
		reports[i] = chans[i].Report(cmd.CommandUUID, mdm.StatusAcknowledged)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range workers {
		wg.Go(func() {
			<-start
			for {
				i := int(next.Add(1) - 1)
				if i >= devices {
					return
				}
				r := chans[i].Request()
				if path.withNext {
					// As the server does: Idle, then the answer.
					got, err := s.StoreCommandReportAndRetrieveNext(r, chans[i].Idle())
					if err != nil || got == nil || got.CommandUUID != cmd.CommandUUID {
						t.Errorf("device %d: Idle: next command %v, %v", i, got, err)
						return
					}
					if got, err = s.StoreCommandReportAndRetrieveNext(r, reports[i]); err != nil || got != nil {
						t.Errorf("device %d: ack: next command %v, %v", i, got, err)
						return
					}
					continue
				}
				got, err := s.RetrieveNextCommand(r)
				if err != nil || got == nil || got.CommandUUID != cmd.CommandUUID {
					t.Errorf("device %d: next command %v, %v", i, got, err)
					return
				}
				if err := s.StoreCommandReport(r, reports[i]); err != nil {
					t.Errorf("device %d: ack: %v", i, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	t.Logf("%d transactions retried after a deadlock or lock-wait timeout", s.retries.Load())
	wantResults, wantCommands := devices, 1
	if s.opts.Delete {
		wantResults, wantCommands = 0, 0
	}
	if n := count(t, s, "SELECT COUNT(*) FROM results WHERE command_uuid = ? AND status = 'Acknowledged'", cmd.CommandUUID); n != wantResults {
		t.Errorf("%d Acknowledged results, want %d", n, wantResults)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM queue WHERE command_uuid = ?", cmd.CommandUUID); n != 0 {
		t.Errorf("%d queue rows left, want 0", n)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM commands WHERE command_uuid = ?", cmd.CommandUUID); n != wantCommands {
		t.Errorf("%d command rows, want %d", n, wantCommands)
	}
}

// reportPath is one way a report reaches the store.
type reportPath struct {
	name string
	// multiStatements: the store runs its reports as multi-statement
	// batches (Open's default), or statement by statement.
	multiStatements bool
	// withNext: reports go through StoreCommandReportAndRetrieveNext,
	// as the server sends them.
	withNext bool
}

// reportPaths: every path must leave the same rows.
var reportPaths = []reportPath{
	{"StatementByStatement", false, false},
	{"Batch", true, false},
	{"BatchWithNext", true, true},
}

// open opens a store on a fresh database for the path.
func (p reportPath) open(tb testing.TB, options map[string]string) *Store {
	tb.Helper()
	s, dsn := openTest(tb, options)
	if !p.multiStatements {
		s = openDSNParam(tb, dsn, options, "multiStatements=false")
	}
	if s.multiStatements != p.multiStatements {
		tb.Fatalf("store runs multi-statement batches: %v, want %v", s.multiStatements, p.multiStatements)
	}
	return s
}

// report stores report through the path.
func (p reportPath) report(s *Store, r *mdm.Request, report *mdm.CommandResults) error {
	if p.withNext {
		_, err := s.StoreCommandReportAndRetrieveNext(r, report)
		return err
	}
	return s.StoreCommandReport(r, report)
}

// TestQueueRows: what the tables hold through a command's life: NotNow
// keeps the queue row (deferred, counted) and records a NotNow result; the
// final answer moves the row to results, keeping the NotNow count; a late
// duplicate changes nothing.
func TestQueueRows(t *testing.T) {
	for _, path := range reportPaths {
		t.Run(path.name, func(t *testing.T) { testQueueRows(t, path) })
	}
}

func testQueueRows(t *testing.T, path reportPath) {
	s := path.open(t, nil)
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	cmd := storagetest.NewCommand("InstallProfile")
	if _, err := s.EnqueueCommand(context.Background(), []string{d.ID()}, cmd); err != nil {
		t.Fatal(err)
	}
	report := func(status string) {
		t.Helper()
		if err := path.report(s, d.Request(), d.Report(cmd.CommandUUID, status)); err != nil {
			t.Fatalf("%s: %v", status, err)
		}
	}
	row := func() (status string, notNow int) {
		t.Helper()
		if err := s.db.QueryRow("SELECT status, not_now_count FROM results WHERE id = ? AND command_uuid = ?", d.ID(), cmd.CommandUUID).Scan(&status, &notNow); err != nil {
			t.Fatalf("results row: %v", err)
		}
		return status, notNow
	}
	report(mdm.StatusNotNow)
	report(mdm.StatusNotNow)
	if n := count(t, s, "SELECT COUNT(*) FROM queue WHERE id = ? AND deferred AND not_now_count = 2", d.ID()); n != 1 {
		t.Fatalf("deferred queue rows with 2 NotNows: %d, want 1", n)
	}
	if st, nn := row(); st != mdm.StatusNotNow || nn != 2 {
		t.Fatalf("result after NotNows: %s, %d", st, nn)
	}
	report(mdm.StatusError)
	report(mdm.StatusAcknowledged) // too late
	if n := count(t, s, "SELECT COUNT(*) FROM queue WHERE id = ?", d.ID()); n != 0 {
		t.Fatalf("queue rows after the final answer: %d, want 0", n)
	}
	if st, nn := row(); st != mdm.StatusError || nn != 2 {
		t.Fatalf("final result: %s, %d; want Error, 2", st, nn)
	}
}

// TestDeleteMode: with delete=1, answered commands leave no rows: the
// queue row goes, no result is kept, and the command row goes with the
// last enrollment's answer.
func TestDeleteMode(t *testing.T) {
	for _, path := range reportPaths {
		t.Run(path.name, func(t *testing.T) { testDeleteMode(t, path) })
	}
}

func testDeleteMode(t *testing.T, path reportPath) {
	s := path.open(t, map[string]string{"delete": "1"})
	ctx := context.Background()
	d1, d2 := storagetest.NewDevice(), storagetest.NewDevice()
	storagetest.Enroll(t, s, d1, d2)
	shared, single := storagetest.NewCommand("A"), storagetest.NewCommand("B")
	for _, c := range []struct {
		cmd *mdm.Command
		ids []string
	}{{shared, []string{d1.ID(), d2.ID()}}, {single, []string{d1.ID()}}} {
		if _, err := s.EnqueueCommand(ctx, c.ids, c.cmd); err != nil {
			t.Fatal(err)
		}
	}
	report := func(c *storagetest.Channel, uuid, status string) {
		t.Helper()
		if err := path.report(s, c.Request(), c.Report(uuid, status)); err != nil {
			t.Fatalf("%s: %v", status, err)
		}
	}
	commandRows := func(uuid string) int {
		return count(t, s, "SELECT COUNT(*) FROM commands WHERE command_uuid = ?", uuid)
	}
	report(d1, shared.CommandUUID, mdm.StatusNotNow)
	if n := count(t, s, "SELECT COUNT(*) FROM results"); n != 0 {
		t.Fatalf("results rows after NotNow: %d, want 0", n)
	}
	got, err := s.RetrieveNextCommand(d1.Request())
	if err != nil || got == nil || got.CommandUUID != single.CommandUUID {
		t.Fatalf("next after NotNow: %v, %v; want %s", got, err, single.CommandUUID)
	}
	report(d1, single.CommandUUID, mdm.StatusAcknowledged)
	if commandRows(single.CommandUUID) != 0 {
		t.Fatal("command answered by its only target still stored")
	}
	report(d1, shared.CommandUUID, mdm.StatusAcknowledged)
	if commandRows(shared.CommandUUID) != 1 {
		t.Fatal("command still pending for d2 was deleted")
	}
	got, err = s.RetrieveNextCommand(d2.Request())
	if err != nil || got == nil || got.CommandUUID != shared.CommandUUID {
		t.Fatalf("d2's next: %v, %v; want %s", got, err, shared.CommandUUID)
	}
	report(d2, shared.CommandUUID, mdm.StatusError)
	if commandRows(shared.CommandUUID) != 0 {
		t.Fatal("command answered everywhere still stored")
	}
	if n := count(t, s, "SELECT COUNT(*) FROM results"); n != 0 {
		t.Fatalf("results rows: %d, want 0", n)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM queue"); n != 0 {
		t.Fatalf("queue rows: %d, want 0", n)
	}
	// The queue still works as specified: a late report is harmless.
	report(d2, shared.CommandUUID, mdm.StatusAcknowledged)
	for _, c := range []*storagetest.Channel{d1, d2} {
		if got, err := s.RetrieveNextCommand(c.Request()); err != nil || got != nil {
			t.Fatalf("next of %s: %v, %v; want none", c.ID(), got, err)
		}
	}
}

// TestLastSeen: reports write last_seen_at at most once a minute per
// enrollment in a process; a process that has not written it (another
// replica, or this one restarted) writes it at the first report.
func TestLastSeen(t *testing.T) {
	for _, path := range reportPaths {
		t.Run(path.name, func(t *testing.T) { testLastSeen(t, path) })
	}
}

func testLastSeen(t *testing.T, path reportPath) {
	s := path.open(t, nil)
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	const old = "2000-01-01 00:00:00"
	seen := func() time.Time {
		t.Helper()
		var at time.Time
		if err := s.db.QueryRow("SELECT last_seen_at FROM enrollments WHERE id = ?", d.ID()).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	if _, err := s.db.Exec("UPDATE enrollments SET last_seen_at = ? WHERE id = ?", old, d.ID()); err != nil {
		t.Fatal(err)
	}
	idle := func() {
		t.Helper()
		if err := path.report(s, d.Request(), d.Idle()); err != nil {
			t.Fatal(err)
		}
	}
	idle() // the TokenUpdate just wrote it: throttled
	if at := seen(); at.Year() != 2000 {
		t.Fatalf("last_seen_at written again within a minute: %v", at)
	}
	s.seen = sqlstore.NewThrottle(lastSeenInterval) // as a fresh replica
	idle()
	if at := seen(); time.Since(at) > time.Minute {
		t.Fatalf("last_seen_at = %v, want now", at)
	}
}

// TestRetryable: the errors retried are exactly deadlocks and lock-wait
// timeouts.
func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&mysql.MySQLError{Number: 1213}, true},
		{fmt.Errorf("wrapped: %w", &mysql.MySQLError{Number: 1205}), true},
		{&mysql.MySQLError{Number: 1062}, false},
		{context.Canceled, false},
	} {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestRetryDeadlock: a transaction the database kills as a deadlock
// victim (error 1213) is run again, and succeeds.
func TestRetryDeadlock(t *testing.T) {
	s, _ := openTest(t, nil)
	ctx := context.Background()
	if _, err := s.db.Exec("CREATE TABLE scratch (k INT PRIMARY KEY, v INT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec("INSERT INTO scratch VALUES (1, 0), (2, 0)"); err != nil {
		t.Fatal(err)
	}
	// Two transactions update rows 1 and 2 in opposite orders; both hold
	// their first row before either asks for its second, so one of them
	// deadlocks on its first attempt.
	var ready sync.WaitGroup
	ready.Add(2)
	var attempts [2]atomic.Int64
	var wg sync.WaitGroup
	for i, order := range [][2]int{{1, 2}, {2, 1}} {
		wg.Go(func() {
			err := s.inTx(ctx, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, "UPDATE scratch SET v = v + 1 WHERE k = ?", order[0]); err != nil {
					return err
				}
				if attempts[i].Add(1) == 1 {
					ready.Done()
					ready.Wait()
				}
				_, err := tx.ExecContext(ctx, "UPDATE scratch SET v = v + 1 WHERE k = ?", order[1])
				return err
			})
			if err != nil {
				t.Errorf("transaction %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if s.retries.Load() == 0 {
		t.Fatal("no transaction was retried: the deadlock did not happen")
	}
	if n := count(t, s, "SELECT SUM(v) FROM scratch"); n != 4 {
		t.Fatalf("sum of updates = %d, want 4 (both transactions, each once)", n)
	}
}

// TestReportBatchFailure: a report batch that fails inside its
// transaction (here a Status too long for its column, refused in strict
// mode after the queue row was deleted) is rolled back as a whole — the
// command stays pending — and its connection, the only one in the pool,
// is not left inside the transaction for the next caller.
func TestReportBatchFailure(t *testing.T) {
	s, _ := openTest(t, map[string]string{"max_open_conns": "1"})
	if !s.multiStatements {
		t.Fatal("multi-statement report batches are off with the default DSN")
	}
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	a, b := storagetest.NewCommand("A"), storagetest.NewCommand("B")
	for _, c := range []*mdm.Command{a, b} {
		if _, err := s.EnqueueCommand(context.Background(), []string{d.ID()}, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, status := range []string{strings.Repeat("x", 300), mdm.StatusNotNow + strings.Repeat("x", 300)} {
		if _, err := s.StoreCommandReportAndRetrieveNext(d.Request(), d.Report(a.CommandUUID, status)); err == nil {
			t.Fatalf("report with a %d-byte Status: no error", len(status))
		}
		var inTx int
		if err := s.db.QueryRow("SELECT @@in_transaction").Scan(&inTx); err != nil {
			t.Fatal(err)
		}
		if inTx != 0 {
			t.Fatal("the failed batch's transaction is still open on the pooled connection")
		}
		got, err := s.RetrieveNextCommand(d.Request())
		if err != nil || got == nil || got.CommandUUID != a.CommandUUID {
			t.Fatalf("next after the failed report: %v, %v; want %s (still pending)", got, err, a.CommandUUID)
		}
	}
	got, err := s.StoreCommandReportAndRetrieveNext(d.Request(), d.Report(a.CommandUUID, mdm.StatusAcknowledged))
	if err != nil || got == nil || got.CommandUUID != b.CommandUUID {
		t.Fatalf("next after acknowledging A: %v, %v; want %s", got, err, b.CommandUUID)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM results WHERE id = ? AND command_uuid = ? AND status = 'Acknowledged'", d.ID(), a.CommandUUID); n != 1 {
		t.Fatalf("results rows for A: %d, want 1", n)
	}
}

// TestReportBatchWithoutMultiStatements: a DSN that turns multi-statement
// requests off gets the two calls, with the same outcome.
func TestReportBatchWithoutMultiStatements(t *testing.T) {
	_, dsn := openTest(t, nil)
	s := openDSNParam(t, dsn, nil, "multiStatements=false")
	if s.multiStatements {
		t.Fatal("multiStatements=false in the DSN: report batches still on")
	}
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	a := storagetest.NewCommand("A")
	if _, err := s.EnqueueCommand(context.Background(), []string{d.ID()}, a); err != nil {
		t.Fatal(err)
	}
	if got, err := s.StoreCommandReportAndRetrieveNext(d.Request(), d.Idle()); err != nil || got == nil || got.CommandUUID != a.CommandUUID {
		t.Fatalf("Idle: next %v, %v; want %s", got, err, a.CommandUUID)
	}
	if got, err := s.StoreCommandReportAndRetrieveNext(d.Request(), d.Report(a.CommandUUID, mdm.StatusAcknowledged)); err != nil || got != nil {
		t.Fatalf("Acknowledged: next %v, %v; want none", got, err)
	}
}

// openDSNParam opens a second store on openTest's database, with param
// added to the DSN and options (migrate=0 added), and closes it when the
// test ends.
func openDSNParam(tb testing.TB, dsn string, options map[string]string, param string) *Store {
	tb.Helper()
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	opts := map[string]string{"migrate": "0"}
	for k, v := range options {
		opts[k] = v
	}
	s, err := Open(dsn+sep+param, opts)
	if err != nil {
		tb.Fatalf("Open with %s: %v", param, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
