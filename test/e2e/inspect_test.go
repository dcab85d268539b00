package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/test/device"
)

// TestInspection: a command to five devices — two acknowledge, one
// answers NotNow, one Error, one is cancelled — and every inspection
// endpoint's answer.
func TestInspection(t *testing.T) {
	s := startServer(t)
	c := ctx(t)
	var devs []*device.Device
	var ids []string
	for i := 0; i < 5; i++ {
		d := s.enrolled()
		devs = append(devs, d)
		ids = append(ids, d.ID())
	}
	user := devs[0].UserChannel("U-1", "alice", "Alice")
	if err := user.TokenUpdate(c); err != nil {
		t.Fatal(err)
	}
	uuid, raw := s.command("DeviceInformation", ids...)
	for i, d := range devs[:4] {
		if cmd, err := d.Idle(c); err != nil || cmd == nil {
			t.Fatalf("device %d: %v %v", i, cmd, err)
		}
	}
	devs[0].Report(c, uuid, "Acknowledged", nil)
	devs[1].Report(c, uuid, "Acknowledged", nil)
	devs[2].Report(c, uuid, "NotNow", nil)
	devs[3].Report(c, uuid, "Error", device.ErrorChain(12021, "MCMDMErrorDomain", "nope"))

	get := func(path string, v any) int {
		t.Helper()
		status, body := s.api(http.MethodGet, path, nil)
		if v != nil && status == http.StatusOK {
			if err := json.Unmarshal(body, v); err != nil {
				t.Fatalf("%s: %v: %s", path, err, body)
			}
		}
		return status
	}

	// Cancel the fifth device's copy; cancelling an answered one is 409.
	if status, body := s.api(http.MethodDelete, "/v1/queue/"+url.PathEscape(ids[4])+"/"+uuid, nil); status != http.StatusOK {
		t.Fatalf("cancel: %d %s", status, body)
	}
	if cmd, _ := devs[4].Idle(c); cmd != nil {
		t.Fatal("cancelled command delivered")
	}
	if status, _ := s.api(http.MethodDelete, "/v1/queue/"+url.PathEscape(ids[0])+"/"+uuid, nil); status != http.StatusConflict {
		t.Fatalf("cancel answered: %d", status)
	}
	if status, _ := s.api(http.MethodDelete, "/v1/queue/"+url.PathEscape(ids[0])+"/NO-SUCH", nil); status != http.StatusNotFound {
		t.Fatalf("cancel unknown: %d", status)
	}

	var enr struct {
		ID              string `json:"id"`
		Type            string `json:"type"`
		SerialNumber    string `json:"serial_number"`
		Enabled         bool   `json:"enabled"`
		Tally           int    `json:"token_update_tally"`
		PendingCommands int    `json:"pending_commands"`
		PushTokenValid  bool   `json:"push_token_valid"`
		UserChannels    []struct {
			ID string `json:"id"`
		} `json:"user_channels"`
	}
	if status := get("/v1/enrollments/"+url.PathEscape(ids[0]), &enr); status != 200 || enr.ID != ids[0] || enr.Type != "Device" ||
		enr.SerialNumber != devs[0].SerialNumber || !enr.Enabled || enr.Tally != 1 || !enr.PushTokenValid ||
		len(enr.UserChannels) != 1 || enr.UserChannels[0].ID != user.ID() {
		t.Fatalf("enrollment: %d %+v", status, enr)
	}
	if status := get("/v1/enrollments/"+url.PathEscape(ids[2]), &enr); status != 200 || enr.PendingCommands != 1 {
		t.Fatalf("NotNow device pending: %+v", enr)
	}
	if status := get("/v1/enrollments/NO-SUCH", nil); status != http.StatusNotFound {
		t.Fatalf("unknown enrollment: %d", status)
	}

	var list struct {
		Enrollments []struct {
			ID string `json:"id"`
		} `json:"enrollments"`
		NextCursor string `json:"next_cursor"`
	}
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; pages < 10; pages++ {
		path := "/v1/enrollments?type=Device&limit=2"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		if status := get(path, &list); status != 200 {
			t.Fatalf("list: %d", status)
		}
		for _, e := range list.Enrollments {
			if seen[e.ID] {
				t.Fatalf("%s listed twice", e.ID)
			}
			seen[e.ID] = true
		}
		if cursor = list.NextCursor; cursor == "" {
			break
		}
	}
	for _, id := range ids {
		if !seen[id] {
			t.Fatalf("%s not listed", id)
		}
	}
	if seen[user.ID()] {
		t.Fatal("type=Device listed a user channel")
	}
	for _, bad := range []string{"/v1/enrollments?limit=0", "/v1/enrollments?limit=5000", "/v1/enrollments?cursor=!!!", "/v1/enrollments?enabled=maybe"} {
		if status := get(bad, nil); status != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad, status)
		}
	}

	var queue struct {
		Commands []struct {
			CommandUUID string  `json:"command_uuid"`
			RequestType string  `json:"request_type"`
			Status      *string `json:"status"`
			NotNowCount int     `json:"not_now_count"`
		} `json:"commands"`
	}
	if status := get("/v1/queue/"+url.PathEscape(ids[2]), &queue); status != 200 || len(queue.Commands) != 1 ||
		queue.Commands[0].CommandUUID != uuid || queue.Commands[0].Status == nil || *queue.Commands[0].Status != "NotNow" || queue.Commands[0].NotNowCount != 1 {
		t.Fatalf("queue of NotNow device: %d %+v", status, queue)
	}

	var cmd struct {
		CommandUUID string `json:"command_uuid"`
		RequestType string `json:"request_type"`
		Command     string `json:"command"`
		Enrollments []struct {
			ID     string `json:"id"`
			State  string `json:"state"`
			Result string `json:"result"`
		} `json:"enrollments"`
	}
	if status := get("/v1/commands/"+uuid, &cmd); status != 200 || cmd.RequestType != "DeviceInformation" {
		t.Fatalf("command: %d %+v", status, cmd)
	}
	if b, _ := base64.StdEncoding.DecodeString(cmd.Command); string(b) != string(raw) {
		t.Fatal("command raw differs")
	}
	states := map[string]string{}
	for _, e := range cmd.Enrollments {
		states[e.ID] = e.State
	}
	want := map[string]string{ids[0]: "Acknowledged", ids[1]: "Acknowledged", ids[2]: "NotNow", ids[3]: "Error"}
	for id, st := range want {
		if states[id] != st {
			t.Errorf("state of %s = %q, want %q (all: %v)", id, states[id], st, states)
		}
	}
	if _, ok := states[ids[4]]; ok {
		t.Errorf("cancelled enrollment still listed: %v", states)
	}
	status, body := s.api(http.MethodGet, "/v1/commands/"+uuid+"/results/"+url.PathEscape(ids[3]), nil)
	if status != 200 || !strings.Contains(string(body), "12021") {
		t.Fatalf("result plist: %d %s", status, body)
	}
	if status := get("/v1/commands/NO-SUCH", nil); status != http.StatusNotFound {
		t.Fatalf("unknown command: %d", status)
	}
}
