package api_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
)

// fakeOutbox is an in-memory api.WebhookEventStore recording what it was
// asked.
type fakeOutbox struct {
	mu       sync.Mutex
	events   []storage.OutboxEvent
	nextPage string
	err      error

	states      []string
	pages       []storage.Page
	redelivered []string
	dropped     []string
}

func (s *fakeOutbox) ListEvents(_ context.Context, state string, p storage.Page) ([]storage.OutboxEvent, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.states = append(s.states, state)
	s.pages = append(s.pages, p)
	if s.err != nil {
		return nil, "", s.err
	}
	if p.Cursor == "bad" {
		return nil, "", storage.ErrBadCursor
	}
	var out []storage.OutboxEvent
	for _, ev := range s.events {
		if ev.State == state {
			out = append(out, ev)
		}
	}
	return out, s.nextPage, nil
}

func (s *fakeOutbox) RedeliverEvent(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	for i := range s.events {
		if s.events[i].ID == id && s.events[i].State == storage.OutboxFailed {
			s.events[i].State = storage.OutboxPending
			s.redelivered = append(s.redelivered, id)
			return nil
		}
	}
	return storage.ErrNotFound
}

func (s *fakeOutbox) DropEvent(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	for i := range s.events {
		if s.events[i].ID == id {
			s.events = append(s.events[:i], s.events[i+1:]...)
			s.dropped = append(s.dropped, id)
			return nil
		}
	}
	return storage.ErrNotFound
}

var eventBody = []byte(`{"topic":"mdm.SetBootstrapToken","event_id":"ev-1"}`)

func newFakeOutbox() *fakeOutbox {
	return &fakeOutbox{events: []storage.OutboxEvent{
		{ID: "ev-1", EnrollmentID: "DEV-1", Topic: "mdm.SetBootstrapToken", Body: eventBody, CreatedAt: t0,
			State: storage.OutboxFailed, Attempts: 4, LastError: "receiver answered 500"},
		{ID: "ev-2", EnrollmentID: "DEV-1", Topic: "mdm.Connect", Body: []byte(`{}`), CreatedAt: t0,
			State: storage.OutboxPending, Attempts: 2, NextAttemptAt: t1, LastError: "connection refused"},
		{ID: "ev-3", EnrollmentID: "DEV-2", Topic: "mdm.Connect", Body: []byte(`{}`), CreatedAt: t1,
			State: storage.OutboxPending},
	}}
}

// webhookEventsServer mounts the outbox routes the way cmd/picomdm does.
func webhookEventsServer(t *testing.T, store api.WebhookEventStore) http.Handler {
	t.Helper()
	authed := picohttp.BasicAuth(apiKey)
	mux := http.NewServeMux()
	for pattern, h := range api.WebhookEventRoutes(store, quiet) {
		mux.Handle(pattern, authed(h))
	}
	return mux
}

func TestWebhookEventRoutes(t *testing.T) {
	routes := api.WebhookEventRoutes(newFakeOutbox(), nil)
	want := []string{"/v1/webhook/events", "/v1/webhook/events/{id}", "/v1/webhook/events/{id}/redeliver"}
	if len(routes) != len(want) {
		t.Fatalf("%d routes, want %d", len(routes), len(want))
	}
	for _, p := range want {
		if routes[p] == nil {
			t.Errorf("no route %q", p)
		}
	}
}

func TestWebhookEventRoutesNilStore(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for a nil store")
		}
	}()
	api.WebhookEventRoutes(nil, nil)
}

func TestWebhookEventsNeedAuth(t *testing.T) {
	store := newFakeOutbox()
	h := webhookEventsServer(t, store)
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v1/webhook/events"},
		{http.MethodPost, "/v1/webhook/events/ev-1/redeliver"},
		{http.MethodDelete, "/v1/webhook/events/ev-1"},
	} {
		if rec := do(t, h, tc.method, tc.path, nil, false); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s %s without auth: %d, want 401", tc.method, tc.path, rec.Code)
		}
	}
	if len(store.states)+len(store.redelivered)+len(store.dropped) != 0 {
		t.Error("the store was reached without auth")
	}
}

func TestListWebhookEvents(t *testing.T) {
	store := newFakeOutbox()
	store.nextPage = "next-page"
	h := webhookEventsServer(t, store)

	rec := do(t, h, http.MethodGet, "/v1/webhook/events", nil, true)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	got := decode(t, rec)
	if got["next_cursor"] != "next-page" {
		t.Errorf("next_cursor %v", got["next_cursor"])
	}
	if store.states[0] != storage.OutboxFailed {
		t.Errorf("default state %q, want failed", store.states[0])
	}
	if p := store.pages[0]; p != (storage.Page{Limit: api.DefaultPageLimit}) {
		t.Errorf("default page %+v", p)
	}
	items := got["events"].([]any)
	want := map[string]any{
		"event_id": "ev-1", "enrollment_id": "DEV-1", "topic": "mdm.SetBootstrapToken",
		"created_at": "2026-01-02T03:04:05Z", "attempts": 4.0, "next_attempt_at": nil,
		"last_error": "receiver answered 500", "state": "failed",
		"body": base64.StdEncoding.EncodeToString(eventBody),
	}
	if len(items) != 1 || !reflect.DeepEqual(items[0], want) {
		t.Errorf("events\n got %v\nwant [%v]", items, want)
	}

	rec = do(t, h, http.MethodGet, "/v1/webhook/events?state=pending&cursor=abc&limit=1000", nil, true)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if store.states[1] != storage.OutboxPending {
		t.Errorf("state %q, want pending", store.states[1])
	}
	if p := store.pages[1]; p != (storage.Page{Cursor: "abc", Limit: 1000}) {
		t.Errorf("page %+v", p)
	}
	items = decode(t, rec)["events"].([]any)
	if len(items) != 2 {
		t.Fatalf("%d pending events, want 2", len(items))
	}
	if ev := items[0].(map[string]any); ev["event_id"] != "ev-2" || ev["next_attempt_at"] != "2026-01-02T04:34:05Z" || ev["state"] != "pending" {
		t.Errorf("pending event %v", ev)
	}
}

func TestListWebhookEventsEmpty(t *testing.T) {
	h := webhookEventsServer(t, &fakeOutbox{})
	rec := do(t, h, http.MethodGet, "/v1/webhook/events?state=failed", nil, true)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if body := strings.TrimSpace(rec.Body.String()); body != `{"events":[],"next_cursor":""}` {
		t.Errorf("body %s", body)
	}
}

func TestListWebhookEventsBadRequest(t *testing.T) {
	for _, query := range []string{
		"state=refused", "state=FAILED", "state=all",
		"limit=0", "limit=1001", "limit=-1", "limit=ten",
		"cursor=bad",
	} {
		t.Run(query, func(t *testing.T) {
			store := newFakeOutbox()
			rec := do(t, webhookEventsServer(t, store), http.MethodGet, "/v1/webhook/events?"+query, nil, true)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", rec.Code, rec.Body)
			}
			if decode(t, rec)["error"] == "" {
				t.Fatal("no error text")
			}
		})
	}
}

func TestRedeliverWebhookEvent(t *testing.T) {
	store := newFakeOutbox()
	h := webhookEventsServer(t, store)
	rec := do(t, h, http.MethodPost, "/v1/webhook/events/ev-1/redeliver", nil, true)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if body := strings.TrimSpace(rec.Body.String()); body != `{"redelivered":true}` {
		t.Errorf("body %s", body)
	}
	if !reflect.DeepEqual(store.redelivered, []string{"ev-1"}) {
		t.Errorf("redelivered %v", store.redelivered)
	}
	// Now pending: no failed event of that ID is left, and a pending or
	// unknown one is a 404.
	for _, id := range []string{"ev-1", "ev-2", "nope"} {
		rec := do(t, h, http.MethodPost, "/v1/webhook/events/"+id+"/redeliver", nil, true)
		if rec.Code != http.StatusNotFound {
			t.Errorf("redeliver %s: %d, want 404: %s", id, rec.Code, rec.Body)
		}
	}
}

func TestDropWebhookEvent(t *testing.T) {
	store := newFakeOutbox()
	h := webhookEventsServer(t, store)
	for _, id := range []string{"ev-1", "ev-2"} { // failed and pending alike
		rec := do(t, h, http.MethodDelete, "/v1/webhook/events/"+id, nil, true)
		if rec.Code != http.StatusOK {
			t.Fatalf("drop %s: status %d: %s", id, rec.Code, rec.Body)
		}
		if body := strings.TrimSpace(rec.Body.String()); body != `{"dropped":true}` {
			t.Errorf("body %s", body)
		}
	}
	if !reflect.DeepEqual(store.dropped, []string{"ev-1", "ev-2"}) {
		t.Errorf("dropped %v", store.dropped)
	}
	if rec := do(t, h, http.MethodDelete, "/v1/webhook/events/ev-1", nil, true); rec.Code != http.StatusNotFound {
		t.Errorf("dropping again: %d, want 404", rec.Code)
	}
}

func TestWebhookEventsMethodNotAllowed(t *testing.T) {
	h := webhookEventsServer(t, newFakeOutbox())
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodPost, "/v1/webhook/events", "GET, HEAD"},
		{http.MethodDelete, "/v1/webhook/events", "GET, HEAD"},
		{http.MethodGet, "/v1/webhook/events/ev-1", "DELETE"},
		{http.MethodPost, "/v1/webhook/events/ev-1", "DELETE"},
		{http.MethodGet, "/v1/webhook/events/ev-1/redeliver", "POST"},
	} {
		rec := do(t, h, tc.method, tc.path, nil, true)
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want 405 Allow %q", tc.method, tc.path, rec.Code, rec.Header().Get("Allow"), tc.allow)
		}
	}
}

func TestWebhookEventsStoreFailure(t *testing.T) {
	store := newFakeOutbox()
	store.err = errors.New("database down")
	h := webhookEventsServer(t, store)
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v1/webhook/events"},
		{http.MethodPost, "/v1/webhook/events/ev-1/redeliver"},
		{http.MethodDelete, "/v1/webhook/events/ev-1"},
	} {
		rec := do(t, h, tc.method, tc.path, nil, true)
		if rec.Code != http.StatusInternalServerError || !strings.Contains(decode(t, rec)["error"].(string), "database down") {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, rec.Code, rec.Body)
		}
	}
}

// TestWebhookEventsInmem runs the routes over storage/inmem's outbox: a
// set-aside event is listed (paged), redelivered to its place and
// dropped.
func TestWebhookEventsInmem(t *testing.T) {
	store := inmem.New()
	ctx := context.Background()
	for _, id := range []string{"ev-a", "ev-b", "ev-c"} {
		if err := store.StoreEvent(ctx, &storage.OutboxEvent{ID: id, EnrollmentID: "DEV-" + id, Topic: "mdm.SetBootstrapToken",
			Body: []byte(`{"event_id":"` + id + `"}`), CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	claimed, err := store.ClaimEvents(ctx, "owner", t0, t1, 10)
	if err != nil || len(claimed) != 3 {
		t.Fatalf("claimed %v, %v", claimed, err)
	}
	for _, ev := range claimed {
		if err := store.SetAsideEvent(ctx, ev.ID, "owner", 3, "receiver answered 500"); err != nil {
			t.Fatal(err)
		}
	}
	h := webhookEventsServer(t, store)

	// Paged two by two, oldest first.
	var ids []string
	cursor := ""
	for range 3 {
		rec := do(t, h, http.MethodGet, "/v1/webhook/events?limit=2&cursor="+cursor, nil, true)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		got := decode(t, rec)
		for _, ev := range got["events"].([]any) {
			m := ev.(map[string]any)
			if m["state"] != "failed" || m["attempts"] != 3.0 || m["last_error"] != "receiver answered 500" ||
				m["body"] != base64.StdEncoding.EncodeToString([]byte(`{"event_id":"`+m["event_id"].(string)+`"}`)) {
				t.Errorf("event %v", m)
			}
			ids = append(ids, m["event_id"].(string))
		}
		if cursor = got["next_cursor"].(string); cursor == "" {
			break
		}
	}
	if !reflect.DeepEqual(ids, []string{"ev-a", "ev-b", "ev-c"}) {
		t.Fatalf("listed %v", ids)
	}
	if rec := do(t, h, http.MethodGet, "/v1/webhook/events?cursor=%25%25", nil, true); rec.Code != http.StatusBadRequest {
		t.Errorf("a cursor the store never issued: %d, want 400", rec.Code)
	}

	if rec := do(t, h, http.MethodPost, "/v1/webhook/events/ev-b/redeliver", nil, true); rec.Code != http.StatusOK {
		t.Fatalf("redeliver: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, http.MethodDelete, "/v1/webhook/events/ev-c", nil, true); rec.Code != http.StatusOK {
		t.Fatalf("drop: %d %s", rec.Code, rec.Body)
	}
	pending := decode(t, do(t, h, http.MethodGet, "/v1/webhook/events?state=pending", nil, true))["events"].([]any)
	if len(pending) != 1 {
		t.Fatalf("pending %v", pending)
	}
	if ev := pending[0].(map[string]any); ev["event_id"] != "ev-b" || ev["attempts"] != 0.0 || ev["state"] != "pending" {
		t.Errorf("redelivered event %v", ev)
	}
	failed := decode(t, do(t, h, http.MethodGet, "/v1/webhook/events", nil, true))["events"].([]any)
	if len(failed) != 1 || failed[0].(map[string]any)["event_id"] != "ev-a" {
		t.Errorf("failed after redeliver and drop: %v", failed)
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/v1/webhook/events/ev-b/redeliver"}, // pending now
		{http.MethodPost, "/v1/webhook/events/ev-c/redeliver"}, // dropped
		{http.MethodDelete, "/v1/webhook/events/ev-c"},
	} {
		if rec := do(t, h, tc.method, tc.path, nil, true); rec.Code != http.StatusNotFound {
			t.Errorf("%s %s: %d, want 404", tc.method, tc.path, rec.Code)
		}
	}
}
