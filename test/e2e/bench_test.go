package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/picomdm/picomdm/test/apnsmock"
	"github.com/picomdm/picomdm/test/device"
	"github.com/picomdm/picomdm/test/load"
	"github.com/picomdm/picomdm/test/sqltest"
)

// TestBench runs the load generator (devsim bench) against the real server
// on every backend, small: every phase must complete and every
// correctness counter must be 0, with the counts the phases imply.
func TestBench(t *testing.T) {
	for _, backend := range []struct {
		name string
		dsn  func(testing.TB) string
	}{
		{"file", func(t testing.TB) string { return filepath.Join(t.TempDir(), "db") }},
		{"mysql", sqltest.MySQL},
		{"pgsql", sqltest.PostgreSQL},
	} {
		t.Run(backend.name, func(t *testing.T) {
			mock := apnsmock.New()
			defer mock.Close()
			pushCA := filepath.Join(t.TempDir(), "apns.pem")
			if err := os.WriteFile(pushCA, mock.CertPEM(), 0o644); err != nil {
				t.Fatal(err)
			}
			ca, err := device.NewCA()
			if err != nil {
				t.Fatal(err)
			}
			caFile := filepath.Join(t.TempDir(), "ca.pem")
			if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
				t.Fatal(err)
			}
			s := startWithArgs(t, ca, []string{"-ca", caFile, "-api", apiKey,
				"-storage", backend.name, "-storage-dsn", backend.dsn(t),
				"-migration", "-push-url", mock.URL, "-push-ca", pushCA}, nil)
			const devices, commands, depth, multi = 12, 3, 5, 40
			report, err := load.Run(ctx(t), load.Config{
				MDMURL: s.mdmURL(), APIKey: apiKey, CA: s.ca,
				Devices: devices, Concurrency: 4, Commands: commands, Depth: depth,
				MultiTargets: multi, KeyType: device.ECDSAP256, Keys: 2, APNs: mock,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !report.Correct() {
				t.Errorf("not correct: %+v", report.Results)
			}
			for name, want := range map[string]float64{
				"commands_delivered":    devices * (commands + 1 + depth),
				"multi_enqueue_targets": multi,
				"push_delivered":        devices,
			} {
				if got, ok := report.Get(name); !ok || got.Value != want {
					t.Errorf("%s = %v (%v), want %v", name, got.Value, ok, want)
				}
			}
			for _, name := range []string{"enroll_pairs_per_s", "round_trips_per_s", "multi_enqueue_targets_per_s",
				"pushes_per_s", "poll_p50", "poll_p99", "poll_max", "client_sign_cost", "client_cpu_share"} {
				if got, ok := report.Get(name); !ok || got.Value <= 0 {
					t.Errorf("%s = %v (%v), want > 0", name, got.Value, ok)
				}
			}
		})
	}
}
