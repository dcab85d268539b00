package e2e

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
)

// TestObservability: health and readiness unauthenticated, a trace ID on
// every answer, and the metrics of a scripted device session at /metrics
// (behind the API key).
func TestObservability(t *testing.T) {
	s := startServer(t, "-log-format", "json", "-debug")
	c := ctx(t)
	d := s.enrolled()
	uuid, _ := s.command("ProfileList", d.ID())
	if _, err := d.Idle(c); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Report(c, uuid, "Acknowledged", nil); err != nil {
		t.Fatal(err)
	}
	secret := []byte("bootstrap-token-secret-value")
	if err := d.SetBootstrapToken(c, secret); err != nil {
		t.Fatal(err)
	}
	if _, err := d.GetBootstrapToken(c); err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Trace-ID") == "" {
			t.Fatalf("%s: %d, trace %q", path, resp.StatusCode, resp.Header.Get("X-Trace-ID"))
		}
	}
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics without the API key: %d", resp.StatusCode)
	}
	status, body := s.api(http.MethodGet, "/metrics", nil)
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d", status)
	}
	scrape := string(body)
	for _, series := range []string{
		`picomdm_http_requests_total{code="200",route="/mdm"}`,
		`picomdm_checkins_total{message_type="TokenUpdate"} 1`,
		`picomdm_command_reports_total{status="Acknowledged"} 1`,
		`picomdm_command_reports_total{status="Idle"} 1`,
		`picomdm_commands_enqueued_total 1`,
		`picomdm_commands_delivered_total 1`,
		`picomdm_storage_operation_duration_seconds_count{operation="RetrieveNextCommand"}`,
		`picomdm_build_info{`,
	} {
		if !strings.Contains(scrape, series) {
			t.Errorf("scrape lacks %s", series)
		}
	}
	if strings.Contains(scrape, d.UDID) {
		t.Error("an enrollment ID leaked into metric labels")
	}
	// The request log lines carry the trace ID and enrollment ID.
	logs := s.stderr.String()
	if !strings.Contains(logs, `"trace_id"`) {
		t.Errorf("no trace_id in logs:\n%s", logs)
	}
	// No secrets, even at debug level: bootstrap and unlock tokens (raw or
	// base64, as plists carry them), push tokens, the API key.
	for name, v := range map[string]string{
		"bootstrap token":        string(secret),
		"bootstrap token base64": base64.StdEncoding.EncodeToString(secret),
		"unlock token base64":    base64.StdEncoding.EncodeToString(d.UnlockToken),
		"push token base64":      base64.StdEncoding.EncodeToString(d.Token),
		"API key":                apiKey,
	} {
		if strings.Contains(logs, v) {
			t.Errorf("%s logged", name)
		}
	}
}
