package observe

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	pmlog "github.com/picomdm/picomdm/log"
)

func TestTrace(t *testing.T) {
	tests := []struct {
		name     string
		incoming string
		want     string // "" means a fresh random ID
	}{
		{"none", "", ""},
		{"sane", "abc-123_x.y", "abc-123_x.y"},
		{"too long", strings.Repeat("a", 65), ""},
		{"bad chars", "a b\nc", ""},
	}
	random := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger, err := pmlog.New(&buf, "json", true)
			if err != nil {
				t.Fatal(err)
			}
			var seen string
			h := Trace(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen = TraceID(r.Context())
				ctx := WithEnrollmentID(r.Context(), "ENROLL-1")
				ctx = WithCommandUUID(ctx, "CMD-1")
				logger.InfoContext(ctx, "handled")
				w.WriteHeader(http.StatusTeapot)
			}), logger)
			req := httptest.NewRequest(http.MethodGet, "/mdm", nil)
			if tt.incoming != "" {
				req.Header.Set(TraceHeader, tt.incoming)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			got := rec.Header().Get(TraceHeader)
			if tt.want != "" && got != tt.want {
				t.Errorf("X-Trace-ID = %q, want %q", got, tt.want)
			}
			if tt.want == "" && !random.MatchString(got) {
				t.Errorf("X-Trace-ID = %q, want 32 hex digits", got)
			}
			if seen != got {
				t.Errorf("TraceID(ctx) = %q, header %q", seen, got)
			}
			lines := decodeLines(t, &buf)
			if len(lines) != 2 {
				t.Fatalf("got %d log lines, want 2 (handler + access): %v", len(lines), lines)
			}
			for _, line := range lines {
				if line[TraceIDKey] != got {
					t.Errorf("log line %v: trace_id = %v, want %q", line["msg"], line[TraceIDKey], got)
				}
			}
			if lines[0][EnrollmentIDKey] != "ENROLL-1" || lines[0][CommandUUIDKey] != "CMD-1" {
				t.Errorf("handler line lacks enrollment_id/command_uuid: %v", lines[0])
			}
			if lines[1]["status"] != float64(http.StatusTeapot) {
				t.Errorf("access line status = %v, want 418", lines[1]["status"])
			}
			if lines[1][EnrollmentIDKey] != "ENROLL-1" {
				t.Errorf("access line lacks the enrollment the handler resolved: %v", lines[1])
			}
		})
	}
}

// TestAccessLineWithoutEnrollment: a request whose enrollment was never
// resolved (no body, a bad one) logs no enrollment_id rather than a
// wrong one; NoteEnrollmentID outside Trace is harmless.
func TestAccessLineWithoutEnrollment(t *testing.T) {
	var buf bytes.Buffer
	logger, err := pmlog.New(&buf, "json", true)
	if err != nil {
		t.Fatal(err)
	}
	h := Trace(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		NoteEnrollmentID(r.Context(), "") // nothing resolved
		w.WriteHeader(http.StatusBadRequest)
	}), logger)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPut, "/mdm", nil))
	lines := decodeLines(t, &buf)
	if len(lines) != 1 {
		t.Fatalf("got %d log lines, want 1: %v", len(lines), lines)
	}
	if _, ok := lines[0][EnrollmentIDKey]; ok {
		t.Errorf("access line names an enrollment that was never resolved: %v", lines[0])
	}
	NoteEnrollmentID(t.Context(), "ENROLL-1")
}

func TestWithEmptyValues(t *testing.T) {
	ctx := t.Context()
	if WithEnrollmentID(ctx, "") != ctx || WithCommandUUID(ctx, "") != ctx {
		t.Error("empty values changed the context")
	}
	if TraceID(ctx) != "" {
		t.Error("TraceID outside a request is not empty")
	}
}

func decodeLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var lines []map[string]any
	dec := json.NewDecoder(buf)
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	return lines
}

// BenchmarkTrace is the middleware's cost on every request, with the
// request log line disabled (info level, as servers run).
func BenchmarkTrace(b *testing.B) {
	logger, err := pmlog.New(io.Discard, "text", false)
	if err != nil {
		b.Fatal(err)
	}
	h := Trace(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), logger)
	req := httptest.NewRequest(http.MethodPut, "/mdm", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}
