package e2e

import (
	"errors"
	"fmt"
	"github.com/picomdm/picomdm/test/wait"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/picomdm/picomdm/test/device"
	"github.com/picomdm/picomdm/test/logtest"
	"github.com/picomdm/picomdm/test/sqltest"
)

// errNotReady is a subprocess that did not come up.
var errNotReady = errors.New("not ready")

// buildPicomdm builds the picomdm command into a temporary directory: the
// in-process server cannot be SIGKILLed, a subprocess can.
func buildPicomdm(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "picomdm")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/picomdm/picomdm/cmd/picomdm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/picomdm: %v\n%s", err, out)
	}
	return bin
}

// process is a picomdm server running as a subprocess.
type process struct {
	cmd  *exec.Cmd
	URL  string
	logs *logtest.Buffer
	done chan struct{}
}

// startProcess runs bin with args, listening on a free loopback port, and
// waits until it answers /readyz. It is killed when the test ends.
func startProcess(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := &process{URL: "http://" + addr, logs: &logtest.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append(slices.Clone(args), "-listen", addr)...)
	// A clean environment: PICOMDM_* variables would set flags.
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s log:\n%s", p.URL, p.logs.String())
		}
	})
	err = nil
	wait.For(t, 20*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("picomdm %v exited: %v\n%s", args, p.cmd.ProcessState, p.logs.String())
		default:
		}
		var resp *http.Response
		if resp, err = http.Get(p.URL + "/readyz"); err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, func() string {
		return fmt.Sprintf("picomdm at %s: %v (last error %v)\n%s", p.URL, errNotReady, err, p.logs.String())
	})
	return p
}

// kill SIGKILLs the process and waits for it to be gone.
func (p *process) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// TestOutboxKill is the second test, on MySQL and PostgreSQL: two
// replicas (real picomdm processes) on one database deliver to one
// receiver; one is SIGKILLed while it holds deliveries in flight, and the
// devices go on through the other. Every event arrives at least once, the
// first arrivals in order per enrollment; an event arrives twice only if
// its delivery was in flight (outcome unknown) when its replica died.
func TestOutboxKill(t *testing.T) {
	bin := buildPicomdm(t)
	for _, backend := range []struct {
		name string
		dsn  func(testing.TB) string
	}{
		{"mysql", sqltest.MySQL},
		{"pgsql", sqltest.PostgreSQL},
	} {
		t.Run(backend.name, func(t *testing.T) {
			t.Parallel()
			runOutboxKill(t, bin, backend.name, backend.dsn(t))
		})
	}
}

func runOutboxKill(t *testing.T, bin, storageName, dsn string) {
	const devices, perPhase = 6, 2
	hook := newHookReceiver(t)
	ca, args := backendArgs(t, storageName, dsn, outboxFlags...)
	// Each replica delivers to its own path, so the receiver tells them
	// apart.
	victim := startProcess(t, bin, append(slices.Clone(args), "-webhook-url", hook.url("/victim"))...)
	survivor := startProcess(t, bin, append(slices.Clone(args), "-webhook-url", hook.url("/survivor"))...)
	rt := new(retarget)
	client := &http.Client{Transport: rt}
	c := ctx(t)

	// Phase 1, through the victim, with the receiver holding every
	// delivery: the victim's deliveries are in flight when it dies.
	release := hook.holdRequests()
	t.Cleanup(release)
	rt.set(victim.URL)
	fleet := fleetOf(t, ca, client, devices)
	var log eventLog
	inParallel(t, fleet, func(d *device.Device) error {
		if err := enrollLogged(c, d, &log); err != nil {
			return err
		}
		return workLogged(c, victim.URL, d, perPhase, &log)
	})
	// One event per enrollment is in flight at a time: wait until every
	// enrollment's first one is held, some of them by the victim.
	eventually(t, 10*time.Second, func() bool {
		byVictim, total := hook.heldBy("/victim")
		return byVictim > 0 && total == devices
	}, func() string {
		byVictim, total := hook.heldBy("/victim")
		return fmt.Sprintf("%d deliveries held (%d by the victim), want %d", total, byVictim, devices)
	})
	inFlight, _ := hook.heldBy("/victim")
	victim.kill()
	// The receiver sees the victim's connections close before it lets
	// the held requests through, so none of those is answered 2xx.
	eventually(t, 10*time.Second, func() bool {
		byVictim, _ := hook.heldBy("/victim")
		return byVictim == 0
	}, func() string { return "the killed replica's deliveries are still held" })
	release()

	// Phase 2, through the survivor.
	rt.set(survivor.URL)
	inParallel(t, fleet, func(d *device.Device) error { return workLogged(c, survivor.URL, d, perPhase, &log) })

	want := log.want
	eventually(t, 30*time.Second, func() bool {
		_, accepted := hook.snapshot()
		return allArrived(byEnrollment(accepted, true), want) && len(outboxEvents(t, survivor.URL, "pending")) == 0
	}, func() string {
		_, accepted := hook.snapshot()
		return fmt.Sprintf("%d of %d events delivered", len(accepted), log.total())
	})
	received, accepted := hook.snapshot()
	got := byEnrollment(accepted, true)
	for id, keys := range want {
		if !slices.Equal(got[id], keys) {
			t.Errorf("enrollment %s received (first arrivals)\n%q\nwant\n%q", id, got[id], keys)
		}
	}
	// A duplicate is an event the victim had in flight: it reached the
	// receiver, whose answer the victim never read.
	dups := duplicateIDs(received)
	if len(dups) > inFlight {
		t.Errorf("%d events arrived twice, but only %d were in flight at the kill: %v", len(dups), inFlight, dups)
	}
	inFlightIDs := make(map[string]bool)
	for _, ev := range received {
		if ev.Path == "/victim" {
			inFlightIDs[ev.EventID] = true
		}
	}
	for _, id := range dups {
		if !inFlightIDs[id] {
			t.Errorf("event %s arrived twice but was never sent by the killed replica", id)
		}
	}
	t.Logf("%d deliveries in flight at the kill, %d events arrived twice", inFlight, len(dups))
	if n := len(outboxEvents(t, survivor.URL, "failed")); n != 0 {
		t.Errorf("%d events set aside, want none", n)
	}
}
