package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/apnsmock"
)

// TestRepushFlags: the -repush-* defaults, the environment, and the
// values refused at start-up.
func TestRepushFlags(t *testing.T) {
	noEnv := func(string) string { return "" }
	cfg, err := parseConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RepushInterval != time.Minute || cfg.RepushBackoff != "1m,5m,30m,1h" || cfg.RepushMax != 1000 {
		t.Errorf("defaults: interval %v, backoff %q, max %d", cfg.RepushInterval, cfg.RepushBackoff, cfg.RepushMax)
	}
	env := map[string]string{"PICOMDM_REPUSH_INTERVAL": "0", "PICOMDM_REPUSH_BACKOFF": "2m,1h", "NANOMDM_REPUSH_MAX": "5"}
	cfg, err = parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil || cfg.RepushInterval != 0 || cfg.RepushBackoff != "2m,1h" || cfg.RepushMax != 5 {
		t.Errorf("environment: %+v, %v", cfg, err)
	}
	for flag, args := range map[string][]string{
		"-repush-interval": {"-repush-interval", "-1m"},
		"-repush-backoff":  {"-repush-backoff", "1m,never"},
		"-repush-max":      {"-repush-max", "0"},
	} {
		a, err := New(append([]string{"-storage", "inmem", "-disable-mdm"}, args...), noEnv, io.Discard, io.Discard)
		if err == nil {
			a.Close()
			t.Errorf("%v accepted", args)
			continue
		}
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("error %q does not name %s", err, flag)
		}
	}
}

// TestRepushWiring: an API push is recorded and the "repush" job the
// runner gets pushes the enrollment again one backoff step later; with
// -repush-interval 0 there is no job and nothing is recorded.
func TestRepushWiring(t *testing.T) {
	mock := apnsmock.New()
	t.Cleanup(mock.Close)
	caFile := filepath.Join(t.TempDir(), "apns-ca.pem")
	if err := os.WriteFile(caFile, mock.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, interval := range []string{"1h", "0"} {
		t.Run("interval="+interval, func(t *testing.T) {
			args := []string{"-storage", "inmem", "-disable-mdm", "-api", "key",
				"-push-url", mock.URL, "-push-ca", caFile,
				"-repush-interval", interval, "-repush-backoff", "2m,1h"}
			a, err := New(args, func(string) string { return "" }, io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			ctx := context.Background()
			topic := storagetest.NewTopic()
			certPEM, keyPEM := storagetest.NewPushCert(topic)
			if err := a.Store.StorePushCert(ctx, certPEM, keyPEM); err != nil {
				t.Fatal(err)
			}
			dev := storagetest.NewDevice()
			dev.Push.Topic = topic
			storagetest.Enroll(t, a.Store, dev)
			if _, err := a.Store.EnqueueCommand(ctx, []string{dev.ID()}, storagetest.NewCommand("ProfileList")); err != nil {
				t.Fatal(err)
			}

			req := httptest.NewRequest(http.MethodGet, "/v1/push/"+dev.ID(), nil)
			req.SetBasicAuth("picomdm", "key")
			rec := httptest.NewRecorder()
			a.Handler().ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || len(mock.RequestsFor(dev.Push.Token)) != 1 {
				t.Fatalf("API push: %d %s; %d pushes", rec.Code, rec.Body, len(mock.RequestsFor(dev.Push.Token)))
			}
			pushed := time.Now()

			var job *backgroundJob
			for i := range a.jobs {
				if a.jobs[i].name == "repush" {
					job = &a.jobs[i]
				}
			}
			due, err := a.Store.DueForRepush(ctx, pushed.Add(2*time.Minute), 10)
			if err != nil {
				t.Fatal(err)
			}
			if interval == "0" {
				if job != nil || len(due) != 0 {
					t.Fatalf("-repush-interval 0: job %v, due %v", job, due)
				}
				return
			}
			if job == nil || job.interval != time.Hour {
				t.Fatalf("repush job: %+v", job)
			}
			if len(due) != 1 || due[0].ID != dev.ID() {
				t.Fatalf("due 2m after the API push: %+v", due)
			}
			if err := job.run(ctx, pushed.Add(2*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if n := len(mock.RequestsFor(dev.Push.Token)); n != 2 {
				t.Fatalf("%d pushes after the sweep round, want 2", n)
			}
		})
	}
}
