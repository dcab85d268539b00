package app

import (
	"github.com/picomdm/picomdm/test/wait"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/service/webhook"
)

// TestWebhookQueueBytesFlag: -webhook-queue-bytes is still accepted (a
// script passing it keeps working), by flag or environment, and ignored:
// the events wait in the durable outbox, so even 0 starts the server.
func TestWebhookQueueBytesFlag(t *testing.T) {
	noEnv := func(string) string { return "" }
	cfg, err := parseConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WebhookQueueBytes != webhook.DefaultQueueBytes {
		t.Errorf("default %d, want %d", cfg.WebhookQueueBytes, webhook.DefaultQueueBytes)
	}
	if cfg, err = parseConfig([]string{"-webhook-queue-bytes", "1048576"}, noEnv, io.Discard); err != nil || cfg.WebhookQueueBytes != 1<<20 {
		t.Errorf("flag: %v, %v", cfg, err)
	}
	env := func(k string) string {
		if k == "PICOMDM_WEBHOOK_QUEUE_BYTES" {
			return "2048"
		}
		return ""
	}
	if cfg, err = parseConfig(nil, env, io.Discard); err != nil || cfg.WebhookQueueBytes != 2048 {
		t.Errorf("environment: %v, %v", cfg, err)
	}

	args := []string{"-storage", "inmem", "-disable-mdm",
		"-webhook-url", "http://127.0.0.1:1/webhook", "-webhook-queue-bytes", "0"}
	a, err := New(args, noEnv, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("-webhook-queue-bytes 0 refused: %v", err)
	}
	a.Close()
}

// TestWebhookOutboxFlags: the outbox flags' defaults, and -webhook-workers
// must be positive.
func TestWebhookOutboxFlags(t *testing.T) {
	noEnv := func(string) string { return "" }
	cfg, err := parseConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WebhookRetryFor != 24*time.Hour || cfg.WebhookWorkers != 8 ||
		cfg.WebhookOutboxMaxEvents != 1000000 || cfg.WebhookFailedRetention != 7*24*time.Hour {
		t.Errorf("defaults: retry-for %v, workers %d, max events %d, failed retention %v",
			cfg.WebhookRetryFor, cfg.WebhookWorkers, cfg.WebhookOutboxMaxEvents, cfg.WebhookFailedRetention)
	}
	args := []string{"-storage", "file", "-storage-dsn", filepath.Join(t.TempDir(), "db"), "-disable-mdm",
		"-webhook-url", "http://127.0.0.1:1/webhook", "-webhook-workers", "0"}
	a, err := New(args, noEnv, io.Discard, io.Discard)
	if err == nil {
		a.Close()
		t.Fatal("-webhook-workers 0 accepted")
	}
	if !strings.Contains(err.Error(), "-webhook-workers") {
		t.Errorf("error %q does not name the flag", err)
	}
}

// TestWebhookJobsWired: with -webhook-url the outbox trim runs on the
// background runner under its lease, which Close releases.
func TestWebhookJobsWired(t *testing.T) {
	noEnv := func(string) string { return "" }
	args := []string{"-storage", "inmem", "-disable-mdm", "-webhook-url", "http://127.0.0.1:1/webhook"}
	a, err := New(args, noEnv, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	store := a.Store
	// held probes the lease with one that ends at once, so a probe that
	// finds it free takes nothing from the runner.
	held := func() bool {
		now := time.Now()
		ok, err := store.AcquireLease(t.Context(), "webhook-outbox-trim", "someone-else", now, now)
		if err != nil {
			t.Fatal(err)
		}
		return !ok
	}
	wait.Until(t, 10*time.Second, "the outbox trim job to take its lease", held)
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if held() {
		t.Error("the trim lease is still held after Close")
	}
}
