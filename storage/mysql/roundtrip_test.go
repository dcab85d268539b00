package mysql

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// tripCounter counts round trips to the server on the connections it
// dialled: a write that follows a read (or opens the connection) is a new
// request.
type tripCounter struct {
	mu    sync.Mutex
	trips int
}

func (c *tripCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trips
}

type countingConn struct {
	net.Conn
	c       *tripCounter
	written bool // the last operation was a write
}

func (cc *countingConn) Write(p []byte) (int, error) {
	if !cc.written {
		cc.c.mu.Lock()
		cc.c.trips++
		cc.c.mu.Unlock()
		cc.written = true
	}
	return cc.Conn.Write(p)
}

func (cc *countingConn) Read(p []byte) (int, error) {
	cc.written = false
	return cc.Conn.Read(p)
}

var (
	registerCounting sync.Once
	trips            = new(tripCounter)
)

// openCounting opens a store on openTest's database whose connections
// count their round trips in trips, with param added to the DSN.
func openCounting(t *testing.T, param string) *Store {
	t.Helper()
	registerCounting.Do(func() {
		mysql.RegisterDialContext("picomdm-counting", func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return &countingConn{Conn: conn, c: trips}, nil
		})
	})
	_, dsn := openTest(t, nil)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Net != "tcp" {
		t.Skipf("test server on %s, not tcp", cfg.Net)
	}
	cfg.Net = "picomdm-counting"
	// No background purge: its queries would count.
	return openDSNParam(t, cfg.FormatDSN(), map[string]string{"max_open_conns": "1", "retention": "0"}, param)
}

// TestRoundTrips: how many round trips each device-path operation costs,
// statement by statement (multiStatements=false) and batched. The
// last_seen_at write is left out: it is due at most once a minute.
func TestRoundTrips(t *testing.T) {
	type want struct{ statements, batched int }
	for _, tc := range []struct {
		name string
		want want
		run  func(t *testing.T, s *Store, d *storagetest.Channel, cmd *mdm.Command) error
	}{
		{"Acknowledged+next", want{5, 1}, func(t *testing.T, s *Store, d *storagetest.Channel, cmd *mdm.Command) error {
			_, err := storage.StoreReportAndRetrieveNext(s, d.Request(), d.Report(cmd.CommandUUID, mdm.StatusAcknowledged))
			return err
		}},
		{"NotNow+next", want{5, 1}, func(t *testing.T, s *Store, d *storagetest.Channel, cmd *mdm.Command) error {
			_, err := storage.StoreReportAndRetrieveNext(s, d.Request(), d.Report(cmd.CommandUUID, mdm.StatusNotNow))
			return err
		}},
		{"Idle+next", want{2, 1}, func(t *testing.T, s *Store, d *storagetest.Channel, cmd *mdm.Command) error {
			_, err := storage.StoreReportAndRetrieveNext(s, d.Request(), d.Idle())
			return err
		}},
		{"Authenticate", want{5, 1}, func(t *testing.T, s *Store, d *storagetest.Channel, cmd *mdm.Command) error {
			return s.StoreAuthenticate(d.Request(), d.Authenticate())
		}},
		{"TokenUpdate+UnlockToken", want{4, 1}, func(t *testing.T, s *Store, d *storagetest.Channel, cmd *mdm.Command) error {
			return s.StoreTokenUpdate(d.Request(), d.TokenUpdate([]byte("unlock")))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []struct {
				param string
				want  int
			}{{"multiStatements=false", tc.want.statements}, {"multiStatements=true", tc.want.batched}} {
				s := openCounting(t, mode.param)
				d := storagetest.NewDevice()
				storagetest.Enroll(t, s, d)
				cmd := storagetest.NewCommand("ProfileList")
				if _, err := s.EnqueueCommand(context.Background(), []string{d.ID()}, cmd); err != nil {
					t.Fatal(err)
				}
				before := trips.count()
				if err := tc.run(t, s, d, cmd); err != nil {
					t.Fatal(err)
				}
				got := trips.count() - before
				t.Logf("%s: %d round trips", mode.param, got)
				if got != mode.want {
					t.Errorf("%s: %d round trips, want %d", mode.param, got, mode.want)
				}
			}
		})
	}
}
