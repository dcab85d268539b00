package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/push"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/test/servicetest"
)

// plistDict renders a check-in or report body with string values.
func plistDict(kv ...string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>`)
	for i := 0; i < len(kv); i += 2 {
		fmt.Fprintf(&b, "<key>%s</key><string>%s</string>", kv[i], kv[i+1])
	}
	b.WriteString(`</dict></plist>`)
	return b.String()
}

// mdmHandler is a stand-in for http/mdm: check-ins on PUT, reports on
// POST, errors as 400/500.
func mdmHandler(svc service.CheckinAndCommandService) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := mdm.NewRequest(r.Context(), nil)
		var out []byte
		var err error
		if r.Method == http.MethodPut {
			out, err = service.CheckinRequest(svc, req, body)
		} else {
			out, err = service.CommandReportRequest(svc, req, body)
		}
		var parseErr *mdm.ParseError
		switch {
		case errors.As(err, &parseErr):
			w.WriteHeader(http.StatusBadRequest)
		case err != nil:
			w.WriteHeader(http.StatusInternalServerError)
		}
		w.Write(out)
	})
}

// scrape returns the /metrics body of reg.
func scrape(t *testing.T, reg *Registry) string {
	t.Helper()
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", resp.StatusCode, body)
	}
	return string(body)
}

func TestScriptedSession(t *testing.T) {
	reg := New("v1.2.3")
	next := &servicetest.Recorder{Next: servicetest.NewCommand("CMD-1", "DeviceInformation")}
	srv := httptest.NewServer(reg.Instrument("/mdm", mdmHandler(reg.Service(next))))
	defer srv.Close()

	const udid = "UDID-0001"
	session := []struct {
		method, body string
		want         int
	}{
		{http.MethodPut, plistDict("MessageType", "Authenticate", "UDID", udid, "Topic", "com.apple.mgmt.test"), 200},
		{http.MethodPut, plistDict("MessageType", "TokenUpdate", "UDID", udid, "Topic", "com.apple.mgmt.test", "PushMagic", "magic"), 200},
		{http.MethodPost, plistDict("Status", "Idle", "UDID", udid), 200},
		{http.MethodPost, plistDict("Status", "Acknowledged", "UDID", udid, "CommandUUID", "CMD-1"), 200},
		{http.MethodPut, "not a plist", 400},
	}
	for i, step := range session {
		req, _ := http.NewRequest(step.method, srv.URL+"/mdm", strings.NewReader(step.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != step.want {
			t.Fatalf("step %d: status %d, want %d", i, resp.StatusCode, step.want)
		}
	}
	reg.CommandsEnqueued(3)

	store := reg.InstrumentStore(inmem.New())
	if _, err := store.RetrievePushInfo(t.Context(), []string{udid}); err != nil {
		t.Fatal(err)
	}

	body := scrape(t, reg)
	for _, want := range []string{
		`picomdm_http_requests_total{code="200",route="/mdm"} 4`,
		`picomdm_http_requests_total{code="400",route="/mdm"} 1`,
		`picomdm_http_request_duration_seconds_count{code="200",route="/mdm"} 4`,
		`picomdm_checkins_total{message_type="Authenticate"} 1`,
		`picomdm_checkins_total{message_type="TokenUpdate"} 1`,
		`picomdm_checkins_total{message_type="CheckOut"} 0`,
		`picomdm_command_reports_total{status="Idle"} 1`,
		`picomdm_command_reports_total{status="Acknowledged"} 1`,
		`picomdm_commands_delivered_total 2`,
		`picomdm_commands_enqueued_total 3`,
		`picomdm_storage_operation_duration_seconds_count{operation="RetrievePushInfo"} 1`,
		`picomdm_build_info{goversion="` + runtime.Version() + `",version="v1.2.3"} 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(body, udid) {
		t.Error("scrape names an enrollment ID")
	}
}

func TestReportStatusOther(t *testing.T) {
	reg := New("dev", WithoutRuntimeMetrics())
	svc := reg.Service(&servicetest.Recorder{})
	for _, status := range []string{"NotNow", "SomethingNew", "Error"} {
		svc.CommandAndReportResults(mdm.NewRequest(t.Context(), nil), &mdm.CommandResults{Status: status})
	}
	for status, want := range map[string]float64{"NotNow": 1, "other": 1, "Error": 1, "Idle": 0} {
		if got := value(t, reg, "picomdm_command_reports_total", "status", status); got != want {
			t.Errorf("reports{status=%q} = %v, want %v", status, got, want)
		}
	}
	if got := value(t, reg, "picomdm_commands_delivered_total"); got != 0 {
		t.Errorf("delivered = %v with no command returned", got)
	}
}

func TestCheckinErrors(t *testing.T) {
	reg := New("dev", WithoutRuntimeMetrics())
	svc := reg.Service(&servicetest.Recorder{Err: errors.New("boom")})
	if err := svc.CheckOut(mdm.NewRequest(t.Context(), nil), &mdm.CheckOut{}); err == nil {
		t.Fatal("error not passed through")
	}
	if got := value(t, reg, "picomdm_checkin_errors_total", "message_type", "CheckOut"); got != 1 {
		t.Errorf("checkin_errors{CheckOut} = %v, want 1", got)
	}
}

// panicStore is a storage.Store whose every method panics (its embedded
// interface is nil): enough to see that the wrapper observes a method
// before it reaches the wrapped store.
type panicStore struct{ storage.Store }

// TestInstrumentStoreTimesEveryMethod calls every storage.Store method on
// the wrapper and checks each was observed under its own name, so a method
// added to storage.Store but not to Store (promoted untimed) fails here.
func TestInstrumentStoreTimesEveryMethod(t *testing.T) {
	reg := New("dev", WithoutRuntimeMetrics())
	wrapped := reflect.ValueOf(reg.InstrumentStore(panicStore{}))
	iface := reflect.TypeFor[storage.Store]()
	for i := range iface.NumMethod() {
		name := iface.Method(i).Name
		m := wrapped.MethodByName(name)
		args := make([]reflect.Value, m.Type().NumIn())
		for j := range args {
			args[j] = reflect.Zero(m.Type().In(j))
		}
		func() {
			defer func() { recover() }()
			m.Call(args)
		}()
		if n := value(t, reg, "picomdm_storage_operation_duration_seconds", "operation", name); n != 1 {
			t.Errorf("%s: not timed", name)
		}
	}
}

func TestInstrumentStoreErrors(t *testing.T) {
	reg := New("dev", WithoutRuntimeMetrics())
	store := reg.InstrumentStore(inmem.New())
	if _, err := store.RetrieveTokenUpdateTally(t.Context(), "nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	if got := value(t, reg, "picomdm_storage_operation_errors_total", "operation", "RetrieveTokenUpdateTally"); got != 0 {
		t.Errorf("ErrNotFound counted as a failure")
	}
	if err := store.Ping(t.Context()); err != nil {
		t.Errorf("Ping of a store without Ping: %v", err)
	}
}

func TestWebhookAndPushCertCollectors(t *testing.T) {
	reg := New("dev", WithoutRuntimeMetrics())
	reg.RegisterWebhook(func() WebhookCounts {
		return WebhookCounts{Delivered: 7, Retries: 2, SetAside: 1, StoreFailed: 3, Trimmed: 5}
	})
	reg.RegisterOutbox(func(context.Context) (storage.OutboxStats, error) {
		return storage.OutboxStats{Pending: 4, Failed: 6, OldestPending: time.Now().Add(-time.Minute)}, nil
	}, 0)
	now := time.Now()
	reg.RegisterPushCertExpiry(func(context.Context) (map[string]time.Time, error) {
		return map[string]time.Time{"com.apple.mgmt.test": now.Add(time.Hour)}, nil
	}, 0)
	body := scrape(t, reg)
	for _, want := range []string{
		"picomdm_webhook_deliveries_total 7",
		"picomdm_webhook_retries_total 2",
		"picomdm_webhook_set_aside_total 1",
		"picomdm_webhook_store_failures_total 3",
		"picomdm_webhook_outbox_trimmed_total 5",
		`picomdm_webhook_outbox_events{state="pending"} 4`,
		`picomdm_webhook_outbox_events{state="failed"} 6`,
		"picomdm_webhook_outbox_oldest_pending_age_seconds 6",             // 60.x
		`picomdm_push_cert_expiry_seconds{topic="com.apple.mgmt.test"} 3`, // 3599.x
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s\n%s", want, body)
		}
	}
}

func TestPushCertFailureKeepsScrape(t *testing.T) {
	reg := New("dev", WithoutRuntimeMetrics())
	reg.RegisterOutbox(func(context.Context) (storage.OutboxStats, error) {
		return storage.OutboxStats{}, errors.New("outbox down")
	}, time.Second)
	reg.RegisterPushCertExpiry(func(context.Context) (map[string]time.Time, error) {
		return nil, errors.New("database down")
	}, time.Second)
	reg.CommandDelivered()
	body := scrape(t, reg)
	if !strings.Contains(body, "picomdm_commands_delivered_total 1") {
		t.Errorf("scrape lost the other metrics:\n%s", body)
	}
}

// refused is a push.Refusal, as apns.Error is (push/apns tests the
// reasons it gives).
type refused string

func (r refused) Error() string         { return "refused: " + string(r) }
func (r refused) RefusalReason() string { return string(r) }

func TestPushResult(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, PushSuccess},
		{refused("Unregistered"), "Unregistered"},
		{fmt.Errorf("wrapped: %w", refused("Service Unavailable")), "Service Unavailable"},
		{push.ErrNoPushInfo, PushNoPushInfo},
		{fmt.Errorf("topic x: %w", push.ErrNoPushCert), PushNoPushCert},
		{context.DeadlineExceeded, PushError},
	}
	for _, tt := range tests {
		if got := PushResult(tt.err); got != tt.want {
			t.Errorf("PushResult(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	reg := New("dev", WithoutRuntimeMetrics())
	reg.ObservePush("com.apple.mgmt.test", PushResult(nil))
	if got := value(t, reg, "picomdm_pushes_total", "topic", "com.apple.mgmt.test", "result", PushSuccess); got != 1 {
		t.Errorf("pushes = %v, want 1", got)
	}
}

// value gathers reg and returns the value of the series name{labels...}
// (label name, value pairs): a counter's or gauge's value, a histogram's
// sample count; 0 if there is no such series.
func value(t *testing.T, reg *Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Prometheus().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for i := 0; i < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, val string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == val {
			return true
		}
	}
	return false
}

func TestEnqueueCounted(t *testing.T) {
	reg := New("dev", WithoutRuntimeMetrics())
	store := reg.InstrumentStore(inmem.New())
	// No enrollment exists: nothing is queued, nothing counted.
	failed, err := store.EnqueueCommand(t.Context(), []string{"a", "b"}, servicetest.NewCommand("CMD-2", "DeviceInformation"))
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 2 {
		t.Fatalf("failed = %v, want both unknown", failed)
	}
	if got := value(t, reg, "picomdm_commands_enqueued_total"); got != 0 {
		t.Errorf("enqueued = %v, want 0", got)
	}
}
