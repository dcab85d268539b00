package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"github.com/picomdm/picomdm/test/logtest"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/push"
	"github.com/picomdm/picomdm/storage"
)

// testMaxIDs is the -max-ids of targetsServer: small, so that the edge is
// cheap to reach.
const testMaxIDs = 5

// targetsServer mounts the enqueue and push handlers in both forms, the
// way cmd/picomdm does, with WithMaxIDs(testMaxIDs) and logger.
func targetsServer(store storage.CommandEnqueuer, pusher push.Pusher, logger *slog.Logger) http.Handler {
	authed := picohttp.BasicAuth(apiKey)
	enqueue := api.EnqueueHandler(store, pusher, logger, api.WithMaxIDs(testMaxIDs))
	pushes := api.PushHandler(pusher, logger, api.WithMaxIDs(testMaxIDs))
	mux := http.NewServeMux()
	mux.Handle("/v1/enqueue", authed(http.StripPrefix("/v1/enqueue", enqueue)))
	mux.Handle("/v1/enqueue/", authed(http.StripPrefix("/v1/enqueue/", enqueue)))
	mux.Handle("/v1/push", authed(http.StripPrefix("/v1/push", pushes)))
	mux.Handle("/v1/push/", authed(http.StripPrefix("/v1/push/", pushes)))
	return mux
}

// jsonRequest sends body with Content-Type contentType (JSON unless told).
func jsonRequest(t *testing.T, h http.Handler, method, path, contentType string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.SetBasicAuth("nanomdm", apiKey)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// padTo pads a JSON body with white space to n bytes.
func padTo(body []byte, n int64) []byte {
	return append(body, bytes.Repeat([]byte(" "), int(n)-len(body))...)
}

// ids returns n distinct enrollment IDs.
func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "dev-" + strconv.Itoa(i)
	}
	return out
}

// TestEnqueueBodyForm checks POST /v1/enqueue with the IDs in a JSON body:
// the same store call, command bytes, pushes and answers as the path
// form, and a 400 or 413 with nothing stored for a body that is wrong.
func TestEnqueueBodyForm(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString(command)
	const jsonType = "application/json"
	for _, tc := range []struct {
		name        string
		path        string
		contentType string
		body        []byte
		wantStatus  int
		wantJSON    string   // exact body when set
		wantStored  []string // IDs of the one store call; nil: none
		wantPushed  []string // IDs of the one push call; nil: none
		wantError   string   // a substring of "error" for failures
	}{
		{
			name: "200", path: "/v1/enqueue", body: mustJSON(t, map[string]any{"targets": []string{"a", "b", "a"}, "plist": b64}),
			wantStatus: 200,
			wantJSON:   `{"status":{"a":{"push_result":"apns-a"},"b":{"push_result":"apns-b"}},"command_uuid":"cmd-1","request_type":"DeviceInformation"}`,
			wantStored: []string{"a", "b"}, wantPushed: []string{"a", "b"},
		},
		{
			name: "200 on /v1/enqueue/ with no IDs in the path", path: "/v1/enqueue/", body: mustJSON(t, map[string]any{"targets": []string{"a"}, "plist": b64}),
			wantStatus: 200, wantStored: []string{"a"}, wantPushed: []string{"a"},
		},
		{
			name: "200 with a charset", path: "/v1/enqueue", contentType: "application/json; charset=utf-8",
			body:       mustJSON(t, map[string]any{"targets": []string{"a"}, "plist": b64}),
			wantStatus: 200, wantStored: []string{"a"}, wantPushed: []string{"a"},
		},
		{
			name: "nopush in the body", path: "/v1/enqueue", body: mustJSON(t, map[string]any{"targets": []string{"a", "b"}, "plist": b64, "nopush": true}),
			wantStatus: 200,
			wantJSON:   `{"no_push":true,"command_uuid":"cmd-1","request_type":"DeviceInformation"}`,
			wantStored: []string{"a", "b"},
		},
		{
			name: "nopush in the query", path: "/v1/enqueue?nopush=1", body: mustJSON(t, map[string]any{"targets": []string{"a"}, "plist": b64}),
			wantStatus: 200, wantStored: []string{"a"},
		},
		{
			name: "no plist only pushes", path: "/v1/enqueue", body: mustJSON(t, map[string]any{"targets": []string{"a"}}),
			wantStatus: 200, wantJSON: `{"status":{"a":{"push_result":"apns-a"}}}`, wantPushed: []string{"a"},
		},
		{
			name: "207 as the path form", path: "/v1/enqueue", body: mustJSON(t, map[string]any{"targets": []string{"a", "unknown"}, "plist": b64}),
			wantStatus: 207,
			wantJSON:   `{"status":{"a":{"push_result":"apns-a"},"unknown":{"command_error":"storage: not found"}},"command_uuid":"cmd-1","request_type":"DeviceInformation"}`,
			wantStored: []string{"a", "unknown"}, wantPushed: []string{"a"},
		},
		{
			name: "exactly max-ids", path: "/v1/enqueue", body: mustJSON(t, map[string]any{"targets": ids(testMaxIDs), "plist": b64, "nopush": true}),
			wantStatus: 200, wantStored: ids(testMaxIDs),
		},
		{
			name: "400 max-ids + 1", path: "/v1/enqueue", body: mustJSON(t, map[string]any{"targets": ids(testMaxIDs + 1), "plist": b64}),
			wantStatus: 400, wantError: "more than 5 enrollment IDs",
		},
		{
			name: "400 no plist with nopush", path: "/v1/enqueue", body: mustJSON(t, map[string]any{"targets": []string{"a"}, "nopush": true}),
			wantStatus: 400, wantError: "nothing to do",
		},
		{name: "400 no targets", path: "/v1/enqueue", body: mustJSON(t, map[string]any{"plist": b64}), wantStatus: 400, wantError: "no enrollment IDs"},
		{name: "400 empty targets", path: "/v1/enqueue", body: []byte(`{"targets": [], "plist": "` + b64 + `"}`), wantStatus: 400, wantError: "no enrollment IDs"},
		{name: "400 empty target", path: "/v1/enqueue", body: mustJSON(t, map[string]any{"targets": []string{"a", ""}, "plist": b64}), wantStatus: 400, wantError: "empty"},
		{name: "400 target with a control character", path: "/v1/enqueue", body: mustJSON(t, map[string]any{"targets": []string{"a", "b\nc"}, "plist": b64}), wantStatus: 400, wantError: `"b\nc"`},
		{
			name: "400 target part of 256 bytes", path: "/v1/enqueue", body: mustJSON(t, map[string]any{"targets": []string{"a:" + strings.Repeat("u", 256)}, "plist": b64}),
			wantStatus: 400, wantError: "longer than 255 bytes",
		},
		{name: "400 misspelt nopush", path: "/v1/enqueue", body: []byte(`{"targets": ["a"], "plist": "` + b64 + `", "no_push": true}`), wantStatus: 400, wantError: "unknown field"},
		{name: "400 data after the object", path: "/v1/enqueue", body: []byte(`{"targets": ["a"], "plist": "` + b64 + `"} {}`), wantStatus: 400, wantError: "after the JSON object"},
		{name: "400 not JSON", path: "/v1/enqueue", body: []byte("targets=a"), wantStatus: 400, wantError: "decoding the JSON body"},
		{name: "400 empty body", path: "/v1/enqueue", body: nil, wantStatus: 400, wantError: "decoding the JSON body"},
		{name: "400 targets not a list", path: "/v1/enqueue", body: []byte(`{"targets": "a,b"}`), wantStatus: 400, wantError: "decoding the JSON body"},
		{name: "400 plist not base64", path: "/v1/enqueue", body: []byte(`{"targets": ["a"], "plist": "<plist>"}`), wantStatus: 400, wantError: "base64"},
		{name: "400 plist not a command", path: "/v1/enqueue", body: mustJSON(t, map[string]any{"targets": []string{"a"}, "plist": []byte("garbage")}), wantStatus: 400, wantError: "decoding command"},
		{
			name: "400 CommandUUID of 256 bytes", path: "/v1/enqueue",
			body:       mustJSON(t, map[string]any{"targets": []string{"a"}, "plist": bytes.Replace(command, []byte("cmd-1"), bytes.Repeat([]byte("c"), 256), 1)}),
			wantStatus: 400, wantError: "invalid CommandUUID",
		},
		{
			name: "400 no JSON Content-Type: the path form, without IDs", path: "/v1/enqueue", contentType: "application/xml",
			body: mustJSON(t, map[string]any{"targets": []string{"a"}, "plist": b64}), wantStatus: 400, wantError: "no enrollment IDs",
		},
		{
			name: "IDs in the path: the path form, whatever the Content-Type", path: "/v1/enqueue/a",
			body: mustJSON(t, map[string]any{"targets": []string{"b"}, "plist": b64}), wantStatus: 400, wantError: "decoding command",
		},
		{
			name: "command of exactly the enqueue body limit is read (then refused as no plist)", path: "/v1/enqueue",
			body:       mustJSON(t, map[string]any{"targets": []string{"a"}, "plist": bytes.Repeat([]byte("x"), int(picohttp.DefaultMaxBodySize))}),
			wantStatus: 400, wantError: "decoding command",
		},
		{
			name: "413 command over the enqueue body limit", path: "/v1/enqueue",
			body:       mustJSON(t, map[string]any{"targets": []string{"a"}, "plist": bytes.Repeat([]byte("x"), int(picohttp.DefaultMaxBodySize)+1)}),
			wantStatus: 413,
		},
		{
			name: "exactly MaxTargetsBodySize", path: "/v1/enqueue",
			body:       padTo(mustJSON(t, map[string]any{"targets": []string{"a"}, "plist": b64, "nopush": true}), api.MaxTargetsBodySize),
			wantStatus: 200, wantStored: []string{"a"},
		},
		{
			name: "413 MaxTargetsBodySize + 1", path: "/v1/enqueue",
			body:       padTo(mustJSON(t, map[string]any{"targets": []string{"a"}, "plist": b64, "nopush": true}), api.MaxTargetsBodySize+1),
			wantStatus: 413,
		},
		{
			name: "413 body over MaxTargetsBodySize", path: "/v1/enqueue",
			body:       []byte(`{"targets": ["a"], "plist": "` + strings.Repeat("A", int(api.MaxTargetsBodySize)) + `"}`),
			wantStatus: 413,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &fakeStore{idErrs: map[string]error{"unknown": storage.ErrNotFound}}
			pusher := &fakePusher{}
			var logs logtest.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			contentType := tc.contentType
			if contentType == "" {
				contentType = jsonType
			}
			rec := jsonRequest(t, targetsServer(store, pusher, logger), http.MethodPost, tc.path, contentType, tc.body)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %.500s", rec.Code, tc.wantStatus, rec.Body)
			}
			m := decode(t, rec)
			if tc.wantJSON != "" && strings.TrimSpace(rec.Body.String()) != tc.wantJSON {
				t.Fatalf("body\n%s\nwant\n%s", rec.Body, tc.wantJSON)
			}
			if tc.wantStatus >= 400 {
				msg, _ := m["error"].(string)
				if msg == "" || !strings.Contains(msg, tc.wantError) {
					t.Fatalf("error %q, want one containing %q", msg, tc.wantError)
				}
				if len(msg) > 1000 {
					t.Errorf("error is %d bytes long", len(msg))
				}
				if !strings.Contains(logs.String(), "api request failed") || !strings.Contains(logs.String(), "status="+strconv.Itoa(tc.wantStatus)) {
					t.Errorf("no log line for the failure: %q", logs.String())
				}
			}
			checkCalls(t, store, pusher, tc.wantStored, tc.wantPushed)
		})
	}
}

// checkCalls checks the store got one call with wantStored and the bytes
// of command (or none for nil), and the pusher one with wantPushed (or
// none).
func checkCalls(t *testing.T, store *fakeStore, pusher *fakePusher, wantStored, wantPushed []string) {
	t.Helper()
	switch {
	case wantStored == nil && len(store.ids) != 0:
		t.Errorf("store called with %v", store.ids)
	case wantStored != nil && (len(store.ids) != 1 || !reflect.DeepEqual(store.ids[0], wantStored)):
		t.Errorf("store calls %v, want one with %v", store.ids, wantStored)
	case wantStored != nil && !bytes.Equal(store.cmds[0].Raw, command):
		t.Errorf("stored command %q is not the one sent, byte for byte", store.cmds[0].Raw)
	}
	switch {
	case wantPushed == nil && len(pusher.calls) != 0:
		t.Errorf("pushed %v", pusher.calls)
	case wantPushed != nil && (len(pusher.calls) != 1 || !reflect.DeepEqual(pusher.calls[0], wantPushed)):
		t.Errorf("push calls %v, want one with %v", pusher.calls, wantPushed)
	}
}

// TestEnqueuePathIDs checks the path form's ID rules: every ID checked,
// at most max-ids, a 400 naming the bad ID (cut if huge) with nothing
// stored or pushed; IDs of exactly 255 bytes per part pass.
func TestEnqueuePathIDs(t *testing.T) {
	part255 := strings.Repeat("p", 255)
	for _, tc := range []struct {
		name       string
		path       string
		wantStatus int
		wantStored []string
		wantError  string
	}{
		{"255-byte parts", "/v1/enqueue/" + part255 + ":" + part255, 200, []string{part255 + ":" + part255}, ""},
		{"exactly max-ids", "/v1/enqueue/" + strings.Join(ids(testMaxIDs), ",") + ",,", 200, ids(testMaxIDs), ""},
		{"repeats count", "/v1/enqueue/" + strings.Join(ids(testMaxIDs), ",") + ",dev-0", 400, nil, "more than 5 enrollment IDs"},
		{"max-ids + 1", "/v1/enqueue/" + strings.Join(ids(testMaxIDs+1), ","), 400, nil, "more than 5 enrollment IDs"},
		{"256-byte device part", "/v1/enqueue/a," + part255 + "p", 400, nil, "longer than 255 bytes"},
		{"256-byte user part", "/v1/enqueue/a:" + part255 + "p", 400, nil, "user part longer than 255 bytes"},
		{"newline", "/v1/enqueue/a,b%0Ac", 400, nil, `"b\nc"`},
		{"NUL", "/v1/enqueue/a%00", 400, nil, `"a\x00"`},
		{"DEL", "/v1/enqueue/a%7F", 400, nil, "control character"},
		{"invalid UTF-8", "/v1/enqueue/a%FF", 400, nil, "invalid UTF-8"},
		{"empty device part", "/v1/enqueue/:user", 400, nil, "device part empty"},
		{"empty user part", "/v1/enqueue/a:", 400, nil, "user part empty"},
		{"huge ID", "/v1/enqueue/" + strings.Repeat("h", 100000), 400, nil, "(100000 bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, pusher := &fakeStore{}, &fakePusher{}
			rec := do(t, targetsServer(store, pusher, quiet), http.MethodPut, tc.path+"?nopush=1", command, true)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %.500s", rec.Code, tc.wantStatus, rec.Body)
			}
			m := decode(t, rec)
			if tc.wantStatus >= 400 {
				msg, _ := m["error"].(string)
				if !strings.Contains(msg, tc.wantError) || len(msg) > 1000 {
					t.Fatalf("error %q, want a short one containing %q", msg, tc.wantError)
				}
			}
			checkCalls(t, store, pusher, tc.wantStored, nil)
		})
	}
	// A CommandUUID over the limit is refused before anything is stored.
	store, pusher := &fakeStore{}, &fakePusher{}
	long := bytes.Replace(command, []byte("cmd-1"), bytes.Repeat([]byte("c"), 256), 1)
	rec := do(t, targetsServer(store, pusher, quiet), http.MethodPut, "/v1/enqueue/a", long, true)
	if rec.Code != http.StatusBadRequest || !strings.Contains(decode(t, rec)["error"].(string), "invalid CommandUUID") {
		t.Fatalf("256-byte CommandUUID: %d %s", rec.Code, rec.Body)
	}
	checkCalls(t, store, pusher, nil, nil)
}

// TestPushTargets checks /v1/push in both forms: the body form pushes as
// the path form does; bad or too many IDs are a 400 with no push.
func TestPushTargets(t *testing.T) {
	for _, tc := range []struct {
		name        string
		method      string
		path        string
		contentType string
		body        []byte
		wantStatus  int
		wantPushed  []string
		wantError   string
	}{
		{"body form", http.MethodPost, "/v1/push", "application/json", []byte(`{"targets": ["a", "b", "a"]}`), 200, []string{"a", "b"}, ""},
		{"body form on /v1/push/", http.MethodPost, "/v1/push/", "application/json", []byte(`{"targets": ["a"]}`), 200, []string{"a"}, ""},
		{"body form, exactly max-ids", http.MethodPost, "/v1/push", "application/json", mustJSON(t, map[string]any{"targets": ids(testMaxIDs)}), 200, ids(testMaxIDs), ""},
		{"body form, max-ids + 1", http.MethodPost, "/v1/push", "application/json", mustJSON(t, map[string]any{"targets": ids(testMaxIDs + 1)}), 400, nil, "more than 5"},
		{"body form, bad ID", http.MethodPost, "/v1/push", "application/json", []byte(`{"targets": ["a", "x\u0007"]}`), 400, nil, `"x\a"`},
		{"body form, plist is no push field", http.MethodPost, "/v1/push", "application/json", []byte(`{"targets": ["a"], "plist": ""}`), 400, nil, "unknown field"},
		{"body form, no targets", http.MethodPost, "/v1/push", "application/json", []byte(`{}`), 400, nil, "no enrollment IDs"},
		{"body form, too large", http.MethodPost, "/v1/push", "application/json", []byte(`{"targets": ["` + strings.Repeat("a", int(api.MaxTargetsBodySize)) + `"]}`), 413, nil, ""},
		{"path form", http.MethodGet, "/v1/push/a,b", "", nil, 200, []string{"a", "b"}, ""},
		{"path form, max-ids + 1", http.MethodGet, "/v1/push/" + strings.Join(ids(testMaxIDs+1), ","), "", nil, 400, nil, "more than 5"},
		{"path form, bad ID", http.MethodGet, "/v1/push/a,b%09", "", nil, 400, nil, `"b\t"`},
		{"path form, no IDs", http.MethodGet, "/v1/push/", "", nil, 400, nil, "no enrollment IDs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pusher := &fakePusher{}
			rec := jsonRequest(t, targetsServer(&fakeStore{}, pusher, quiet), tc.method, tc.path, tc.contentType, tc.body)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %.500s", rec.Code, tc.wantStatus, rec.Body)
			}
			m := decode(t, rec)
			if tc.wantStatus >= 400 {
				if msg, _ := m["error"].(string); msg == "" || !strings.Contains(msg, tc.wantError) {
					t.Fatalf("error %q, want one containing %q", msg, tc.wantError)
				}
			}
			checkCalls(t, &fakeStore{}, pusher, nil, tc.wantPushed)
		})
	}
}

// TestTargetsBodyNeedsAuth checks that the body form's body, which may be
// 16 MiB, is not read for a request that has not authenticated.
func TestTargetsBodyNeedsAuth(t *testing.T) {
	for _, path := range []string{"/v1/enqueue", "/v1/push"} {
		body := &watchedBody{Reader: strings.NewReader(`{"targets": ["a"]}`)}
		req := httptest.NewRequest(http.MethodPost, path, body)
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth("nanomdm", "wrong")
		rec := httptest.NewRecorder()
		store, pusher := &fakeStore{}, &fakePusher{}
		targetsServer(store, pusher, quiet).ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", path, rec.Code)
		}
		if body.read {
			t.Errorf("%s: the body was read before authentication", path)
		}
		checkCalls(t, store, pusher, nil, nil)
	}
}

// watchedBody records whether it was read.
type watchedBody struct {
	*strings.Reader
	read bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.read = true
	return b.Reader.Read(p)
}
