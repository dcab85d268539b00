package api_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/micromdm/plist"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/mdm/commands"
	"github.com/picomdm/picomdm/push"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/test/logtest"
)

// commandsServer mounts the command routes next to the inspection routes
// and the enqueue handler, the way cmd/picomdm does.
func commandsServer(store storage.CommandEnqueuer, pusher push.Pusher, inspect api.InspectionStore, opts ...api.Option) http.Handler {
	return commandsServerLog(quiet, store, pusher, inspect, opts...)
}

// commandsServerLog is commandsServer logging to logger.
func commandsServerLog(logger *slog.Logger, store storage.CommandEnqueuer, pusher push.Pusher, inspect api.InspectionStore, opts ...api.Option) http.Handler {
	authed := picohttp.BasicAuth(apiKey)
	mux := http.NewServeMux()
	mux.Handle("/v1/enqueue/", authed(http.StripPrefix("/v1/enqueue/", api.EnqueueHandler(store, pusher, logger, opts...))))
	routes := api.InspectionRoutes(inspect, logger)
	for pattern, h := range api.CommandRoutes(store, pusher, logger, opts...) {
		routes[pattern] = h
	}
	for pattern, h := range routes {
		mux.Handle(pattern, authed(h))
	}
	return mux
}

// postJSON sends body to path with Content-Type contentType (none if
// empty) and the API key.
func postJSON(t *testing.T, h http.Handler, path, contentType string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.SetBasicAuth("nanomdm", apiKey)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// commandsBody is a POST /v1/commands body for targets and command.
func commandsBody(t *testing.T, targets []string, command string, extra string) []byte {
	t.Helper()
	b, err := json.Marshal(targets)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(`{"targets":` + string(b) + `,"command":` + command + extra + `}`)
}

const deviceInformation = `{"RequestType":"DeviceInformation","Queries":["UDID","SerialNumber"]}`

func TestCommandRoutes(t *testing.T) {
	routes := api.CommandRoutes(new(fakeStore), nil, nil)
	want := []string{"/v1/commands", "/v1/commands/schema", "/v1/commands/schema/{request_type}"}
	if len(routes) != len(want) {
		t.Fatalf("%d routes, want %d", len(routes), len(want))
	}
	for _, p := range want {
		if routes[p] == nil {
			t.Errorf("no route %q", p)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("CommandRoutes(nil store) did not panic")
		}
	}()
	api.CommandRoutes(nil, nil, nil)
}

// TestPostCommandsRefused: requests refused before the command is built
// get their status and a JSON error, and nothing is stored or pushed.
func TestPostCommandsRefused(t *testing.T) {
	padded := func(n int) []byte {
		b := commandsBody(t, []string{"a"}, `{"RequestType":"DeviceInformation","Queries":["`+strings.Repeat("x", n)+`"]}`, "")
		return b
	}
	for _, tc := range []struct {
		name        string
		contentType string
		body        []byte
		wantStatus  int
		wantError   string // exact "error" when set
	}{
		{"415 no Content-Type", "", commandsBody(t, []string{"a"}, deviceInformation, ""), 415, ""},
		{"415 text/plain", "text/plain", commandsBody(t, []string{"a"}, deviceInformation, ""), 415, ""},
		{"415 form", "application/x-www-form-urlencoded", commandsBody(t, []string{"a"}, deviceInformation, ""), 415, ""},
		{"400 not JSON", "application/json", []byte("<plist/>"), 400, ""},
		{"400 empty body", "application/json", nil, 400, ""},
		{"400 not an object", "application/json", []byte(`["a"]`), 400, ""},
		{"400 a string", "application/json", []byte(`"a"`), 400, ""},
		{"400 unknown top-level field", "application/json", commandsBody(t, []string{"a"}, deviceInformation, `,"no_push":true`), 400, ""},
		{"400 data after the object", "application/json", append(commandsBody(t, []string{"a"}, deviceInformation, ""), "{}"...), 400, ""},
		{"400 no targets", "application/json", []byte(`{"command":` + deviceInformation + `}`), 400, ""},
		{"400 empty targets", "application/json", commandsBody(t, []string{}, deviceInformation, ""), 400, ""},
		{"400 empty target", "application/json", commandsBody(t, []string{""}, deviceInformation, ""), 400, ""},
		{"400 invalid target", "application/json", commandsBody(t, []string{"a", "b:c:d\x00"}, deviceInformation, ""), 400, ""},
		{"400 colon in UDID part", "application/json", commandsBody(t, []string{":u"}, deviceInformation, ""), 400, ""},
		{"400 more than -max-ids", "application/json", commandsBody(t, []string{"a", "b", "c"}, deviceInformation, ""), 400, ""},
		{"400 no command", "application/json", []byte(`{"targets":["a"]}`), 400, "command: required"},
		{"400 null command", "application/json", commandsBody(t, []string{"a"}, "null", ""), 400, "command: required"},
		{"400 control character in command_uuid", "application/json", commandsBody(t, []string{"a"}, deviceInformation, `,"command_uuid":"x\u0007"`), 400, ""},
		{"400 oversized command_uuid", "application/json", commandsBody(t, []string{"a"}, deviceInformation, `,"command_uuid":"`+strings.Repeat("u", 256)+`"`), 400, ""},
		{"400 reserved command_uuid", "application/json", commandsBody(t, []string{"a"}, deviceInformation, `,"command_uuid":"schema"`), 400, ""},
		{"413 at 1 MiB + 1", "application/json", padded(int(api.MaxCommandsBodySize) + 1 - len(padded(0))), 413, ""},
		{"413 far beyond", "application/json", padded(3 << 20), 413, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, pusher := new(fakeStore), new(fakePusher)
			h := commandsServer(store, pusher, newFakeInspection(), api.WithMaxIDs(2))
			rec := postJSON(t, h, "/v1/commands", tc.contentType, tc.body)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
			m := decode(t, rec)
			if s, ok := m["error"].(string); !ok || s == "" || len(m) != 1 {
				t.Fatalf("body %s, want {\"error\": ...}", rec.Body)
			}
			if tc.wantError != "" && m["error"] != tc.wantError {
				t.Errorf("error %q, want %q", m["error"], tc.wantError)
			}
			if len(store.ids) != 0 || len(pusher.calls) != 0 {
				t.Errorf("stored %v, pushed %v", store.ids, pusher.calls)
			}
		})
	}
}

func TestCommandsMethodNotAllowed(t *testing.T) {
	h := commandsServer(new(fakeStore), nil, newFakeInspection())
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodGet, "/v1/commands", "POST"},
		{http.MethodPut, "/v1/commands", "POST"},
		{http.MethodPost, "/v1/commands/schema", "GET, HEAD"},
		{http.MethodDelete, "/v1/commands/schema/DeviceLock", "GET, HEAD"},
	} {
		rec := do(t, h, tc.method, tc.path, nil, true)
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want 405 Allow %q", tc.method, tc.path, rec.Code, rec.Header().Get("Allow"), tc.allow)
		}
		decode(t, rec)
	}
}

func TestCommandsNeedAuth(t *testing.T) {
	store := new(fakeStore)
	h := commandsServer(store, nil, newFakeInspection())
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/v1/commands"},
		{http.MethodGet, "/v1/commands/schema"},
		{http.MethodGet, "/v1/commands/schema/DeviceLock"},
	} {
		req := httptest.NewRequest(tc.method, tc.path, bytes.NewReader(commandsBody(t, []string{"a"}, deviceInformation, "")))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth("nanomdm", "wrong")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s %s with a wrong key: %d, want 401", tc.method, tc.path, rec.Code)
		}
	}
	if len(store.ids) != 0 {
		t.Fatalf("stored %v", store.ids)
	}
}

// TestCommandsDoNotShadowInspection: with the command routes mounted,
// GET /v1/commands/{uuid} and its results still reach the inspection API
// for ordinary CommandUUIDs, including ones that start with "schema";
// only the reserved "schema" itself shows the schema, though its results
// are still reachable.
func TestCommandsDoNotShadowInspection(t *testing.T) {
	store := newFakeInspection()
	for _, uuid := range []string{"schemas", "schema-1", "schema"} {
		store.commands[uuid] = &storage.CommandInfo{CommandUUID: uuid, RequestType: "DeviceInformation", EnqueuedAt: t0, Raw: command}
	}
	store.states["schema"] = []storage.CommandState{{EnrollmentID: "DEV-1", State: "Acknowledged", EnqueuedAt: t0, AnsweredAt: t1, Result: resultPlist}}
	h := commandsServer(new(fakeStore), nil, store)
	if rec := do(t, h, http.MethodGet, "/v1/commands/schema/results/DEV-1", nil, true); rec.Code != http.StatusOK || rec.Body.String() != string(resultPlist) {
		t.Errorf("result of the command named schema: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, http.MethodGet, "/v1/commands/schema", nil, true); rec.Code != http.StatusOK || !strings.HasPrefix(rec.Body.String(), `{"commands":[`) {
		t.Errorf("GET /v1/commands/schema: %d %.100s", rec.Code, rec.Body)
	}
	for _, path := range []string{"/v1/commands/cmd-1", "/v1/commands/schemas", "/v1/commands/schema-1"} {
		rec := do(t, h, http.MethodGet, path, nil, true)
		var resp api.CommandResponse
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &resp) != nil || "/v1/commands/"+resp.CommandUUID != path {
			t.Errorf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
	rec := do(t, h, http.MethodGet, "/v1/commands/cmd-1/results/DEV-1:USER-1", nil, true)
	if rec.Code != http.StatusOK || rec.Body.String() != string(resultPlist) {
		t.Errorf("result: %d %s", rec.Code, rec.Body)
	}
}

// TestPostCommands: a valid command is built by commands.BuildJSON and
// queued through the enqueue path: the same single store call, the same
// push, the same answer and status as /v1/enqueue with that plist.
func TestPostCommands(t *testing.T) {
	errUnknown := fmt.Errorf("queueing for c: %w", storage.ErrNotFound)
	for _, tc := range []struct {
		name       string
		targets    []string
		extra      string
		store      *fakeStore
		pusher     *fakePusher
		wantStatus int
		wantPushed []string
	}{
		{"200", []string{"a", "b", "a"}, "", &fakeStore{}, &fakePusher{}, 200, []string{"a", "b"}},
		{"200 nopush", []string{"a"}, `,"nopush":true`, &fakeStore{}, &fakePusher{}, 200, nil},
		{"200 given command_uuid", []string{"a"}, `,"command_uuid":"0001-given"`, &fakeStore{}, &fakePusher{}, 200, []string{"a"}},
		{"207 one ID unknown", []string{"a", "c"}, "", &fakeStore{idErrs: map[string]error{"c": errUnknown}}, &fakePusher{}, 207, []string{"a"}},
		{"207 one push failed", []string{"a", "b"}, "", &fakeStore{}, &fakePusher{failed: map[string]error{"b": errors.New("apns: Unregistered")}}, 207, []string{"a", "b"}},
		{"500 every ID unknown", []string{"c"}, "", &fakeStore{idErrs: map[string]error{"c": errUnknown}}, &fakePusher{}, 500, nil},
		{"500 whole push failed", []string{"a"}, "", &fakeStore{}, &fakePusher{err: errors.New("no push certificate for topic")}, 500, []string{"a"}},
		{"500 store failed", []string{"a"}, "", &fakeStore{err: errors.New("database down")}, &fakePusher{}, 500, nil},
		{"409 command exists", []string{"a"}, `,"command_uuid":"0001-given"`, &fakeStore{err: fmt.Errorf("enqueue: %w", storage.ErrCommandExists)}, &fakePusher{}, 409, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := postJSON(t, commandsServer(tc.store, tc.pusher, newFakeInspection()), "/v1/commands", "application/json",
				commandsBody(t, tc.targets, deviceInformation, tc.extra))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
			if len(tc.store.cmds) != 1 {
				t.Fatalf("%d store calls, want 1", len(tc.store.cmds))
			}
			stored := tc.store.cmds[0]
			var got struct {
				CommandUUID string
				Command     map[string]any
			}
			if err := plist.Unmarshal(stored.Raw, &got); err != nil {
				t.Fatalf("stored plist: %v", err)
			}
			want := map[string]any{"RequestType": "DeviceInformation", "Queries": []any{"UDID", "SerialNumber"}}
			if !reflect.DeepEqual(got.Command, want) || got.CommandUUID != stored.CommandUUID || stored.RequestType() != "DeviceInformation" {
				t.Fatalf("stored %s, want Command %v", stored.Raw, want)
			}
			if strings.Contains(tc.extra, "command_uuid") && stored.CommandUUID != "0001-given" {
				t.Errorf("CommandUUID %q, want the given one", stored.CommandUUID)
			}
			if len(tc.wantPushed) > 0 && (len(tc.pusher.calls) != 1 || !reflect.DeepEqual(tc.pusher.calls[0], tc.wantPushed)) {
				t.Errorf("push calls %v, want one with %v", tc.pusher.calls, tc.wantPushed)
			}
			if len(tc.wantPushed) == 0 && len(tc.pusher.calls) != 0 {
				t.Errorf("pushed %v", tc.pusher.calls)
			}

			// The same plist through /v1/enqueue, to fresh fakes that
			// behave alike, answers byte for byte the same.
			store2 := &fakeStore{idErrs: tc.store.idErrs, err: tc.store.err}
			pusher2 := &fakePusher{failed: tc.pusher.failed, err: tc.pusher.err}
			path := "/v1/enqueue/" + strings.Join(tc.targets, ",")
			if strings.Contains(tc.extra, "nopush") {
				path += "?nopush=1"
			}
			enq := do(t, commandsServer(store2, pusher2, newFakeInspection()), http.MethodPut, path, stored.Raw, true)
			if enq.Code != rec.Code || enq.Body.String() != rec.Body.String() {
				t.Errorf("/v1/commands answered %d %s\n/v1/enqueue answered %d %s", rec.Code, rec.Body, enq.Code, enq.Body)
			}
		})
	}
}

// TestPostCommandsGeneratesUUIDs: without command_uuid every command gets
// a fresh one, which the answer names.
func TestPostCommandsGeneratesUUIDs(t *testing.T) {
	store := new(fakeStore)
	h := commandsServer(store, nil, newFakeInspection())
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		rec := postJSON(t, h, "/v1/commands", "application/json", commandsBody(t, []string{"a"}, deviceInformation, `,"nopush":true`))
		m := decode(t, rec)
		uuid, _ := m["command_uuid"].(string)
		if rec.Code != 200 || uuid == "" || seen[uuid] || store.cmds[i].CommandUUID != uuid {
			t.Fatalf("post %d: %d %s", i, rec.Code, rec.Body)
		}
		seen[uuid] = true
	}
}

// TestPostCommandsBodyLimit: a body of exactly MaxCommandsBodySize bytes
// is accepted, one byte more is 413 (TestPostCommandsRefused).
func TestPostCommandsBodyLimit(t *testing.T) {
	body := commandsBody(t, []string{"a"}, deviceInformation, `,"nopush":true`)
	body = append(body, bytes.Repeat([]byte(" "), int(api.MaxCommandsBodySize)-len(body))...)
	store := new(fakeStore)
	rec := postJSON(t, commandsServer(store, nil, newFakeInspection()), "/v1/commands", "application/json", body)
	if rec.Code != http.StatusOK || len(store.cmds) != 1 {
		t.Fatalf("%d-byte body: %d %s", len(body), rec.Code, rec.Body)
	}
}

// TestPostCommandsSchemaViolations: a command that breaks its schema is a
// 400 whose error is the commands.PathError text, naming the key path.
func TestPostCommandsSchemaViolations(t *testing.T) {
	profile := `"` + "PHBsaXN0Lz4=" + `"`
	for _, tc := range []struct {
		name     string
		command  string
		wantPath string // the error starts with wantPath + ": "
	}{
		{"not an object", `"DeviceInformation"`, "command"},
		{"no RequestType", `{"Queries":["UDID"]}`, "command.RequestType"},
		{"unknown RequestType", `{"RequestType":"MakeCoffee"}`, "command.RequestType"},
		{"unknown key", `{"RequestType":"DeviceLock","Pin":"123456"}`, "command.Pin"},
		{"wrong type", `{"RequestType":"DeviceLock","PIN":123456}`, "command.PIN"},
		{"missing required key", `{"RequestType":"InstallProfile"}`, "command.Payload"},
		{"data not base64", `{"RequestType":"InstallProfile","Payload":"not base64!"}`, "command.Payload"},
		{"array item of the wrong type", `{"RequestType":"DeviceInformation","Queries":["UDID",7]}`, "command.Queries[1]"},
		{"required key in an array of dictionaries", `{"RequestType":"Settings","Settings":[{"Item":"Bluetooth","Enabled":true},{"Enabled":true}]}`, "command.Settings[1].Item"},
		{"value outside the enumeration", `{"RequestType":"Settings","Settings":[{"Item":"SoftwareUpdateSettings","RecommendationCadence":7}]}`, "command.Settings[0].RecommendationCadence"},
		{"real for an integer", `{"RequestType":"Settings","Settings":[{"Item":"MaximumResidentUsers","MaximumResidentUsers":2.5}]}`, "command.Settings[0].MaximumResidentUsers"},
		{"valid payload, wrong extra", `{"RequestType":"InstallProfile","Payload":` + profile + `,"Extra":1}`, "command.Extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := new(fakeStore)
			rec := postJSON(t, commandsServer(store, nil, newFakeInspection()), "/v1/commands", "application/json",
				commandsBody(t, []string{"a"}, tc.command, ""))
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400; body %s", rec.Code, rec.Body)
			}
			m := decode(t, rec)
			msg, _ := m["error"].(string)
			if len(m) != 1 || !strings.HasPrefix(msg, tc.wantPath+": ") || len(msg) == len(tc.wantPath)+2 {
				t.Errorf("body %s, want {\"error\": %q}", rec.Body, tc.wantPath+": <reason>")
			}
			// The text is commands' own, so picocmd and the API say the same.
			_, _, _, err := commands.BuildJSON(json.RawMessage(tc.command), "")
			var pathErr *commands.PathError
			if !errors.As(err, &pathErr) || pathErr.Error() != msg {
				t.Errorf("commands.BuildJSON says %v, the API %q", err, msg)
			}
			if len(store.ids) != 0 {
				t.Errorf("stored %v", store.ids)
			}
		})
	}
}

func TestCommandSchema(t *testing.T) {
	h := commandsServer(new(fakeStore), nil, newFakeInspection())

	rec := do(t, h, http.MethodGet, "/v1/commands/schema", nil, true)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET schema: %d %s", rec.Code, rec.Body)
	}
	decode(t, rec)
	schemaBody := rec.Body.Bytes()
	var all api.SchemaResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &all); err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(&api.SchemaResponse{Commands: commands.Specs()})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(schemaBody), want) || len(all.Commands) != len(commands.Specs()) || len(all.Commands) < 60 {
		t.Fatalf("schema lists %d commands, not commands.Specs()", len(all.Commands))
	}

	for _, spec := range commands.Specs() {
		rec := do(t, h, http.MethodGet, "/v1/commands/schema/"+spec.RequestType, nil, true)
		want, err := json.Marshal(&spec)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusOK || !bytes.Equal(bytes.TrimSpace(rec.Body.Bytes()), want) {
			t.Errorf("GET schema/%s: %d, not its Spec", spec.RequestType, rec.Code)
		}
	}

	for _, path := range []string{"/v1/commands/schema/MakeCoffee", "/v1/commands/schema/devicelock"} {
		rec := do(t, h, http.MethodGet, path, nil, true)
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, rec.Code)
		}
		if m := decode(t, rec); !strings.Contains(fmt.Sprint(m["error"]), "unknown RequestType") {
			t.Errorf("GET %s: %s", path, rec.Body)
		}
	}

	req := httptest.NewRequest(http.MethodHead, "/v1/commands/schema", nil)
	req.SetBasicAuth("picomdm", apiKey)
	head := httptest.NewRecorder()
	h.ServeHTTP(head, req)
	if head.Code != http.StatusOK || head.Body.Len() != 0 || head.Header().Get("Content-Length") != fmt.Sprint(len(schemaBody)) {
		t.Errorf("HEAD schema: %d, %d bytes, Content-Length %q (GET: %d bytes)", head.Code, head.Body.Len(), head.Header().Get("Content-Length"), len(schemaBody))
	}
}

// richResult is a result plist with data, a date, nested arrays, a
// dictionary, an integer, a real and booleans.
const richResult = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>CommandUUID</key><string>cmd-1</string>
	<key>Status</key><string>Acknowledged</string>
	<key>UDID</key><string>DEV-1</string>
	<key>Certificate</key><data>AAEC/w==</data>
	<key>InstallDate</key><date>2025-01-02T03:04:05Z</date>
	<key>Matrix</key><array><array><integer>1</integer><integer>-2</integer></array><array/><array><string>x</string><true/><real>2.5</real></array></array>
	<key>Info</key><dict><key>Enabled</key><false/><key>Count</key><integer>42</integer></dict>
</dict>
</plist>
`

// richResultJSON is what richResult converts to.
const richResultJSON = `{
	"CommandUUID": "cmd-1", "Status": "Acknowledged", "UDID": "DEV-1",
	"Certificate": "AAEC/w==",
	"InstallDate": "2025-01-02T03:04:05Z",
	"Matrix": [[1, -2], [], ["x", true, 2.5]],
	"Info": {"Enabled": false, "Count": 42}
}`

// TestCommandResultAccept: the result endpoint serves the raw plist by
// default and commands.ResultJSON of it when the client prefers JSON.
func TestCommandResultAccept(t *testing.T) {
	store := newFakeInspection()
	store.states["cmd-1"][1].Result = []byte(richResult)
	h := commandsServer(new(fakeStore), nil, store)
	const path = "/v1/commands/cmd-1/results/DEV-1:USER-1"
	for _, tc := range []struct {
		accept   []string // Accept header lines
		wantJSON bool
	}{
		{nil, false},
		{[]string{"*/*"}, false},
		{[]string{"application/xml"}, false},
		{[]string{"application/*"}, false},
		{[]string{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}, false},
		{[]string{"application/json;q=0.5, application/xml"}, false},
		{[]string{"application/json;q=0, */*"}, false},
		{[]string{"text/plain"}, false},
		{[]string{"nonsense;;"}, false},
		{[]string{"application/json"}, true},
		{[]string{"Application/JSON"}, true},
		{[]string{"application/json; charset=utf-8"}, true},
		{[]string{"application/json, */*"}, true},
		{[]string{"application/json, */*;q=0.1"}, true},
		{[]string{"application/xml;q=0.2, application/json;q=0.8"}, true},
		{[]string{"application/xml;q=0, */*"}, true},
		{[]string{"text/plain", "application/json"}, true},
		{[]string{"application/json;q=2, application/xml;q=0.5"}, false}, // q out of range: ignored
	} {
		t.Run(strings.Join(tc.accept, " | "), func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			for _, a := range tc.accept {
				req.Header.Add("Accept", a)
			}
			req.SetBasicAuth("picomdm", apiKey)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if !strings.Contains(rec.Header().Get("Vary"), "Accept") {
				t.Errorf("Vary %q", rec.Header().Get("Vary"))
			}
			if !tc.wantJSON {
				if ct := rec.Header().Get("Content-Type"); ct != "application/xml" || rec.Body.String() != richResult {
					t.Fatalf("Content-Type %q, body %s; want the raw plist", ct, rec.Body)
				}
				return
			}
			var got, want any
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %s: %v", rec.Body, err)
			}
			if err := json.Unmarshal([]byte(richResultJSON), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("JSON\n%s\nwant\n%s", rec.Body, richResultJSON)
			}
			if rec.Header().Get("Content-Length") != fmt.Sprint(rec.Body.Len()) {
				t.Errorf("Content-Length %q for %d bytes", rec.Header().Get("Content-Length"), rec.Body.Len())
			}
		})
	}

	// HEAD: the JSON variant's headers alone.
	req := httptest.NewRequest(http.MethodHead, path, nil)
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth("picomdm", apiKey)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD JSON: %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
}

// TestCommandResultJSONUnconvertible: a stored result that has no JSON
// form is a 500 with a JSON error and an error log line; the raw plist is
// still served.
func TestCommandResultJSONUnconvertible(t *testing.T) {
	store := newFakeInspection()
	bad := []byte("not a plist at all")
	store.states["cmd-1"][1].Result = bad
	var logs logtest.Buffer
	h := commandsServerLog(slog.New(slog.NewJSONHandler(&logs, nil)), new(fakeStore), nil, store)
	const path = "/v1/commands/cmd-1/results/DEV-1:USER-1"
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth("picomdm", apiKey)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500: %s", rec.Code, rec.Body)
	}
	if m := decode(t, rec); !strings.Contains(fmt.Sprint(m["error"]), "converting the result to JSON") || len(m) != 1 {
		t.Errorf("body %s", rec.Body)
	}
	line := logs.Find(t, "api request failed")
	if line == nil || line["level"] != "ERROR" || line["status"] != float64(500) || !strings.Contains(fmt.Sprint(line["err"]), "converting the result to JSON") {
		t.Errorf("log line %v; log:\n%s", line, logs.String())
	}
	if raw := do(t, h, http.MethodGet, path, nil, true); raw.Code != http.StatusOK || !bytes.Equal(raw.Body.Bytes(), bad) {
		t.Errorf("raw: %d %q", raw.Code, raw.Body)
	}
}
