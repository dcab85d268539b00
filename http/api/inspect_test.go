package api_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// fakeInspection is an in-memory InspectionStore recording what it was
// asked.
type fakeInspection struct {
	mu          sync.Mutex
	enrollments []storage.EnrollmentInfo
	queues      map[string][]storage.QueuedCommand
	commands    map[string]*storage.CommandInfo
	states      map[string][]storage.CommandState
	answered    map[string]bool // "id/uuid"
	err         error           // returned by every call when set

	filters   []storage.EnrollmentFilter
	pages     []storage.Page
	nextPage  string // next cursor the listings return
	cancelled []string
	cleared   []string
	certs     map[string][]storage.CertHashInfo
}

func (s *fakeInspection) RetrieveCertHashes(_ context.Context, id string) ([]storage.CertHashInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	return s.certs[id], nil
}

func (s *fakeInspection) DeleteCertHash(_ context.Context, id, hash string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	for i, c := range s.certs[id] {
		if c.Hash == hash {
			s.certs[id] = append(s.certs[id][:i], s.certs[id][i+1:]...)
			return nil
		}
	}
	return storage.ErrNotFound
}

func (s *fakeInspection) ListEnrollments(_ context.Context, f storage.EnrollmentFilter, p storage.Page) ([]storage.EnrollmentInfo, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.filters = append(s.filters, f)
	s.pages = append(s.pages, p)
	if s.err != nil {
		return nil, "", s.err
	}
	if p.Cursor == "bad" {
		return nil, "", storage.ErrBadCursor
	}
	var out []storage.EnrollmentInfo
	for _, e := range s.enrollments {
		if f.DeviceID != "" && e.ID != f.DeviceID && e.ParentID != f.DeviceID {
			continue
		}
		if f.Type != "" && e.Type != f.Type {
			continue
		}
		out = append(out, e)
	}
	return out, s.nextPage, nil
}

func (s *fakeInspection) RetrieveEnrollment(_ context.Context, id string) (*storage.EnrollmentInfo, error) {
	if s.err != nil {
		return nil, s.err
	}
	for _, e := range s.enrollments {
		if e.ID == id {
			return &e, nil
		}
	}
	return nil, storage.ErrNotFound
}

func (s *fakeInspection) known(id string) bool {
	_, err := s.RetrieveEnrollment(context.Background(), id)
	return err == nil
}

func (s *fakeInspection) RetrieveQueue(_ context.Context, id string) ([]storage.QueuedCommand, error) {
	if s.err != nil {
		return nil, s.err
	}
	if !s.known(id) {
		return nil, storage.ErrNotFound
	}
	return s.queues[id], nil
}

func (s *fakeInspection) ClearQueue(_ context.Context, id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	if !s.known(id) {
		return 0, storage.ErrNotFound
	}
	s.cleared = append(s.cleared, id)
	n := len(s.queues[id])
	delete(s.queues, id)
	return n, nil
}

func (s *fakeInspection) CancelCommand(_ context.Context, id, uuid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if s.answered[id+"/"+uuid] {
		return storage.ErrAlreadyAnswered
	}
	for _, c := range s.queues[id] {
		if c.CommandUUID == uuid {
			s.cancelled = append(s.cancelled, id+"/"+uuid)
			return nil
		}
	}
	return storage.ErrNotFound
}

func (s *fakeInspection) RetrieveCommand(_ context.Context, uuid string) (*storage.CommandInfo, error) {
	if s.err != nil {
		return nil, s.err
	}
	if c := s.commands[uuid]; c != nil {
		return c, nil
	}
	return nil, storage.ErrNotFound
}

func (s *fakeInspection) ListCommandStates(_ context.Context, uuid string, p storage.Page) ([]storage.CommandState, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pages = append(s.pages, p)
	if s.err != nil {
		return nil, "", s.err
	}
	if p.Cursor == "bad" {
		return nil, "", storage.ErrBadCursor
	}
	if s.commands[uuid] == nil {
		return nil, "", storage.ErrNotFound
	}
	return s.states[uuid], s.nextPage, nil
}

func (s *fakeInspection) RetrieveCommandResult(_ context.Context, uuid, id string) (*storage.CommandState, error) {
	if s.err != nil {
		return nil, s.err
	}
	for _, st := range s.states[uuid] {
		if st.EnrollmentID == id {
			return &st, nil
		}
	}
	return nil, storage.ErrNotFound
}

var (
	t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t1 = t0.Add(90 * time.Minute)

	resultPlist = []byte(`<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>Status</key><string>Acknowledged</string></dict></plist>`)
)

func newFakeInspection() *fakeInspection {
	return &fakeInspection{
		enrollments: []storage.EnrollmentInfo{
			{ID: "DEV-1", Type: mdm.Device, SerialNumber: "C02XYZ", Topic: "com.apple.mgmt.x", Enabled: true,
				TokenUpdateTally: 3, EnrolledAt: t0, LastSeenAt: t1, PushTokenValid: true, IdentityCertNotAfter: t1, PendingCommands: 2},
			{ID: "DEV-1:USER-1", Type: mdm.User, ParentID: "DEV-1", Topic: "com.apple.mgmt.x", Enabled: true, EnrolledAt: t0},
			{ID: "DEV-2", Type: mdm.Device, Topic: "com.apple.mgmt.x"},
		},
		queues: map[string][]storage.QueuedCommand{
			"DEV-1": {
				{CommandUUID: "cmd-1", RequestType: "DeviceInformation", EnqueuedAt: t0},
				{CommandUUID: "cmd-2", RequestType: "ProfileList", EnqueuedAt: t0, Status: "NotNow", NotNowCount: 2, LastNotNowAt: t1},
			},
			"DEV-1:USER-1": {{CommandUUID: "cmd-3", RequestType: "ProfileList", EnqueuedAt: t0}},
		},
		commands: map[string]*storage.CommandInfo{
			"cmd-1": {CommandUUID: "cmd-1", RequestType: "DeviceInformation", EnqueuedAt: t0, Raw: command},
		},
		states: map[string][]storage.CommandState{
			"cmd-1": {
				{EnrollmentID: "DEV-1", State: "pending", EnqueuedAt: t0},
				{EnrollmentID: "DEV-1:USER-1", State: "Acknowledged", EnqueuedAt: t0, AnsweredAt: t1, Result: resultPlist},
			},
		},
		answered: map[string]bool{"DEV-1:USER-1/cmd-1": true},
		certs: map[string][]storage.CertHashInfo{
			"DEV-1": {{Hash: certHash, NotAfter: t1, AssociatedAt: t0}},
		},
	}
}

// inspectServer mounts the inspection routes the way cmd/picomdm does.
func inspectServer(t *testing.T, store api.InspectionStore) http.Handler {
	t.Helper()
	authed := picohttp.BasicAuth(apiKey)
	mux := http.NewServeMux()
	mux.Handle("/v1/enqueue/", authed(http.StripPrefix("/v1/enqueue/", api.EnqueueHandler(new(fakeStore), nil, quiet))))
	for pattern, h := range api.InspectionRoutes(store, quiet) {
		mux.Handle(pattern, authed(h))
	}
	return mux
}

func TestInspectionRoutes(t *testing.T) {
	want := []string{
		"/v1/enrollments", "/v1/enrollments/{id}", "/v1/queue/{id}",
		"/v1/queue/{id}/{command_uuid}", "/v1/commands/{command_uuid}",
		"/v1/commands/{command_uuid}/results/{id}",
		"/v1/enrollments/{id}/certificates", "/v1/enrollments/{id}/certificates/{hash}",
	}
	routes := api.InspectionRoutes(newFakeInspection(), nil)
	if len(routes) != len(want) {
		t.Fatalf("%d routes, want %d", len(routes), len(want))
	}
	for _, p := range want {
		if routes[p] == nil {
			t.Errorf("no route %q", p)
		}
	}
}

func TestInspectionNeedsAuth(t *testing.T) {
	h := inspectServer(t, newFakeInspection())
	for _, path := range []string{"/v1/enrollments", "/v1/enrollments/DEV-1", "/v1/queue/DEV-1", "/v1/commands/cmd-1", "/v1/commands/cmd-1/results/DEV-1"} {
		if rec := do(t, h, http.MethodGet, path, nil, false); rec.Code != http.StatusUnauthorized {
			t.Errorf("GET %s without auth: %d, want 401", path, rec.Code)
		}
	}
	if rec := do(t, h, http.MethodDelete, "/v1/queue/DEV-1/cmd-1", nil, false); rec.Code != http.StatusUnauthorized {
		t.Errorf("DELETE without auth: %d, want 401", rec.Code)
	}
}

func TestListEnrollments(t *testing.T) {
	store := newFakeInspection()
	store.nextPage = "next-page"
	h := inspectServer(t, store)

	rec := do(t, h, http.MethodGet, "/v1/enrollments", nil, true)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	got := decode(t, rec)
	if got["next_cursor"] != "next-page" {
		t.Errorf("next_cursor %v", got["next_cursor"])
	}
	items := got["enrollments"].([]any)
	if len(items) != 3 {
		t.Fatalf("%d enrollments, want 3", len(items))
	}
	wantDev := map[string]any{
		"id": "DEV-1", "type": "Device", "parent_id": nil, "serial_number": "C02XYZ", "topic": "com.apple.mgmt.x",
		"enabled": true, "token_update_tally": 3.0, "enrolled_at": "2026-01-02T03:04:05Z",
		"last_seen_at": "2026-01-02T04:34:05Z", "push_token_valid": true,
		"identity_cert_not_after": "2026-01-02T04:34:05Z", "pending_commands": 2.0,
	}
	if !reflect.DeepEqual(items[0], wantDev) {
		t.Errorf("device item\n got %v\nwant %v", items[0], wantDev)
	}
	user := items[1].(map[string]any)
	if user["parent_id"] != "DEV-1" || user["last_seen_at"] != nil || user["identity_cert_not_after"] != nil {
		t.Errorf("user item %v", user)
	}
	if v, ok := user["last_seen_at"]; !ok || v != nil {
		t.Errorf("zero last_seen_at should be null, got %v (present %v)", v, ok)
	}
	if p := store.pages[0]; p != (storage.Page{Limit: api.DefaultPageLimit}) {
		t.Errorf("default page %+v", p)
	}
	if f := store.filters[0]; !reflect.DeepEqual(f, storage.EnrollmentFilter{}) {
		t.Errorf("default filter %+v", f)
	}
}

func TestListEnrollmentsEmpty(t *testing.T) {
	store := newFakeInspection()
	h := inspectServer(t, store)
	rec := do(t, h, http.MethodGet, "/v1/enrollments?type=Shared+iPad", nil, true)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if body := strings.TrimSpace(rec.Body.String()); body != `{"enrollments":[],"next_cursor":""}` {
		t.Errorf("body %s", body)
	}
}

func TestListEnrollmentsFilters(t *testing.T) {
	store := newFakeInspection()
	h := inspectServer(t, store)
	q := url.Values{
		"type": {"User Enrollment (Device)"}, "enabled": {"false"}, "serial": {"C02XYZ"},
		"topic": {"com.apple.mgmt.x"}, "device_id": {"DEV-1"},
		"seen_before": {"2026-01-02T04:34:05Z"}, "seen_after": {"2026-01-02T05:04:05+02:00"},
		"cursor": {"abc"}, "limit": {"1000"},
	}
	rec := do(t, h, http.MethodGet, "/v1/enrollments?"+q.Encode(), nil, true)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	f := store.filters[0]
	if f.Type != mdm.UserEnrollmentDevice || f.Enabled == nil || *f.Enabled || f.Serial != "C02XYZ" ||
		f.Topic != "com.apple.mgmt.x" || f.DeviceID != "DEV-1" || !f.SeenBefore.Equal(t1) || !f.SeenAfter.Equal(t0) {
		t.Errorf("filter %+v", f)
	}
	if p := store.pages[0]; p != (storage.Page{Cursor: "abc", Limit: 1000}) {
		t.Errorf("page %+v", p)
	}

	do(t, h, http.MethodGet, "/v1/enrollments?enabled=true&limit=1", nil, true)
	if f := store.filters[1]; f.Enabled == nil || !*f.Enabled {
		t.Errorf("enabled=true: %+v", f)
	}
	if p := store.pages[1]; p.Limit != 1 {
		t.Errorf("limit=1: %+v", p)
	}
}

func TestListEnrollmentsBadRequest(t *testing.T) {
	for _, query := range []string{
		"limit=0", "limit=1001", "limit=-1", "limit=ten", "limit=1.5",
		"enabled=yes", "enabled=1", "type=Laptop",
		"seen_before=yesterday", "seen_after=2026-01-02", "seen_after=2026-01-02T03:04:05",
		"cursor=bad",
	} {
		t.Run(query, func(t *testing.T) {
			store := newFakeInspection()
			rec := do(t, inspectServer(t, store), http.MethodGet, "/v1/enrollments?"+query, nil, true)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", rec.Code, rec.Body)
			}
			if decode(t, rec)["error"] == "" {
				t.Fatal("no error text")
			}
		})
	}
}

func TestInspectionStoreFailure(t *testing.T) {
	store := newFakeInspection()
	store.err = errors.New("database down")
	h := inspectServer(t, store)
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v1/enrollments"},
		{http.MethodGet, "/v1/enrollments/DEV-1"},
		{http.MethodGet, "/v1/queue/DEV-1"},
		{http.MethodDelete, "/v1/queue/DEV-1"},
		{http.MethodDelete, "/v1/queue/DEV-1/cmd-1"},
		{http.MethodGet, "/v1/commands/cmd-1"},
		{http.MethodGet, "/v1/commands/cmd-1/results/DEV-1"},
	} {
		rec := do(t, h, tc.method, tc.path, nil, true)
		if rec.Code != http.StatusInternalServerError || !strings.Contains(decode(t, rec)["error"].(string), "database down") {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, rec.Code, rec.Body)
		}
	}
}

func TestGetEnrollment(t *testing.T) {
	store := newFakeInspection()
	h := inspectServer(t, store)

	rec := do(t, h, http.MethodGet, "/v1/enrollments/DEV-1", nil, true)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	got := decode(t, rec)
	if got["id"] != "DEV-1" || got["serial_number"] != "C02XYZ" || got["pending_commands"] != 2.0 {
		t.Errorf("enrollment %v", got)
	}
	channels := got["user_channels"].([]any)
	if len(channels) != 1 || channels[0].(map[string]any)["id"] != "DEV-1:USER-1" {
		t.Errorf("user_channels %v", channels)
	}
	if f := store.filters[0]; f.DeviceID != "DEV-1" {
		t.Errorf("filter %+v", f)
	}

	// A user channel: its ID has a ':'; escaped or not, it is found.
	for _, path := range []string{"/v1/enrollments/DEV-1:USER-1", "/v1/enrollments/DEV-1%3AUSER-1"} {
		rec = do(t, h, http.MethodGet, path, nil, true)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: status %d: %s", path, rec.Code, rec.Body)
		}
		got = decode(t, rec)
		if got["id"] != "DEV-1:USER-1" || got["parent_id"] != "DEV-1" {
			t.Errorf("%s: %v", path, got)
		}
		if uc, ok := got["user_channels"].([]any); !ok || len(uc) != 0 {
			t.Errorf("%s: user_channels %v, want []", path, got["user_channels"])
		}
	}

	// A device without user channels.
	rec = do(t, h, http.MethodGet, "/v1/enrollments/DEV-2", nil, true)
	if uc, ok := decode(t, rec)["user_channels"].([]any); !ok || len(uc) != 0 {
		t.Errorf("DEV-2 user_channels %s", rec.Body)
	}

	rec = do(t, h, http.MethodGet, "/v1/enrollments/NOPE", nil, true)
	if rec.Code != http.StatusNotFound {
		t.Errorf("unknown: status %d", rec.Code)
	}
}

// pagedUsers makes ListEnrollments page through user channels one at a
// time, to show the detail view follows the cursors.
type pagedUsers struct{ *fakeInspection }

func (s pagedUsers) ListEnrollments(_ context.Context, f storage.EnrollmentFilter, p storage.Page) ([]storage.EnrollmentInfo, string, error) {
	all := []storage.EnrollmentInfo{{ID: "D"}, {ID: "D:1", ParentID: "D"}, {ID: "D:2", ParentID: "D"}}
	i := 0
	if p.Cursor != "" {
		fmt.Sscan(p.Cursor, &i)
	}
	next := ""
	if i+1 < len(all) {
		next = fmt.Sprint(i + 1)
	}
	return all[i : i+1], next, nil
}

func (s pagedUsers) RetrieveEnrollment(context.Context, string) (*storage.EnrollmentInfo, error) {
	return &storage.EnrollmentInfo{ID: "D", Type: mdm.Device}, nil
}

func TestGetEnrollmentPagesUserChannels(t *testing.T) {
	rec := do(t, inspectServer(t, pagedUsers{newFakeInspection()}), http.MethodGet, "/v1/enrollments/D", nil, true)
	channels := decode(t, rec)["user_channels"].([]any)
	if len(channels) != 2 {
		t.Fatalf("user_channels %v", channels)
	}
}

func TestQueue(t *testing.T) {
	store := newFakeInspection()
	h := inspectServer(t, store)

	rec := do(t, h, http.MethodGet, "/v1/queue/DEV-1", nil, true)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	got := decode(t, rec)
	want := map[string]any{
		"id": "DEV-1",
		"commands": []any{
			map[string]any{"command_uuid": "cmd-1", "request_type": "DeviceInformation", "enqueued_at": "2026-01-02T03:04:05Z",
				"status": nil, "not_now_count": 0.0, "last_not_now_at": nil},
			map[string]any{"command_uuid": "cmd-2", "request_type": "ProfileList", "enqueued_at": "2026-01-02T03:04:05Z",
				"status": "NotNow", "not_now_count": 2.0, "last_not_now_at": "2026-01-02T04:34:05Z"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("queue\n got %v\nwant %v", got, want)
	}

	rec = do(t, h, http.MethodGet, "/v1/queue/DEV-2", nil, true)
	if body := strings.TrimSpace(rec.Body.String()); rec.Code != http.StatusOK || body != `{"id":"DEV-2","commands":[]}` {
		t.Errorf("empty queue: %d %s", rec.Code, body)
	}
	if rec = do(t, h, http.MethodGet, "/v1/queue/NOPE", nil, true); rec.Code != http.StatusNotFound {
		t.Errorf("unknown: status %d", rec.Code)
	}
}

func TestClearQueue(t *testing.T) {
	store := newFakeInspection()
	h := inspectServer(t, store)

	rec := do(t, h, http.MethodDelete, "/v1/queue/DEV-1:USER-1", nil, true)
	if rec.Code != http.StatusOK || decode(t, rec)["cleared"] != 1.0 {
		t.Fatalf("clear: %d %s", rec.Code, rec.Body)
	}
	if !reflect.DeepEqual(store.cleared, []string{"DEV-1:USER-1"}) {
		t.Errorf("cleared %v", store.cleared)
	}
	rec = do(t, h, http.MethodDelete, "/v1/queue/DEV-2", nil, true)
	if rec.Code != http.StatusOK || decode(t, rec)["cleared"] != 0.0 {
		t.Errorf("clear empty: %d %s", rec.Code, rec.Body)
	}
	if rec = do(t, h, http.MethodDelete, "/v1/queue/NOPE", nil, true); rec.Code != http.StatusNotFound {
		t.Errorf("unknown: status %d", rec.Code)
	}
}

func TestCancelCommand(t *testing.T) {
	store := newFakeInspection()
	h := inspectServer(t, store)

	rec := do(t, h, http.MethodDelete, "/v1/queue/DEV-1/cmd-2", nil, true)
	if rec.Code != http.StatusOK || decode(t, rec)["cancelled"] != true {
		t.Fatalf("cancel: %d %s", rec.Code, rec.Body)
	}
	if !reflect.DeepEqual(store.cancelled, []string{"DEV-1/cmd-2"}) {
		t.Errorf("cancelled %v", store.cancelled)
	}
	if rec = do(t, h, http.MethodDelete, "/v1/queue/DEV-1:USER-1/cmd-1", nil, true); rec.Code != http.StatusConflict {
		t.Errorf("answered: status %d, want 409", rec.Code)
	}
	for _, path := range []string{"/v1/queue/DEV-1/nope", "/v1/queue/NOPE/cmd-1"} {
		if rec = do(t, h, http.MethodDelete, path, nil, true); rec.Code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, rec.Code)
		}
	}
}

func TestGetCommand(t *testing.T) {
	store := newFakeInspection()
	store.nextPage = "p2"
	h := inspectServer(t, store)

	rec := do(t, h, http.MethodGet, "/v1/commands/cmd-1?cursor=p1&limit=2", nil, true)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	got := decode(t, rec)
	want := map[string]any{
		"command_uuid": "cmd-1", "request_type": "DeviceInformation", "enqueued_at": "2026-01-02T03:04:05Z",
		"command": base64.StdEncoding.EncodeToString(command),
		"enrollments": []any{
			map[string]any{"id": "DEV-1", "state": "pending", "not_now_count": 0.0, "enqueued_at": "2026-01-02T03:04:05Z", "answered_at": nil},
			map[string]any{"id": "DEV-1:USER-1", "state": "Acknowledged", "not_now_count": 0.0, "enqueued_at": "2026-01-02T03:04:05Z",
				"answered_at": "2026-01-02T04:34:05Z", "result": base64.StdEncoding.EncodeToString(resultPlist)},
		},
		"next_cursor": "p2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("command\n got %v\nwant %v", got, want)
	}
	if p := store.pages[len(store.pages)-1]; p != (storage.Page{Cursor: "p1", Limit: 2}) {
		t.Errorf("page %+v", p)
	}

	do(t, h, http.MethodGet, "/v1/commands/cmd-1", nil, true)
	if p := store.pages[len(store.pages)-1]; p != (storage.Page{Limit: api.DefaultPageLimit}) {
		t.Errorf("default page %+v", p)
	}

	for _, query := range []string{"limit=0", "limit=1001", "limit=x", "cursor=bad"} {
		if rec = do(t, h, http.MethodGet, "/v1/commands/cmd-1?"+query, nil, true); rec.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", query, rec.Code)
		}
	}
	if rec = do(t, h, http.MethodGet, "/v1/commands/nope", nil, true); rec.Code != http.StatusNotFound {
		t.Errorf("unknown: status %d", rec.Code)
	}
}

func TestGetCommandResult(t *testing.T) {
	store := newFakeInspection()
	h := inspectServer(t, store)

	for _, path := range []string{"/v1/commands/cmd-1/results/DEV-1:USER-1", "/v1/commands/cmd-1/results/DEV-1%3AUSER-1"} {
		rec := do(t, h, http.MethodGet, path, nil, true)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: status %d: %s", path, rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/xml" {
			t.Errorf("Content-Type %q", ct)
		}
		if rec.Body.String() != string(resultPlist) {
			t.Errorf("body %q", rec.Body)
		}
	}
	for _, path := range []string{
		"/v1/commands/cmd-1/results/DEV-1", // pending
		"/v1/commands/cmd-1/results/NOPE",
		"/v1/commands/nope/results/DEV-1",
	} {
		rec := do(t, h, http.MethodGet, path, nil, true)
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, rec.Code)
		}
		decode(t, rec)
	}
}

func TestInspectionMethodNotAllowed(t *testing.T) {
	h := inspectServer(t, newFakeInspection())
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodPost, "/v1/enrollments", "GET, HEAD"},
		{http.MethodDelete, "/v1/enrollments/DEV-1", "GET, HEAD"},
		{http.MethodPut, "/v1/queue/DEV-1", "GET, HEAD, DELETE"},
		{http.MethodGet, "/v1/queue/DEV-1/cmd-1", "DELETE"},
		{http.MethodDelete, "/v1/commands/cmd-1", "GET, HEAD"},
		{http.MethodPost, "/v1/commands/cmd-1/results/DEV-1", "GET, HEAD"},
	} {
		rec := do(t, h, tc.method, tc.path, nil, true)
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q", tc.method, tc.path, rec.Code, rec.Header().Get("Allow"))
		}
		decode(t, rec)
	}
}

func TestInspectionHead(t *testing.T) {
	h := inspectServer(t, newFakeInspection())
	req := httptest.NewRequest(http.MethodHead, "/v1/commands/cmd-1/results/DEV-1:USER-1", nil)
	req.SetBasicAuth("picomdm", apiKey)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != fmt.Sprint(len(resultPlist)) {
		t.Errorf("HEAD: %d body %d bytes, Content-Length %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
	}
}

func TestInspectionRoutesNilStore(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	api.InspectionRoutes(nil, nil)
}

// certHash is a cert-auth hash of the fake store's DEV-1.
var certHash = strings.Repeat("ab", 32)

func TestCertificates(t *testing.T) {
	store := newFakeInspection()
	h := inspectServer(t, store)

	rec := do(t, h, http.MethodGet, "/v1/enrollments/DEV-1/certificates", nil, true)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	want := `{"id":"DEV-1","certificates":[{"hash":"` + certHash + `","not_after":"2026-01-02T04:34:05Z","associated_at":"2026-01-02T03:04:05Z"}]}`
	if body := strings.TrimSpace(rec.Body.String()); body != want {
		t.Errorf("body\n got %s\nwant %s", body, want)
	}
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/v1/enrollments/DEV-2/certificates", http.StatusOK}, // known, none
		{http.MethodGet, "/v1/enrollments/NOPE/certificates", http.StatusNotFound},
		{http.MethodGet, "/v1/enrollments/DEV-1:USER-1/certificates", http.StatusBadRequest},
		{http.MethodDelete, "/v1/enrollments/DEV-1/certificates/" + strings.Repeat("cd", 32), http.StatusNotFound},
		{http.MethodDelete, "/v1/enrollments/DEV-1/certificates/not-a-hash", http.StatusBadRequest},
		{http.MethodDelete, "/v1/enrollments/DEV-1/certificates/" + strings.ToUpper(certHash), http.StatusBadRequest},
		{http.MethodPost, "/v1/enrollments/DEV-1/certificates", http.StatusMethodNotAllowed},
	} {
		rec := do(t, h, tc.method, tc.path, nil, true)
		if rec.Code != tc.code {
			t.Errorf("%s %s: %d, want %d (%s)", tc.method, tc.path, rec.Code, tc.code, rec.Body)
		}
		if rec.Code >= 400 {
			if got := decode(t, rec); got["error"] == nil {
				t.Errorf("%s %s: no error in %v", tc.method, tc.path, got)
			}
		}
	}
	if rec := do(t, h, http.MethodDelete, "/v1/enrollments/DEV-1/certificates/"+certHash, nil, false); rec.Code != http.StatusUnauthorized {
		t.Errorf("DELETE without auth: %d", rec.Code)
	}
	rec = do(t, h, http.MethodDelete, "/v1/enrollments/DEV-1/certificates/"+certHash, nil, true)
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"deleted":true}` {
		t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
	}
	if len(store.certs["DEV-1"]) != 0 {
		t.Errorf("certificate not deleted: %v", store.certs["DEV-1"])
	}
	rec = do(t, h, http.MethodGet, "/v1/enrollments/DEV-1/certificates", nil, true)
	if body := strings.TrimSpace(rec.Body.String()); body != `{"id":"DEV-1","certificates":[]}` {
		t.Errorf("after delete: %s", body)
	}
}
