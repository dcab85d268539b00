package pgsql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
	"github.com/picomdm/picomdm/storage/internal/sqlstore/sqlstoretest"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/sqltest"
)

func TestMain(m *testing.M) {
	// Keep benchmark output readable: this test server may run without
	// autovacuum, which Open warns about.
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(m.Run())
}

// open opens a store on dsn and closes it when the test ends.
func open(tb testing.TB, dsn string, options map[string]string, with ...Option) *Store {
	tb.Helper()
	s, err := Open(dsn, options, with...)
	return sqlstoretest.Closing(tb, s, err)
}

// openFresh opens a store on a new throw-away database (dropped when the
// test ends) of the server named by PICOMDM_TEST_PGSQL_DSN. Without it the
// test skips, except under CI=true, where it fails.
func openFresh(tb testing.TB, options map[string]string) *Store {
	tb.Helper()
	return open(tb, sqltest.PostgreSQL(tb), options)
}

func TestConformance(t *testing.T) {
	s := openFresh(t, nil)
	storagetest.Run(t, s)
	// Twice against the same database: the suite must not depend on a
	// fresh one.
	storagetest.Run(t, s)
}

func TestConformanceDeleteOption(t *testing.T) {
	s := openFresh(t, map[string]string{"delete": "1"})
	// With delete=1 nothing but the results changes for the suite; the
	// one check it cannot pass is that an answered CommandUUID stays taken
	// forever, which delete=1 gives up once the purge has run, and the
	// purge does not run during the suite (only Purge runs it). No
	// results are kept, so there are none to inspect.
	storagetest.Run(t, s, storagetest.KeepsNoResults())
	var results int
	if err := s.db.QueryRow(`SELECT count(*) FROM command_results`).Scan(&results); err != nil {
		t.Fatal(err)
	}
	if results != 0 {
		t.Fatalf("delete=1 kept %d results, want none", results)
	}
}

// TestOpenConcurrently: replicas starting at once on a fresh database all
// migrate successfully, and each migration is applied exactly once.
func TestOpenConcurrently(t *testing.T) {
	dsn := sqltest.PostgreSQL(t)
	stores := sqlstoretest.OpenReplicas(t, 4, func() (*Store, error) {
		return Open(dsn, map[string]string{"max_open_conns": "4"})
	})
	ms, err := sqlstore.LoadMigrations(schemaFS, "schema")
	if err != nil {
		t.Fatal(err)
	}
	sqlstoretest.MigratedOnce(t, stores[0].db, ms)
	// And once more, now that the schema is current: nothing to do.
	s := open(t, dsn, nil)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestOpenOptions(t *testing.T) {
	dsn := sqltest.PostgreSQL(t)
	if _, err := Open(dsn, map[string]string{"retension": "1h"}); err == nil {
		t.Fatal("Open with a misspelt option: no error")
	}
	// migrate=0 on a fresh database: nothing is created.
	s := open(t, dsn, map[string]string{"migrate": "0"})
	var tables int
	if err := s.db.QueryRow(`SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("migrate=0 created %d tables", tables)
	}
	// max_open_conns=0 (unlimited) keeps an idle pool.
	u := open(t, dsn, map[string]string{"max_open_conns": "0"})
	if u.opts.MaxIdleConns == 0 {
		t.Fatal("max_open_conns=0 left no idle connections: every request would reconnect")
	}
}

// TestConcurrentAcks: 1,000 devices acknowledge one multi-target command
// at once, from 64 connections. Nothing deadlocks or fails, every answer
// is recorded, and the queue is left empty.
func TestConcurrentAcks(t *testing.T) {
	for _, del := range []bool{false, true} {
		t.Run(fmt.Sprintf("delete=%v", del), func(t *testing.T) {
			opts := map[string]string{"max_open_conns": "64"}
			if del {
				opts["delete"] = "1"
			}
			s := openFresh(t, opts)
			ctx := context.Background()
			const devices, workers = 1000, 64
			devs := storagetest.EnrollDevices(t, s, devices)
			ids := make([]string, len(devs))
			for i, d := range devs {
				ids[i] = d.ID()
			}
			cmd := storagetest.NewCommand("InstallProfile")
			errs, err := s.EnqueueCommand(ctx, ids, cmd)
			if err != nil || len(errs) != 0 {
				t.Fatalf("enqueue: %v %v", errs, err)
			}
			reports := make([]*mdm.CommandResults, len(devs))
			for i, d := range devs {
				reports[i] = d.Report(cmd.CommandUUID, mdm.StatusAcknowledged)
			}
			work := make(chan int)
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for i := range work {
						got, err := s.RetrieveNextCommand(devs[i].Request())
						if err != nil || got == nil || got.CommandUUID != cmd.CommandUUID {
							t.Errorf("device %d: next command %v, %v", i, got, err)
							continue
						}
						// Half through the combined statement, half the
						// plain one; both must hold up under contention.
						if i%2 == 0 {
							err = s.StoreCommandReport(devs[i].Request(), reports[i])
						} else {
							got, err = s.StoreCommandReportAndRetrieveNext(devs[i].Request(), reports[i])
							if got != nil {
								t.Errorf("device %d: next command after the ack: %s, want none", i, got.CommandUUID)
							}
						}
						if err != nil {
							t.Errorf("device %d: ack: %v", i, err)
						}
					}
				})
			}
			start := time.Now()
			for i := range devs {
				work <- i
			}
			close(work)
			wg.Wait()
			t.Logf("%d acks from %d goroutines in %v", devices, workers, time.Since(start))

			var queued, results int
			if err := s.db.QueryRow(`SELECT count(*) FROM command_queue WHERE command_uuid = $1`, cmd.CommandUUID).Scan(&queued); err != nil {
				t.Fatal(err)
			}
			if err := s.db.QueryRow(`SELECT count(*) FROM command_results WHERE command_uuid = $1 AND status = 'Acknowledged'`, cmd.CommandUUID).Scan(&results); err != nil {
				t.Fatal(err)
			}
			want := devices
			if del {
				want = 0
			}
			if queued != 0 || results != want {
				t.Fatalf("after the acks: %d queued, %d results; want 0 queued, %d results", queued, results, want)
			}
			for _, d := range devs[:10] {
				if got, err := s.RetrieveNextCommand(d.Request()); err != nil || got != nil {
					t.Fatalf("next command of %s after its ack: %v, %v", d.ID(), got, err)
				}
			}
		})
	}
}

// TestReportAndNextMatchesInmem drives the same random sequence of
// enqueues and reports through StoreCommandReportAndRetrieveNext and
// through the in-memory reference store, and wants the same next command
// after every step.
func TestReportAndNextMatchesInmem(t *testing.T) {
	for _, del := range []bool{false, true} {
		t.Run(fmt.Sprintf("delete=%v", del), func(t *testing.T) {
			opts := map[string]string{}
			if del {
				opts["delete"] = "1"
			}
			s := openFresh(t, opts)
			ref := inmem.New()
			ctx := context.Background()
			d := storagetest.NewDevice()
			storagetest.Enroll(t, s, d)
			storagetest.Enroll(t, ref, d)
			rng := rand.New(rand.NewPCG(1, 2))
			var cmds []string // every CommandUUID enqueued so far
			var next *mdm.Command
			statuses := []string{mdm.StatusAcknowledged, mdm.StatusError, mdm.StatusNotNow, mdm.StatusNotNow, mdm.StatusIdle}
			for step := range 600 {
				var what string
				var report *mdm.CommandResults
				switch op := rng.IntN(10); {
				case op < 3 || len(cmds) == 0:
					cmd := storagetest.NewCommand("ProfileList")
					for _, st := range []storage.Store{s, ref} {
						if errs, err := st.EnqueueCommand(ctx, []string{d.ID()}, cmd); err != nil || len(errs) != 0 {
							t.Fatalf("step %d: enqueue: %v %v", step, errs, err)
						}
					}
					cmds = append(cmds, cmd.CommandUUID)
					what = "enqueue " + cmd.CommandUUID
				case op < 8 && next != nil:
					// Answer the command handed out, as devices do.
					report = d.Report(next.CommandUUID, statuses[rng.IntN(len(statuses))])
				default:
					// A stray, duplicate or late answer to any command.
					report = d.Report(cmds[rng.IntN(len(cmds))], statuses[rng.IntN(len(statuses))])
				}
				var got *mdm.Command
				var err error
				if report != nil {
					what = report.Status + " " + report.CommandUUID
					if report.Status == mdm.StatusIdle {
						report = d.Idle()
					}
					got, err = s.StoreCommandReportAndRetrieveNext(d.Request(), report)
					if err != nil {
						t.Fatalf("step %d (%s): %v", step, what, err)
					}
					if err := ref.StoreCommandReport(d.Request(), report); err != nil {
						t.Fatal(err)
					}
				} else if got, err = s.RetrieveNextCommand(d.Request()); err != nil {
					t.Fatalf("step %d (%s): %v", step, what, err)
				}
				want, err := ref.RetrieveNextCommand(d.Request())
				if err != nil {
					t.Fatal(err)
				}
				if uuidOf(got) != uuidOf(want) {
					t.Fatalf("step %d (%s): next command %s, want %s", step, what, uuidOf(got), uuidOf(want))
				}
				// The combined statement must leave the same state the
				// separate calls read back.
				again, err := s.RetrieveNextCommand(d.Request())
				if err != nil || uuidOf(again) != uuidOf(want) {
					t.Fatalf("step %d (%s): next command read back %s, %v; want %s", step, what, uuidOf(again), err, uuidOf(want))
				}
				if got != nil && string(got.Raw) != string(want.Raw) {
					t.Fatalf("step %d: command %s not byte-exact", step, got.CommandUUID)
				}
				next = got
			}
		})
	}
}

func uuidOf(c *mdm.Command) string {
	if c == nil {
		return "(none)"
	}
	return c.CommandUUID
}

// TestDeleteOption: with delete=1 answered commands leave no results, and
// command rows are removed by the purge once nothing refers to them.
func TestDeleteOption(t *testing.T) {
	s := openFresh(t, map[string]string{"delete": "1"})
	ctx := context.Background()
	d1, d2 := storagetest.NewDevice(), storagetest.NewDevice()
	storagetest.Enroll(t, s, d1, d2)
	a, b := storagetest.NewCommand("A"), storagetest.NewCommand("B")
	mustEnqueue(t, s, a, d1.ID(), d2.ID())
	mustEnqueue(t, s, b, d1.ID())

	report(t, s, d1, a.CommandUUID, mdm.StatusNotNow)
	report(t, s, d1, b.CommandUUID, mdm.StatusAcknowledged)
	wantCount(t, s, `SELECT count(*) FROM command_results`, 0)
	wantCount(t, s, `SELECT count(*) FROM command_queue WHERE id = $1 AND deferred AND not_now_count = 1`, 1, d1.ID())
	report(t, s, d1, "", mdm.StatusIdle)
	report(t, s, d1, a.CommandUUID, mdm.StatusAcknowledged)
	report(t, s, d2, a.CommandUUID, mdm.StatusError)
	wantCount(t, s, `SELECT count(*) FROM command_results`, 0)
	wantCount(t, s, `SELECT count(*) FROM command_queue WHERE command_uuid IN ($1, $2)`, 0, a.CommandUUID, b.CommandUUID)

	c := storagetest.NewCommand("C") // still pending: must survive
	mustEnqueue(t, s, c, d2.ID())
	st, err := s.purge(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.commands != 2 {
		t.Fatalf("purge deleted %d commands, want 2", st.commands)
	}
	wantCount(t, s, `SELECT count(*) FROM commands WHERE command_uuid IN ($1, $2)`, 0, a.CommandUUID, b.CommandUUID)
	wantCount(t, s, `SELECT count(*) FROM commands WHERE command_uuid = $1`, 1, c.CommandUUID)
	got, err := s.RetrieveNextCommand(d2.Request())
	if err != nil || uuidOf(got) != c.CommandUUID {
		t.Fatalf("next command of d2 after the purge: %s, %v; want %s", uuidOf(got), err, c.CommandUUID)
	}
}

// TestRetention: the purge deletes results older than the retention in
// batches, then the commands nothing refers to; it keeps recent results,
// pending commands, and commands with recent results, however many old
// commands are still pending ahead of them.
func TestRetention(t *testing.T) {
	s := openFresh(t, map[string]string{"retention": "1h"})
	ctx := context.Background()
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)

	// Old, answered: results and commands to purge. More than a batch
	// of each, written in bulk.
	const oldAnswered = 2*purgeBatch + 345
	bulkHistory(t, s, d.ID(), oldAnswered, "1-answered")
	mustExec(t, s, `UPDATE command_results SET answered_at = now() - interval '2 hours'`)
	// Old, still pending (more than a batch, ahead of the others in the
	// purge's cursor order): kept.
	const oldPending = purgeBatch + 10
	bulkQueue(t, s, d.ID(), oldPending, "0-pending")
	// Old command, answered recently: kept with its result.
	late := storagetest.NewCommand("Late")
	mustEnqueue(t, s, late, d.ID())
	report(t, s, d, late.CommandUUID, mdm.StatusAcknowledged)
	mustExec(t, s, `UPDATE commands SET created_at = now() - interval '3 hours'`)
	// Recent everything: kept.
	fresh := storagetest.NewCommand("Fresh")
	mustEnqueue(t, s, fresh, d.ID())
	report(t, s, d, fresh.CommandUUID, mdm.StatusError)

	st, err := s.purge(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.results != oldAnswered || st.commands != oldAnswered {
		t.Fatalf("purge deleted %d results and %d commands, want %d of each", st.results, st.commands, oldAnswered)
	}
	wantCount(t, s, `SELECT count(*) FROM command_results`, 2)
	wantCount(t, s, `SELECT count(*) FROM commands`, oldPending+2)
	wantCount(t, s, `SELECT count(*) FROM command_queue`, oldPending)

	// Idempotent: again, nothing to do.
	if st, err := s.purge(ctx, time.Now()); err != nil || st.results != 0 || st.commands != 0 {
		t.Fatalf("second purge: %+v, %v; want nothing deleted", st, err)
	}

	// One replica at a time: while another holds the purge lock, skip.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, purgeLockKey); err != nil {
		t.Fatal(err)
	}
	if st, err := s.purge(ctx, time.Now()); err != nil || !st.skipped {
		t.Fatalf("purge while another replica purges: %+v, %v; want skipped", st, err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, purgeLockKey); err != nil {
		t.Fatal(err)
	}
}

// TestPurge: Purge is one round of the purge as of the now it is given
// (the app's background runner calls it; opening a store starts none),
// and does nothing when neither delete=1 nor a retention asks for it.
func TestPurge(t *testing.T) {
	s := openFresh(t, map[string]string{"retention": "1h"})
	ctx := context.Background()
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	bulkHistory(t, s, d.ID(), 10, "round")
	if n, err := s.Purge(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("Purge of fresh results: %d, %v; want nothing", n, err)
	}
	if n, err := s.Purge(ctx, time.Now().Add(2*time.Hour)); err != nil || n != 10 {
		t.Fatalf("Purge two hours on: %d, %v; want 10 results", n, err)
	}
	wantCount(t, s, `SELECT count(*) FROM command_results`, 0)
	wantCount(t, s, `SELECT count(*) FROM commands`, 0)

	if got := s.PurgeInterval(); got != 10*time.Minute {
		t.Errorf("PurgeInterval() = %v, want the purge_interval default, 10m", got)
	}
	kept := openFresh(t, map[string]string{"retention": "0", "purge_interval": "3m"})
	if got := kept.PurgeInterval(); got != 3*time.Minute {
		t.Errorf("PurgeInterval() = %v, want the purge_interval option, 3m", got)
	}
	storagetest.Enroll(t, kept, d)
	bulkHistory(t, kept, d.ID(), 3, "kept")
	if n, err := kept.Purge(ctx, time.Now().AddDate(10, 0, 0)); err != nil || n != 0 {
		t.Fatalf("Purge with retention=0: %d, %v; want nothing", n, err)
	}
	wantCount(t, kept, `SELECT count(*) FROM command_results`, 3)
}

// TestLastSeen: reports refresh last_seen_at, but at most once a minute
// per enrollment, whether the in-process throttle remembers or not.
func TestLastSeen(t *testing.T) {
	s := openFresh(t, nil)
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	rowVersion := func() (xmin string, seen time.Time) {
		t.Helper()
		if err := s.db.QueryRow(`SELECT xmin::text, last_seen_at FROM enrollments WHERE id = $1`, d.ID()).Scan(&xmin, &seen); err != nil {
			t.Fatal(err)
		}
		return xmin, seen
	}
	mustExec(t, s, `UPDATE enrollments SET last_seen_at = now() - interval '5 minutes' WHERE id = $1`, d.ID())
	_, old := rowVersion()
	s.seen = sqlstore.NewThrottle(seenInterval) // as a replica that has not seen the enrollment yet
	report(t, s, d, "", mdm.StatusIdle)
	v1, seen := rowVersion()
	if !seen.After(old.Add(4 * time.Minute)) {
		t.Fatalf("last_seen_at %v not refreshed by the report (was %v)", seen, old)
	}
	// Within the minute: no write, neither with the throttle's memory...
	report(t, s, d, "", mdm.StatusIdle)
	// ...nor without it (another replica): the statement's guard holds.
	s.seen = sqlstore.NewThrottle(seenInterval)
	report(t, s, d, storagetest.NewUUID(), mdm.StatusAcknowledged)
	if v2, _ := rowVersion(); v2 != v1 {
		t.Fatalf("enrollment row rewritten (xmin %s → %s) by reports within a minute", v1, v2)
	}
}

// TestEnqueueLarge: one enqueue to 100,000 enrollments (plus some unknown
// IDs) is one set-based statement, well under 10 seconds.
func TestEnqueueLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	s := openFresh(t, nil)
	ids := bulkFleet(t, s, 100_000)
	unknown := []string{storagetest.NewUUID(), "", storagetest.NewUUID()}
	cmd := storagetest.NewCommand("InstallProfile")
	start := time.Now()
	errs, err := s.EnqueueCommand(context.Background(), append(append([]string{}, ids...), unknown...), cmd)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("enqueue to %d targets: %v", len(ids), elapsed)
	if elapsed > 10*time.Second {
		t.Fatalf("enqueue to %d targets took %v, want well under 10s", len(ids), elapsed)
	}
	if len(errs) != len(unknown) {
		t.Fatalf("%d per-ID errors, want %d", len(errs), len(unknown))
	}
	for _, id := range unknown {
		if !errors.Is(errs[id], storage.ErrNotFound) {
			t.Fatalf("unknown %q: %v", id, errs[id])
		}
	}
	wantCount(t, s, `SELECT count(*) FROM command_queue WHERE command_uuid = $1`, len(ids), cmd.CommandUUID)
}

// TestNextCommandPlan: the hot-path queries use the indexes the schema
// names for them, on tables big enough for the planner to care.
func TestNextCommandPlan(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	s := openFresh(t, nil)
	ids := bulkFleet(t, s, 20_000)
	for range 3 {
		mustEnqueue(t, s, storagetest.NewCommand("ProfileList"), ids...)
	}
	bulkHistory(t, s, ids[0], 50_000, "plan")
	mustExec(t, s, `ANALYZE`)
	for _, tc := range []struct {
		name, query string
		args        []any
		want        []string
	}{
		{"next", nextSQL, []any{ids[0]}, []string{"command_queue_next", "commands_pkey"}},
		{"idle", idleUpdate, []any{ids[0]}, []string{"command_queue_deferred"}},
		{"final", reportSQL[reportStatement{kind: reportFinal}], []any{ids[0], "x", "Acknowledged", []byte("x")}, []string{"command_queue_pkey"}},
		{"push", retrievePushInfoSQL, []any{pq.Array(ids[:100])}, []string{"enrollments_pkey"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := s.db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback() // EXPLAIN ANALYZE of a write must not keep it
			text := strings.Join(explain(t, tx, "ANALYZE, COSTS OFF", tc.query, tc.args...), "\n")
			for _, idx := range tc.want {
				if !strings.Contains(text, idx) {
					t.Fatalf("plan does not use %s:\n%s", idx, text)
				}
			}
			if strings.Contains(text, "Seq Scan on command_queue") || strings.Contains(text, "Seq Scan on enrollments") {
				t.Fatalf("plan scans a whole table:\n%s", text)
			}
		})
	}
}

// Helpers.

// explain runs query with args under EXPLAIN (options) on q and returns
// the plan's lines.
func explain(t *testing.T, q sqlstore.Querier, options, query string, args ...any) []string {
	t.Helper()
	return sqlstoretest.Column(t, q, "EXPLAIN ("+options+") "+query, args...)
}

func mustEnqueue(tb testing.TB, s *Store, cmd *mdm.Command, ids ...string) {
	tb.Helper()
	errs, err := s.EnqueueCommand(context.Background(), ids, cmd)
	if err != nil || len(errs) != 0 {
		tb.Fatalf("enqueue %s: %v %v", cmd.CommandUUID, errs, err)
	}
}

func report(tb testing.TB, s *Store, c *storagetest.Channel, commandUUID, status string) {
	tb.Helper()
	r := c.Report(commandUUID, status)
	if status == mdm.StatusIdle {
		r = c.Idle()
	}
	if err := s.StoreCommandReport(c.Request(), r); err != nil {
		tb.Fatalf("%s report of %s: %v", status, commandUUID, err)
	}
}

func mustExec(tb testing.TB, s *Store, query string, args ...any) {
	tb.Helper()
	if _, err := s.db.Exec(query, args...); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
}

func wantCount(tb testing.TB, s *Store, query string, want int, args ...any) {
	tb.Helper()
	var n int
	if err := s.db.QueryRow(query, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	if n != want {
		tb.Fatalf("%s = %d, want %d", query, n, want)
	}
}

// bulkFleet enrolls n device channels with one INSERT (the benchmarks'
// fleets would take minutes through n TokenUpdates) and returns their IDs.
func bulkFleet(tb testing.TB, s *Store, n int) []string {
	tb.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = storagetest.NewUUID()
	}
	mustExec(tb, s, `
INSERT INTO enrollments (id, device_id, type, topic, push_magic, token, token_update)
SELECT id, id, 'Device', 'com.apple.mgmt.External.bench', md5(id), decode(md5(id), 'hex'), '\x00'::bytea
FROM unnest($1::text[]) AS id`, pq.Array(ids))
	return ids
}

// bulkQueue queues n new commands (CommandUUIDs prefix-1 … prefix-n, with
// bodies the size of a typical command) to enrollment id, set-based.
func bulkQueue(tb testing.TB, s *Store, id string, n int, prefix string) {
	tb.Helper()
	mustExec(tb, s, `
WITH c AS (
    INSERT INTO commands (command_uuid, request_type, command)
    SELECT $3::text || '-' || g, 'ProfileList', convert_to(repeat('<plist/>', 90), 'UTF8')
    FROM generate_series(1, $2::int) AS g
    RETURNING command_uuid
)
INSERT INTO command_queue (id, command_uuid) SELECT $1, command_uuid FROM c`, id, n, prefix)
}

// bulkHistory gives enrollment id n answered (Acknowledged) commands the
// way devices would: queued, then moved from the queue to the results, as
// the final-answer statement does, only all at once. So the tables (dead
// queue rows included) look as after n real round trips.
func bulkHistory(tb testing.TB, s *Store, id string, n int, prefix string) {
	tb.Helper()
	bulkQueue(tb, s, id, n, prefix)
	mustExec(tb, s, `
WITH done AS (
    DELETE FROM command_queue WHERE id = $1 AND command_uuid LIKE $2::text || '-%'
    RETURNING id, command_uuid, not_now_count, queued_at
)
INSERT INTO command_results (id, command_uuid, status, result, not_now_count, queued_at)
SELECT id, command_uuid, 'Acknowledged', convert_to(repeat('<plist/>', 40), 'UTF8'), not_now_count, queued_at FROM done`, id, prefix)
}

// TestUnstorableIDs: IDs PostgreSQL cannot hold as text (a NUL byte,
// invalid UTF-8) are unknown enrollments, not a failed statement.
func TestUnstorableIDs(t *testing.T) {
	s := openFresh(t, nil)
	ctx := context.Background()
	d := storagetest.NewDevice()
	storagetest.Enroll(t, s, d)
	bad := []string{"nul\x00" + storagetest.NewUUID(), "bad\xff" + storagetest.NewUUID()}
	cmd := storagetest.NewCommand("ProfileList")
	errs, err := s.EnqueueCommand(ctx, append([]string{bad[0], d.ID()}, bad[1]), cmd)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	if len(errs) != len(bad) {
		t.Fatalf("per-ID errors %v, want one for each of %q", errs, bad)
	}
	for _, id := range bad {
		if !errors.Is(errs[id], storage.ErrNotFound) {
			t.Fatalf("enqueue to %q: %v, want ErrNotFound", id, errs[id])
		}
	}
	if _, err := s.EnqueueCommand(ctx, bad, cmd); !errors.Is(err, storage.ErrCommandExists) {
		t.Fatalf("enqueue of existing %s to unstorable IDs only: %v, want ErrCommandExists", cmd.CommandUUID, err)
	}
	info, err := s.RetrievePushInfo(ctx, append(bad, d.ID()))
	if err != nil || len(info) != 1 || info[d.ID()] == nil {
		t.Fatalf("push info: %v, %v; want just %s", info, err, d.ID())
	}
}

// TestMigrationPages: RetrieveMigrationCheckins walks every device, page
// after page, in ID order.
func TestMigrationPages(t *testing.T) {
	s := openFresh(t, nil)
	const devices = 2*migrationPage + 17
	ids := bulkFleet(t, s, devices)
	mustExec(t, s, `UPDATE enrollments SET token_update = convert_to(id, 'UTF8')`)
	var got []string
	err := s.RetrieveMigrationCheckins(context.Background(), func(raw []byte) error {
		got = append(got, string(raw))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if !slices.Equal(got, ids) {
		t.Fatalf("migration yielded %d TokenUpdates, want %d in ID order", len(got), len(ids))
	}
}

// TestNextCommandCostFlat: the next-command lookup reads a handful of
// pages whether the enrollment answered 10 or 100,000 commands before
// (EXPLAIN ANALYZE buffer counts, which unlike timings do not depend on
// what else the machine is doing).
func TestNextCommandCostFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	s := openFresh(t, nil)
	// A fleet with work pending, so that the statistics ANALYZE gathers
	// look like production's (with a single enrollment in the queue, the
	// planner rightly prefers scanning the table to probing an index).
	fleet := bulkFleet(t, s, 2000)
	mustEnqueue(t, s, storagetest.NewCommand("FleetWide"), fleet...)
	buffers := make(map[int]int)
	for _, history := range []int{10, 100_000} {
		d := storagetest.EnrollDevices(t, s, 1)[0]
		bulkHistory(t, s, d.ID(), history, fmt.Sprintf("h%d", history))
		mustEnqueue(t, s, storagetest.NewCommand("Pending"), d.ID())
		// What real round trips leave: see BenchmarkNextCommandDeviceFlow.
		mustExec(t, s, `VACUUM ANALYZE command_queue`)
		plan := explain(t, s.db, "ANALYZE, BUFFERS, COSTS OFF, FORMAT TEXT", nextSQL, d.ID())
		// The top node's "Buffers: shared hit=N read=M" covers the
		// whole statement.
		for _, line := range plan {
			if i := strings.Index(line, "Buffers: shared"); i >= 0 {
				for _, f := range strings.Fields(line[i+len("Buffers: shared"):]) {
					var n int
					if _, err := fmt.Sscanf(f, "hit=%d", &n); err == nil {
						buffers[history] += n
					} else if _, err := fmt.Sscanf(f, "read=%d", &n); err == nil {
						buffers[history] += n
					}
				}
				break
			}
		}
		t.Logf("history %d:\n%s", history, strings.Join(plan, "\n"))
	}
	// A few more buffers are fine: 100,000 more commands make the
	// commands primary key and command_queue_next one level deeper
	// (B-tree depth grows with the log of the table, not with the
	// enrollment's history).
	if buffers[10] == 0 || buffers[100_000] > buffers[10]+6 {
		t.Fatalf("next-command lookup reads %d buffers after 100,000 answers, %d after 10", buffers[100_000], buffers[10])
	}
}
