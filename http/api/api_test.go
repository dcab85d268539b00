package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/push"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage"
)

var quiet = slog.New(slog.DiscardHandler)

// command is a raw command plist with unusual but valid formatting, to
// show it is stored byte for byte rather than re-encoded.
var command = []byte("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\">\n<dict>\n  <!-- kept as is -->\n  <key>CommandUUID</key>\t<string>cmd-1</string>\n  <key>Command</key>\n  <dict><key>RequestType</key><string>DeviceInformation</string></dict>\n</dict>\n</plist>\n")

type fakeStore struct {
	mu     sync.Mutex
	ids    [][]string
	cmds   []*mdm.Command
	idErrs map[string]error
	err    error
}

func (s *fakeStore) EnqueueCommand(_ context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, append([]string(nil), ids...))
	s.cmds = append(s.cmds, cmd)
	if s.err != nil {
		return nil, s.err
	}
	out := make(map[string]error)
	for _, id := range ids {
		if err := s.idErrs[id]; err != nil {
			out[id] = err
		}
	}
	return out, nil
}

type fakePusher struct {
	mu     sync.Mutex
	calls  [][]string
	failed map[string]error
	err    error
}

func (p *fakePusher) Push(_ context.Context, ids []string) (map[string]*push.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, append([]string(nil), ids...))
	if p.err != nil {
		return nil, p.err
	}
	out := make(map[string]*push.Result)
	for _, id := range ids {
		if err := p.failed[id]; err != nil {
			out[id] = &push.Result{Err: err}
		} else {
			out[id] = &push.Result{APNsID: "apns-" + id}
		}
	}
	return out, nil
}

const apiKey = "test-api-key"

// server mounts the handlers the way cmd/picomdm does.
func server(store storage.CommandEnqueuer, pusher push.Pusher, migration service.Checkin) http.Handler {
	authed := picohttp.BasicAuth(apiKey)
	mux := http.NewServeMux()
	mux.Handle("/v1/enqueue/", authed(http.StripPrefix("/v1/enqueue/", api.EnqueueHandler(store, pusher, quiet))))
	mux.Handle("/v1/push/", authed(http.StripPrefix("/v1/push/", api.PushHandler(pusher, quiet))))
	mux.Handle("/version", api.VersionHandler("v1.2.3"))
	if migration != nil {
		mux.Handle("/migration", authed(api.MigrationHandler(migration, quiet)))
	}
	return mux
}

func do(t *testing.T, h http.Handler, method, path string, body []byte, authed bool) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if authed {
		req.SetBasicAuth("nanomdm", apiKey)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decode(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	return m
}

func TestEnqueue(t *testing.T) {
	errUnknown := fmt.Errorf("queueing for c: %w", storage.ErrNotFound)
	for _, tc := range []struct {
		name       string
		path       string
		body       []byte
		store      *fakeStore
		pusher     *fakePusher // nil: no push configured
		wantStatus int
		wantJSON   string   // exact body when set
		wantStored []string // IDs of the one store call; nil: no call
		wantPushed []string // IDs of the one push call; nil: no call
		wantKeys   []string // top-level keys that must be present
	}{
		{
			name: "200 one ID", path: "/v1/enqueue/a", body: command,
			store: &fakeStore{}, pusher: &fakePusher{}, wantStatus: 200,
			wantJSON:   `{"status":{"a":{"push_result":"apns-a"}},"command_uuid":"cmd-1","request_type":"DeviceInformation"}`,
			wantStored: []string{"a"}, wantPushed: []string{"a"},
		},
		{
			name: "200 several IDs in one store call", path: "/v1/enqueue/a,b,c,b,", body: command,
			store: &fakeStore{}, pusher: &fakePusher{}, wantStatus: 200,
			wantStored: []string{"a", "b", "c"}, wantPushed: []string{"a", "b", "c"},
		},
		{
			name: "200 nopush", path: "/v1/enqueue/a,b?nopush=1", body: command,
			store: &fakeStore{}, pusher: &fakePusher{}, wantStatus: 200,
			wantJSON:   `{"no_push":true,"command_uuid":"cmd-1","request_type":"DeviceInformation"}`,
			wantStored: []string{"a", "b"},
		},
		{
			name: "nopush takes any value", path: "/v1/enqueue/a?nopush=true", body: command,
			store: &fakeStore{}, pusher: &fakePusher{}, wantStatus: 200, wantStored: []string{"a"},
		},
		{
			name: "empty nopush still pushes", path: "/v1/enqueue/a?nopush=", body: command,
			store: &fakeStore{}, pusher: &fakePusher{}, wantStatus: 200, wantStored: []string{"a"}, wantPushed: []string{"a"},
		},
		{
			name: "207 one ID unknown to the store", path: "/v1/enqueue/a,c", body: command,
			store: &fakeStore{idErrs: map[string]error{"c": errUnknown}}, pusher: &fakePusher{}, wantStatus: 207,
			wantJSON:   `{"status":{"a":{"push_result":"apns-a"},"c":{"command_error":"queueing for c: storage: not found"}},"command_uuid":"cmd-1","request_type":"DeviceInformation"}`,
			wantStored: []string{"a", "c"}, wantPushed: []string{"a"},
		},
		{
			name: "207 one push failed", path: "/v1/enqueue/a,b", body: command,
			store: &fakeStore{}, pusher: &fakePusher{failed: map[string]error{"b": errors.New("apns: Unregistered")}}, wantStatus: 207,
			wantJSON:   `{"status":{"a":{"push_result":"apns-a"},"b":{"push_error":"apns: Unregistered"}},"command_uuid":"cmd-1","request_type":"DeviceInformation"}`,
			wantStored: []string{"a", "b"}, wantPushed: []string{"a", "b"},
		},
		{
			name: "500 every ID unknown", path: "/v1/enqueue/c", body: command,
			store: &fakeStore{idErrs: map[string]error{"c": errUnknown}}, pusher: &fakePusher{}, wantStatus: 500,
			wantStored: []string{"c"},
		},
		{
			name: "500 every push failed", path: "/v1/enqueue/a,b", body: command,
			store: &fakeStore{}, pusher: &fakePusher{failed: map[string]error{"a": errors.New("x"), "b": errors.New("y")}}, wantStatus: 500,
			wantStored: []string{"a", "b"}, wantPushed: []string{"a", "b"},
		},
		{
			name: "500 whole push failed", path: "/v1/enqueue/a,b", body: command,
			store: &fakeStore{}, pusher: &fakePusher{err: errors.New("no push certificate for topic")}, wantStatus: 500,
			wantJSON:   `{"push_error":"no push certificate for topic","command_uuid":"cmd-1","request_type":"DeviceInformation"}`,
			wantStored: []string{"a", "b"}, wantPushed: []string{"a", "b"},
		},
		{
			name: "500 push not configured", path: "/v1/enqueue/a", body: command,
			store: &fakeStore{}, wantStatus: 500,
			wantJSON:   `{"status":{"a":{"push_error":"push: not configured"}},"command_uuid":"cmd-1","request_type":"DeviceInformation"}`,
			wantStored: []string{"a"},
		},
		{
			name: "500 store failed", path: "/v1/enqueue/a", body: command,
			store: &fakeStore{err: errors.New("database down")}, pusher: &fakePusher{}, wantStatus: 500,
			wantJSON:   `{"command_error":"database down","command_uuid":"cmd-1","request_type":"DeviceInformation","error":"database down"}`,
			wantStored: []string{"a"},
		},
		{
			name: "409 command exists", path: "/v1/enqueue/a", body: command,
			store: &fakeStore{err: fmt.Errorf("enqueue: %w", storage.ErrCommandExists)}, pusher: &fakePusher{}, wantStatus: 409,
			wantStored: []string{"a"}, wantKeys: []string{"error", "command_error", "command_uuid"},
		},
		{
			name: "400 garbage plist", path: "/v1/enqueue/a", body: []byte("not a plist"),
			store: &fakeStore{}, pusher: &fakePusher{}, wantStatus: 400, wantKeys: []string{"error", "command_error"},
		},
		{
			name: "400 no CommandUUID", path: "/v1/enqueue/a", body: bytes.Replace(command, []byte("CommandUUID"), []byte("CommandUID"), 1),
			store: &fakeStore{}, pusher: &fakePusher{}, wantStatus: 400, wantKeys: []string{"error", "command_error"},
		},
		{
			name: "400 no RequestType", path: "/v1/enqueue/a", body: bytes.Replace(command, []byte("RequestType"), []byte("RequestTyp"), 1),
			store: &fakeStore{}, pusher: &fakePusher{}, wantStatus: 400, wantKeys: []string{"error", "command_error"},
		},
		{
			name: "400 no IDs", path: "/v1/enqueue/", body: command,
			store: &fakeStore{}, pusher: &fakePusher{}, wantStatus: 400, wantKeys: []string{"error"},
		},
		{
			name: "400 only commas", path: "/v1/enqueue/,,", body: command,
			store: &fakeStore{}, pusher: &fakePusher{}, wantStatus: 400, wantKeys: []string{"error"},
		},
		{
			name: "400 empty body with nopush", path: "/v1/enqueue/a?nopush=1", body: nil,
			store: &fakeStore{}, pusher: &fakePusher{}, wantStatus: 400, wantKeys: []string{"error"},
		},
		{
			name: "empty body only pushes", path: "/v1/enqueue/a,b", body: nil,
			store: &fakeStore{}, pusher: &fakePusher{}, wantStatus: 200,
			wantJSON:   `{"status":{"a":{"push_result":"apns-a"},"b":{"push_result":"apns-b"}}}`,
			wantPushed: []string{"a", "b"},
		},
		{
			name: "413 oversized body", path: "/v1/enqueue/a", body: bytes.Repeat([]byte("x"), int(picohttp.DefaultMaxBodySize)+1),
			store: &fakeStore{}, pusher: &fakePusher{}, wantStatus: 413, wantKeys: []string{"error"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pusher push.Pusher = tc.pusher
			if tc.pusher == nil {
				pusher = nil
			}
			rec := do(t, server(tc.store, pusher, nil), http.MethodPut, tc.path, tc.body, true)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
			m := decode(t, rec)
			if tc.wantJSON != "" && strings.TrimSpace(rec.Body.String()) != tc.wantJSON {
				t.Fatalf("body\n%s\nwant\n%s", rec.Body, tc.wantJSON)
			}
			for _, k := range tc.wantKeys {
				if s, ok := m[k].(string); !ok || s == "" {
					t.Fatalf("body %s lacks a %q string", rec.Body, k)
				}
			}
			switch {
			case tc.wantStored == nil && len(tc.store.ids) != 0:
				t.Fatalf("store called with %v", tc.store.ids)
			case tc.wantStored != nil:
				if len(tc.store.ids) != 1 || !reflect.DeepEqual(tc.store.ids[0], tc.wantStored) {
					t.Fatalf("store calls %v, want one with %v", tc.store.ids, tc.wantStored)
				}
				cmd := tc.store.cmds[0]
				if !bytes.Equal(cmd.Raw, tc.body) || cmd.CommandUUID != "cmd-1" || cmd.RequestType() != "DeviceInformation" {
					t.Fatalf("stored command %+v is not the body byte for byte", cmd)
				}
			}
			if tc.pusher != nil {
				switch {
				case tc.wantPushed == nil && len(tc.pusher.calls) != 0:
					t.Fatalf("pushed %v", tc.pusher.calls)
				case tc.wantPushed != nil && (len(tc.pusher.calls) != 1 || !reflect.DeepEqual(tc.pusher.calls[0], tc.wantPushed)):
					t.Fatalf("push calls %v, want one with %v", tc.pusher.calls, tc.wantPushed)
				}
			}
		})
	}
}

func TestPush(t *testing.T) {
	for _, tc := range []struct {
		name       string
		path       string
		pusher     *fakePusher
		wantStatus int
		wantJSON   string
	}{
		{"200", "/v1/push/a,b", &fakePusher{}, 200, `{"status":{"a":{"push_result":"apns-a"},"b":{"push_result":"apns-b"}}}`},
		{"207", "/v1/push/a,b", &fakePusher{failed: map[string]error{"a": errors.New("apns: BadDeviceToken")}}, 207, `{"status":{"a":{"push_error":"apns: BadDeviceToken"},"b":{"push_result":"apns-b"}}}`},
		{"500 all failed", "/v1/push/a", &fakePusher{failed: map[string]error{"a": errors.New("no push info")}}, 500, `{"status":{"a":{"push_error":"no push info"}}}`},
		{"500 whole call", "/v1/push/a", &fakePusher{err: errors.New("apns down")}, 500, `{"push_error":"apns down"}`},
		{"500 not configured", "/v1/push/a", nil, 500, `{"status":{"a":{"push_error":"push: not configured"}}}`},
		{"400 no IDs", "/v1/push/", &fakePusher{}, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pusher push.Pusher
			if tc.pusher != nil {
				pusher = tc.pusher
			}
			rec := do(t, server(&fakeStore{}, pusher, nil), http.MethodGet, tc.path, nil, true)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
			m := decode(t, rec)
			if tc.wantJSON == "" {
				if _, ok := m["error"].(string); !ok {
					t.Fatalf("body %s has no error", rec.Body)
				}
				return
			}
			if got := strings.TrimSpace(rec.Body.String()); got != tc.wantJSON {
				t.Fatalf("body\n%s\nwant\n%s", got, tc.wantJSON)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	h := server(&fakeStore{}, &fakePusher{}, &fakeCheckin{})
	for _, path := range []string{"/v1/enqueue/a", "/v1/push/a", "/migration"} {
		t.Run(path, func(t *testing.T) {
			rec := do(t, h, http.MethodPut, path, command, false)
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", rec.Code)
			}
			if rec.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("no WWW-Authenticate challenge")
			}
			if m := decode(t, rec); m["error"] != "unauthorized" {
				t.Fatalf("body %s", rec.Body)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	rec := do(t, server(&fakeStore{}, nil, nil), http.MethodGet, "/version", nil, false)
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	if got := strings.TrimSpace(rec.Body.String()); got != `{"version":"v1.2.3"}` {
		t.Fatalf("body %s", got)
	}
}

// fakeCheckin is a migration target recording what it gets.
type fakeCheckin struct {
	service.Checkin // other methods are not expected; calling one panics
	mu              sync.Mutex
	got             []string
	requests        []*mdm.Request
	err             error
}

func (s *fakeCheckin) record(name string, r *mdm.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, name)
	s.requests = append(s.requests, r)
	return s.err
}

func (s *fakeCheckin) Authenticate(r *mdm.Request, _ *mdm.Authenticate) error {
	return s.record("Authenticate", r)
}

func (s *fakeCheckin) TokenUpdate(r *mdm.Request, _ *mdm.TokenUpdate) error {
	return s.record("TokenUpdate", r)
}

func (s *fakeCheckin) SetBootstrapToken(r *mdm.Request, _ *mdm.SetBootstrapToken) error {
	return s.record("SetBootstrapToken", r)
}

func checkin(messageType, extra string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>MessageType</key><string>` +
		messageType + `</string><key>UDID</key><string>dev-1</string>` + extra + `</dict></plist>`)
}

func TestMigration(t *testing.T) {
	for _, tc := range []struct {
		name       string
		body       []byte
		err        error
		wantStatus int
		wantCall   string
	}{
		{"Authenticate", checkin("Authenticate", `<key>Topic</key><string>com.apple.mgmt.x</string>`), nil, 200, "Authenticate"},
		{"TokenUpdate", checkin("TokenUpdate", `<key>Topic</key><string>com.apple.mgmt.x</string><key>PushMagic</key><string>m</string><key>Token</key><data>AAEC</data>`), nil, 200, "TokenUpdate"},
		{"SetBootstrapToken", checkin("SetBootstrapToken", `<key>BootstrapToken</key><data>AAEC</data>`), nil, 200, "SetBootstrapToken"},
		{"400 garbage", []byte("garbage"), nil, 400, ""},
		{"400 empty", nil, nil, 400, ""},
		{"400 unknown MessageType", checkin("Nonsense", ""), nil, 400, ""},
		{"500 service error", checkin("Authenticate", ""), errors.New("database down"), 500, "Authenticate"},
		{"413 oversized", bytes.Repeat([]byte("x"), int(picohttp.DefaultMaxBodySize)+1), nil, 413, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &fakeCheckin{err: tc.err}
			rec := do(t, server(&fakeStore{}, nil, svc), http.MethodPut, "/migration", tc.body, true)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
			if tc.wantStatus == 200 {
				if rec.Body.Len() != 0 {
					t.Fatalf("body %q, want empty", rec.Body)
				}
			} else if m := decode(t, rec); m["error"] == nil || len(m) != 1 {
				t.Fatalf("error body %s, want {\"error\": ...}", rec.Body)
			}
			if tc.wantCall == "" {
				if len(svc.got) != 0 {
					t.Fatalf("service called: %v", svc.got)
				}
				return
			}
			if len(svc.got) != 1 || svc.got[0] != tc.wantCall {
				t.Fatalf("service got %v, want [%s]", svc.got, tc.wantCall)
			}
			req := svc.requests[0]
			if req.Certificate != nil {
				t.Fatal("migration request carries a certificate")
			}
			if req.EnrollID == nil || req.EnrollID.ID != "dev-1" {
				t.Fatalf("enrollment ID %+v", req.EnrollID)
			}
		})
	}
}

func TestConstructionPanics(t *testing.T) {
	for name, build := range map[string]func(){
		"enqueue without store":    func() { api.EnqueueHandler(nil, nil, nil) },
		"migration without target": func() { api.MigrationHandler(nil, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("did not panic")
				}
			}()
			build()
		})
	}
}
