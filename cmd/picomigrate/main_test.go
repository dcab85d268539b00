package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/cmd/picomdm/app"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/test/apiclient"
	"github.com/picomdm/picomdm/test/device"
	"github.com/picomdm/picomdm/test/sqltest"
)

const apiKey = "migrate-key"

// backend is one hop of the round trip: the -storage flags of a server.
type backend struct {
	name string
	args []string
}

// hop runs a server on b with -migration -retro, returns its app and URL.
func hop(t *testing.T, caFile string, b backend) (*app.App, *httptest.Server) {
	t.Helper()
	args := append([]string{"-ca", caFile, "-api", apiKey, "-migration", "-retro"}, b.args...)
	a, err := app.New(args, func(string) string { return "" }, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("%s server: %v", b.name, err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() { srv.Close(); a.Close() })
	return a, srv
}

// snapshot is what a store's migration source says, decoded and sorted,
// for comparing stores.
func snapshot(t *testing.T, src storage.MigrationStore, ids map[string]bool) []string {
	t.Helper()
	var out []string
	err := src.RetrieveMigrationCheckins(context.Background(), func(raw []byte) error {
		msg, err := mdm.DecodeCheckin(raw)
		if err != nil {
			return err
		}
		id, _ := msg.EnrollmentKeys().Resolve()
		if !ids[id.DeviceID()] {
			return nil // another test's enrollment in a shared database
		}
		var line string
		switch m := msg.(type) {
		case *mdm.Authenticate:
			line = fmt.Sprintf("Authenticate %s serial=%s", id.ID, m.SerialNumber)
		case *mdm.TokenUpdate:
			line = fmt.Sprintf("TokenUpdate %s token=%x magic=%s topic=%s unlock=%x", id.ID, m.Token, m.PushMagic, m.Topic, m.UnlockToken)
		case *mdm.SetBootstrapToken:
			line = fmt.Sprintf("SetBootstrapToken %s token=%x", id.ID, m.BootstrapToken)
		default:
			line = "unexpected " + msg.Type()
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// roundTrip enrolls devices on the first backend, migrates hop by hop
// through the others, and checks every hop holds the same enrollments and
// that the devices work against the last server.
func roundTrip(t *testing.T, hops []backend) {
	ca, err := device.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, ca.CertPEM(), 0o644)
	ctx := context.Background()

	firstApp, first := hop(t, caFile, hops[0])
	mac, err := device.New(ca, first.URL+"/mdm")
	if err != nil {
		t.Fatal(err)
	}
	ipad, _ := device.New(ca, first.URL+"/mdm")
	ue, _ := device.New(ca, first.URL+"/mdm", device.WithUserEnrollment())
	user := mac.UserChannel("USER-1", "alice", "Alice")
	for _, d := range []*device.Device{mac, ipad, ue} {
		if err := d.Enroll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := user.TokenUpdate(ctx); err != nil {
		t.Fatal(err)
	}
	mac.Token = []byte("rotated-token-for-second-update")
	if err := mac.TokenUpdate(ctx); err != nil { // the UnlockToken must survive
		t.Fatal(err)
	}
	if err := mac.SetBootstrapToken(ctx, []byte("bootstrap")); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{mac.ID(): true, ipad.ID(): true, ue.ID(): true}
	want := snapshot(t, firstApp.Store, ids)
	if len(want) != 8 {
		t.Fatalf("source snapshot has %d messages, want 8:\n%s", len(want), strings.Join(want, "\n"))
	}
	if !strings.Contains(strings.Join(want, "\n"), fmt.Sprintf("unlock=%x", mac.UnlockToken)) {
		t.Fatalf("UnlockToken lost in the source:\n%s", strings.Join(want, "\n"))
	}

	prevApp, prevSrv := firstApp, first
	for _, b := range hops[1:] {
		nextApp, next := hop(t, caFile, b)
		var out bytes.Buffer
		stats, err := Replay(ctx, prevApp.Store, HTTPSender(next.Client(), next.URL+"/migration", apiKey), Progress{Out: &out, Every: 2})
		if err != nil || stats.Failed != 0 {
			t.Fatalf("%s → %s: %+v %v\n%s", hops[0].name, b.name, stats, err, out.String())
		}
		if !strings.Contains(out.String(), "progress:") {
			t.Fatalf("no progress output: %q", out.String())
		}
		if got := snapshot(t, nextApp.Store, ids); !reflect.DeepEqual(got, want) {
			t.Fatalf("after migrating to %s:\n%s\nwant:\n%s", b.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		prevSrv.Close()
		prevApp.Close()
		prevApp, prevSrv = nextApp, next
	}

	// The devices now talk to the last server: their certificates are
	// associated retroactively and commands reach every channel.
	for _, d := range []*device.Device{mac, user, ipad, ue} {
		d.ServerURL = prevSrv.URL + "/mdm"
		uuid, raw := apiclient.NewCommand("ProfileList", nil)
		if status, body, err := apiclient.Enqueue(ctx, prevSrv.URL, apiKey, []string{d.ID()}, raw, true); err != nil || status != 200 {
			t.Fatalf("enqueue to migrated %s: %d %s %v", d.ID(), status, body, err)
		}
		if cmd, err := d.Idle(ctx); err != nil || cmd == nil || cmd.CommandUUID != uuid {
			t.Fatalf("migrated %s: %v %v", d.ID(), cmd, err)
		}
	}
	if tok, err := mac.GetBootstrapToken(ctx); err != nil || string(tok) != "bootstrap" {
		t.Fatalf("bootstrap token after migration: %q %v", tok, err)
	}
}

func fileBackend(t *testing.T, name string) backend {
	return backend{name: name, args: []string{"-storage", "file", "-storage-dsn", filepath.Join(t.TempDir(), name)}}
}

func TestRoundTripFile(t *testing.T) {
	roundTrip(t, []backend{fileBackend(t, "file-a"), fileBackend(t, "file-b"), fileBackend(t, "file-c")})
}

func TestDryRunAndFlags(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-storage-dsn", dir, "-dry-run"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "done: 0 messages") || !strings.Contains(out.String(), "dry run") {
		t.Fatalf("dry-run output %q", out.String())
	}
	if err := run(context.Background(), []string{"-storage-dsn", dir}, io.Discard, io.Discard); err == nil {
		t.Fatal("missing -url/-api accepted")
	}
}

// TestRoundTripSQL: file → MySQL → PostgreSQL → file.
func TestRoundTripSQL(t *testing.T) {
	roundTrip(t, []backend{
		fileBackend(t, "file-a"),
		{name: "mysql", args: []string{"-storage", "mysql", "-storage-dsn", sqltest.MySQL(t)}},
		{name: "pgsql", args: []string{"-storage", "pgsql", "-storage-dsn", sqltest.PostgreSQL(t)}},
		fileBackend(t, "file-b"),
	})
}
