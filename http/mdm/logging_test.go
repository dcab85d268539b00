package mdm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	httpmdm "github.com/picomdm/picomdm/http/mdm"
	"github.com/picomdm/picomdm/http/observe"
	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/service"
)

// TestFailureLinesNameTheEnrollment: once the enrollment is resolved,
// the failure line and the closing request line both carry its
// enrollment_id (and the trace_id); a request that failed before its body
// was decoded names none rather than a guess.
func TestFailureLinesNameTheEnrollment(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		name        string
		body        []byte
		contentType string
		unsigned    bool
		err         error
		wantStatus  int
		wantID      string // "" when no enrollment_id may appear
	}{
		{name: "500 on a report", body: ack, err: errors.New("database down"), wantStatus: 500, wantID: udid},
		{name: "500 on a check-in", body: authenticate, contentType: checkinCT, err: errors.New("database down"), wantStatus: 500, wantID: udid},
		{name: "410 on a user channel", body: userAuth, contentType: checkinCT, err: service.NewStatusError(http.StatusGone, errors.New("declined")), wantStatus: 410, wantID: udid + ":u1"},
		{name: "400 unsigned", body: idle, unsigned: true, wantStatus: 400},
		{name: "400 undecodable", body: garbage, wantStatus: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger, err := pmlog.New(&buf, "json", true)
			if err != nil {
				t.Fatal(err)
			}
			h := observe.Trace(httpmdm.CheckinAndCommandHandler(&fakeService{err: tc.err},
				httpmdm.WithVerifier(p.verifier), httpmdm.WithLogger(logger)), logger)
			signature := ""
			if !tc.unsigned {
				signature = p.device.Sign(t, tc.body)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, put("/mdm", tc.body, tc.contentType, signature))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			lines := map[string]map[string]any{}
			dec := json.NewDecoder(&buf)
			for dec.More() {
				var line map[string]any
				if err := dec.Decode(&line); err != nil {
					t.Fatalf("a log line is not JSON: %v", err)
				}
				lines[line["msg"].(string)] = line
			}
			for _, msg := range []string{"mdm request failed", "http request"} {
				line, ok := lines[msg]
				if !ok {
					t.Fatalf("no %q line in %v", msg, lines)
				}
				if line[observe.TraceIDKey] == nil {
					t.Errorf("%q line without trace_id: %v", msg, line)
				}
				got, has := line[observe.EnrollmentIDKey]
				switch {
				case tc.wantID == "" && has:
					t.Errorf("%q line names enrollment %v, which was never resolved", msg, got)
				case tc.wantID != "" && got != tc.wantID:
					t.Errorf("%q line: enrollment_id = %v, want %q: %v", msg, got, tc.wantID, line)
				}
			}
		})
	}
}
