package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/picomdm/picomdm/test/apiclient"
	"github.com/picomdm/picomdm/test/device"
	"github.com/picomdm/picomdm/test/sqltest"
)

// spreadTransport sends each request to a replica picked at random, as a
// load balancer would.
type spreadTransport struct {
	replicas []*url.URL
	base     http.RoundTripper
}

func (s *spreadTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	target := s.replicas[rand.IntN(len(s.replicas))]
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host, req.Host = target.Scheme, target.Host, target.Host
	return s.base.RoundTrip(req)
}

// TestReplicas runs three server replicas on one database, spreads 200
// devices' requests across them at random, queues commands through
// different replicas, and checks every command is delivered exactly once
// per device, in FIFO order.
func TestReplicas(t *testing.T) {
	for _, backend := range []struct {
		name string
		dsn  func(testing.TB) string
	}{
		{"mysql", sqltest.MySQL},
		{"pgsql", sqltest.PostgreSQL},
	} {
		t.Run(backend.name, func(t *testing.T) {
			runReplicas(t, backend.name, backend.dsn(t), 200, 5)
		})
	}
}

func runReplicas(t *testing.T, storageName, dsn string, devices, perDevice int) {
	ca, err := device.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, ca.CertPEM(), 0o644)
	var replicas []*server
	var urls []*url.URL
	for i := 0; i < 3; i++ {
		s := startWithArgs(t, ca, []string{"-ca", caFile, "-api", apiKey, "-storage", storageName, "-storage-dsn", dsn}, nil)
		replicas = append(replicas, s)
		u, _ := url.Parse(s.URL)
		urls = append(urls, u)
	}
	client := &http.Client{Transport: &spreadTransport{replicas: urls, base: http.DefaultTransport}}
	c := context.Background()

	fleet := make([]*device.Device, devices)
	for i := range fleet {
		d, err := device.New(ca, replicas[0].mdmURL(), device.WithKeyType(device.ECDSAP256), device.WithHTTPClient(client))
		if err != nil {
			t.Fatal(err)
		}
		fleet[i] = d
	}
	each := func(fn func(i int, d *device.Device) error) {
		t.Helper()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		errs := make(chan error, len(fleet))
		for i, d := range fleet {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := fn(i, d); err != nil {
					errs <- fmt.Errorf("device %d: %w", i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	each(func(_ int, d *device.Device) error { return d.Enroll(c) })

	// Queue per-device commands through random replicas, plus one
	// multi-target command to everyone in the middle.
	want := make([][]string, devices)
	var wantMu sync.Mutex
	ids := make([]string, devices)
	for i, d := range fleet {
		ids[i] = d.ID()
	}
	enqueue := func(i int) error {
		uuid, raw := apiclient.NewCommand("DeviceInformation", nil)
		status, body, err := apiclient.Enqueue(c, replicas[rand.IntN(3)].URL, apiKey, []string{ids[i]}, raw, true)
		if err != nil || status != http.StatusOK {
			return fmt.Errorf("enqueue: %d %s %v", status, body, err)
		}
		wantMu.Lock()
		want[i] = append(want[i], uuid)
		wantMu.Unlock()
		return nil
	}
	for k := 0; k < perDevice; k++ {
		if k == perDevice/2 {
			uuid, raw := apiclient.NewCommand("ProfileList", nil)
			status, body, err := apiclient.Enqueue(c, replicas[1].URL, apiKey, ids, raw, true)
			if err != nil || status != http.StatusOK {
				t.Fatalf("multi-target enqueue: %d %s %v", status, body, err)
			}
			for i := range want {
				want[i] = append(want[i], uuid)
			}
		}
		each(func(i int, _ *device.Device) error { return enqueue(i) })
	}

	got := make([][]string, devices)
	each(func(i int, d *device.Device) error {
		cmds, err := d.Drain(c, device.Answer("Acknowledged"))
		for _, cmd := range cmds {
			got[i] = append(got[i], cmd.CommandUUID)
		}
		return err
	})
	for i := range fleet {
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Fatalf("device %d received %v\nwant (exactly once, FIFO) %v", i, got[i], want[i])
		}
	}
	// Nothing comes back afterwards, from any replica.
	each(func(i int, d *device.Device) error {
		cmd, err := d.Idle(c)
		if err == nil && cmd != nil {
			return fmt.Errorf("command %s delivered again after its final answer", cmd.CommandUUID)
		}
		return err
	})
}
