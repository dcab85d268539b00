package app

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/service/webhook"
)

// TestWebhookQueueBytesFlag: -webhook-queue-bytes defaults to the
// webhook's 64 MiB, can be set by flag or environment, and must be
// positive.
func TestWebhookQueueBytesFlag(t *testing.T) {
	noEnv := func(string) string { return "" }
	cfg, err := parseConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WebhookQueueBytes != webhook.DefaultQueueBytes || webhook.DefaultQueueBytes != 64<<20 {
		t.Errorf("default %d, want 64 MiB", cfg.WebhookQueueBytes)
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

	args := []string{"-storage", "file", "-storage-dsn", filepath.Join(t.TempDir(), "db"), "-disable-mdm",
		"-webhook-url", "http://127.0.0.1:1/webhook", "-webhook-queue-bytes", "0"}
	a, err := New(args, noEnv, io.Discard, io.Discard)
	if err == nil {
		a.Close()
		t.Fatal("-webhook-queue-bytes 0 accepted")
	}
	if !strings.Contains(err.Error(), "-webhook-queue-bytes") {
		t.Errorf("error %q does not name the flag", err)
	}
}
