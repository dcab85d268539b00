package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"
	"github.com/picomdm/picomdm/mdm/commands"
	"github.com/picomdm/picomdm/mdm/commands/commandstest"
	"github.com/picomdm/picomdm/test/apiclient"
)

// postCommands sends a POST /v1/commands body as JSON.
func (s *server) postCommands(body []byte) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+"/v1/commands", bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("picomdm", apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, b.Bytes()
}

// commandsRequest is a POST /v1/commands body.
func commandsRequest(t *testing.T, command []byte, noPush bool, targets ...string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"targets": targets, "command": json.RawMessage(command), "nopush": noPush})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCommandsEveryRequestType: for every RequestType Apple documents, a
// generated command with only the required keys and one with every
// optional key too go through POST /v1/commands to one device; it
// receives each, in order, as exactly the expected dictionary (plist
// types included), and GET /v1/commands/{uuid} shows the delivered bytes.
func TestCommandsEveryRequestType(t *testing.T) {
	s := startServer(t)
	c := ctx(t)
	d := s.enrolled()

	type sent struct {
		name        string
		requestType string
		want        map[string]any
	}
	var order []string
	sents := map[string]sent{}
	specs := commands.Specs()
	if len(specs) < 60 {
		t.Fatalf("commands.Specs() has %d RequestTypes", len(specs))
	}
	for _, spec := range specs {
		for _, allOptional := range []bool{false, true} {
			name := spec.RequestType + " required keys"
			if allOptional {
				name = spec.RequestType + " every optional key"
			}
			cmdJSON, want := commandstest.SampleJSON(spec, allOptional)
			status, body := s.postCommands(commandsRequest(t, cmdJSON, true, d.ID()))
			var res apiResult
			if err := json.Unmarshal(body, &res); err != nil || status != http.StatusOK {
				t.Fatalf("%s: POST /v1/commands %s: %d %s", name, cmdJSON, status, body)
			}
			if res.CommandUUID == "" || res.RequestType != spec.RequestType || !res.NoPush || len(res.Status) != 0 {
				t.Fatalf("%s: answer %s", name, body)
			}
			if _, dup := sents[res.CommandUUID]; dup {
				t.Fatalf("%s: CommandUUID %s reused", name, res.CommandUUID)
			}
			order = append(order, res.CommandUUID)
			sents[res.CommandUUID] = sent{name, spec.RequestType, want}
		}
	}

	received, err := d.Drain(c, nil)
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	if len(received) != len(order) {
		t.Fatalf("device received %d commands, want %d", len(received), len(order))
	}
	for i, cmd := range received {
		sent := sents[order[i]]
		if cmd.CommandUUID != order[i] || cmd.RequestType != sent.requestType {
			t.Fatalf("command %d: got %s %s, want %s (%s)", i, cmd.CommandUUID, cmd.RequestType, order[i], sent.name)
		}
		// Decoded as a device does (micromdm/plist), non-negative
		// integers as int64 like the generator's want.
		gotUUID, got, err := commandstest.DecodeCommand(cmd.Raw)
		if err != nil {
			t.Fatalf("%s: delivered plist: %v", sent.name, err)
		}
		if gotUUID != cmd.CommandUUID || !reflect.DeepEqual(got, sent.want) {
			t.Errorf("%s: delivered Command differs: %s\nplist:\n%s", sent.name, commandstest.Diff(got, sent.want), cmd.Raw)
		}

		status, body := s.api(http.MethodGet, "/v1/commands/"+url.PathEscape(cmd.CommandUUID), nil)
		var shown struct {
			CommandUUID string `json:"command_uuid"`
			RequestType string `json:"request_type"`
			Command     []byte `json:"command"`
			Enrollments []struct {
				ID    string `json:"id"`
				State string `json:"state"`
			} `json:"enrollments"`
		}
		if status != http.StatusOK || json.Unmarshal(body, &shown) != nil {
			t.Fatalf("%s: GET /v1/commands/%s: %d %s", sent.name, cmd.CommandUUID, status, body)
		}
		if shown.CommandUUID != cmd.CommandUUID || shown.RequestType != sent.requestType || !bytes.Equal(shown.Command, cmd.Raw) ||
			len(shown.Enrollments) != 1 || shown.Enrollments[0].ID != d.ID() || shown.Enrollments[0].State != "Acknowledged" {
			t.Errorf("%s: GET /v1/commands/%s: %s", sent.name, cmd.CommandUUID, body)
		}
	}
}

// TestCommandsResultJSON: a device answers a command sent as JSON with a
// result holding data, a date and nested arrays; the result endpoint
// serves it as JSON with Accept: application/json and as the raw plist
// otherwise.
func TestCommandsResultJSON(t *testing.T) {
	s := startServer(t)
	c := ctx(t)
	d := s.enrolled()

	status, body := s.postCommands(commandsRequest(t, []byte(`{"RequestType":"DeviceInformation","Queries":["Model","UDID"]}`), true, d.ID()))
	var res apiResult
	if err := json.Unmarshal(body, &res); err != nil || status != http.StatusOK {
		t.Fatalf("POST /v1/commands: %d %s", status, body)
	}
	cmd, err := d.Idle(c)
	if err != nil || cmd == nil || cmd.CommandUUID != res.CommandUUID {
		t.Fatalf("Idle: %v %v", cmd, err)
	}
	installed := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	if next, err := d.Report(c, cmd.CommandUUID, "Acknowledged", map[string]any{
		"QueryResponses": map[string]any{"Model": "iPhone17,1", "UDID": d.UDID},
		"Certificate":    []byte{0, 1, 2, 0xff},
		"InstallDate":    installed,
		"Matrix":         []any{[]any{1, -2}, []any{}, []any{"x", true, 2.5, []any{installed}}},
	}); err != nil || next != nil {
		t.Fatalf("report: %v %v", next, err)
	}

	want := map[string]any{
		"CommandUUID":    cmd.CommandUUID,
		"Status":         "Acknowledged",
		"UDID":           d.UDID,
		"QueryResponses": map[string]any{"Model": "iPhone17,1", "UDID": d.UDID},
		"Certificate":    "AAEC/w==",
		"InstallDate":    "2025-01-02T03:04:05Z",
		"Matrix":         []any{[]any{1.0, -2.0}, []any{}, []any{"x", true, 2.5, []any{"2025-01-02T03:04:05Z"}}},
	}
	path := "/v1/commands/" + url.PathEscape(cmd.CommandUUID) + "/results/" + url.PathEscape(d.ID())
	for _, accept := range []string{"", "*/*", "application/xml", "application/json"} {
		req, _ := http.NewRequest(http.MethodGet, s.URL+path, nil)
		req.SetBasicAuth("nanomdm", apiKey)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Accept %q: %d %s", accept, resp.StatusCode, b.Bytes())
		}
		ct := resp.Header.Get("Content-Type")
		if accept != "application/json" {
			var raw map[string]any
			if ct != "application/xml" || plist.Unmarshal(b.Bytes(), &raw) != nil || raw["CommandUUID"] != cmd.CommandUUID {
				t.Errorf("Accept %q: %s %s, want the raw plist", accept, ct, b.Bytes())
			}
			continue
		}
		var got map[string]any
		if ct != "application/json" || json.Unmarshal(b.Bytes(), &got) != nil {
			t.Fatalf("Accept %q: %s %s", accept, ct, b.Bytes())
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("result JSON\n%s\nwant\n%#v", b.Bytes(), want)
		}
	}
}

// TestCommandsBadRequest: a command that breaks its schema is a 400 whose
// error names the key path; nothing is queued.
func TestCommandsBadRequest(t *testing.T) {
	s := startServer(t)
	c := ctx(t)
	d := s.enrolled()

	for _, tc := range []struct{ command, wantError string }{
		{`{"RequestType":"Settings","Settings":[{"Item":"Bluetooth","Enabled":true},{"Enabled":false}]}`, "command.Settings[1].Item: required"},
		{`{"RequestType":"DeviceLock","PIN":123456}`, "command.PIN: "},
		{`{"RequestType":"MakeCoffee"}`, "command.RequestType: "},
	} {
		status, body := s.postCommands(commandsRequest(t, []byte(tc.command), true, d.ID()))
		var e map[string]any
		if status != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || len(e) != 1 {
			t.Fatalf("%s: %d %s, want 400 {\"error\"}", tc.command, status, body)
		}
		if msg, _ := e["error"].(string); !strings.HasPrefix(msg, tc.wantError) {
			t.Errorf("%s: error %q, want %q…", tc.command, msg, tc.wantError)
		}
	}
	if status, body := s.api(http.MethodPost, "/v1/commands", commandsRequest(t, []byte(`{"RequestType":"DeviceLock"}`), true, d.ID())); status != http.StatusUnsupportedMediaType {
		t.Errorf("without Content-Type: %d %s, want 415", status, body)
	}
	if cmd, err := d.Idle(c); err != nil || cmd != nil {
		t.Fatalf("refused commands were queued: %v %v", cmd, err)
	}
}

// TestCommandsAnswerLikeEnqueue: POST /v1/commands and /v1/enqueue answer
// the same JSON and status for the same command and targets, with and
// without nopush (here pushing fails: the server has no push
// certificate).
func TestCommandsAnswerLikeEnqueue(t *testing.T) {
	s := startServer(t)
	d := s.enrolled()
	const unknown = "0000-NOT-ENROLLED"
	command := []byte(`{"RequestType":"ProfileList","ManagedOnly":true}`)

	for _, noPush := range []bool{true, false} {
		status, body := s.postCommands(commandsRequest(t, command, noPush, d.ID(), unknown))
		var viaCommands map[string]any
		if err := json.Unmarshal(body, &viaCommands); err != nil {
			t.Fatalf("nopush %v: %d %s", noPush, status, body)
		}
		uuid, _ := viaCommands["command_uuid"].(string)

		// The same command as a raw plist through /v1/enqueue.
		enqUUID, raw := apiclient.NewCommand("ProfileList", map[string]any{"ManagedOnly": true})
		enqStatus, enqBody, err := apiclient.Enqueue(ctx(t), s.URL, apiKey, []string{d.ID(), unknown}, raw, noPush)
		if err != nil {
			t.Fatal(err)
		}
		if uuid == "" || !bytes.Contains(enqBody, []byte(enqUUID)) {
			t.Fatalf("command_uuid %q; /v1/enqueue of %s answered %s", uuid, enqUUID, enqBody)
		}
		// The UUIDs differ (a second command with the same one is a 409);
		// the rest must not.
		var viaEnqueue map[string]any
		if err := json.Unmarshal(bytes.ReplaceAll(enqBody, []byte(enqUUID), []byte(uuid)), &viaEnqueue); err != nil {
			t.Fatalf("enqueue: %d %s", enqStatus, enqBody)
		}
		if status != enqStatus || !reflect.DeepEqual(viaCommands, viaEnqueue) {
			t.Errorf("nopush %v:\n/v1/commands %d %s\n/v1/enqueue  %d %s", noPush, status, body, enqStatus, enqBody)
		}
		// nopush: the unknown ID fails, the device does not: 207. With a
		// push, the device's push fails too: 500.
		if want := map[bool]int{true: http.StatusMultiStatus, false: http.StatusInternalServerError}[noPush]; status != want {
			t.Errorf("nopush %v: status %d, want %d", noPush, status, want)
		}
	}
}
