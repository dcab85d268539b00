package e2e

import (
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
}
