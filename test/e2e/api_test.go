package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/micromdm/plist"
	"github.com/picomdm/picomdm/test/apiclient"
	"github.com/picomdm/picomdm/test/device"
)

func TestAPI(t *testing.T) {
	s := startServer(t)
	c := ctx(t)
	d := s.enrolled()

	t.Run("auth", func(t *testing.T) {
		for _, user := range []string{"", "nanomdm", "picomdm"} {
			req, _ := http.NewRequest(http.MethodPut, s.URL+"/v1/enqueue/"+d.ID(), strings.NewReader("x"))
			if user != "" {
				req.SetBasicAuth(user, "wrong-key")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatalf("user %q wrong key: %d %q", user, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
			var e struct{ Error string }
			if json.Unmarshal(body, &e) != nil || e.Error == "" {
				t.Fatalf("401 body %q is not a JSON error", body)
			}
		}
		req, _ := http.NewRequest(http.MethodPut, s.URL+"/v1/enqueue/"+d.ID()+"?nopush=1", bytes.NewReader(mustCommand(t)))
		req.SetBasicAuth("picomdm", apiKey)
		if got := do(t, req); got != http.StatusOK {
			t.Fatalf("user picomdm with the key: %d", got)
		}
	})

	t.Run("enqueue answers NanoMDM's JSON", func(t *testing.T) {
		uuid, raw := apiclient.NewCommand("DeviceInformation", map[string]any{"Queries": []string{"Model"}})
		status, res := s.enqueue(raw, d.ID())
		if status != http.StatusOK || res.CommandUUID != uuid || res.RequestType != "DeviceInformation" || !res.NoPush {
			t.Fatalf("enqueue: %d %+v", status, res)
		}
		if _, ok := res.Status[d.ID()]; ok && res.Status[d.ID()].CommandError != "" {
			t.Fatalf("per-ID error on success: %+v", res)
		}
	})

	t.Run("enqueue to known and unknown IDs is 207", func(t *testing.T) {
		_, raw := apiclient.NewCommand("ProfileList", nil)
		status, res := s.enqueue(raw, d.ID(), "NO-SUCH-DEVICE")
		if status != http.StatusMultiStatus || res.Status["NO-SUCH-DEVICE"].CommandError == "" {
			t.Fatalf("got %d %+v", status, res)
		}
		status, res = s.enqueue(mustCommand(t), "NO-SUCH-1", "NO-SUCH-2")
		if status != http.StatusInternalServerError {
			t.Fatalf("all unknown: got %d %+v", status, res)
		}
	})

	t.Run("bad commands are 400, duplicates 409", func(t *testing.T) {
		dup := mustCommand(t)
		if status, _ := s.enqueue(dup, d.ID()); status != http.StatusOK {
			t.Fatal(status)
		}
		noUUID, _ := plist.Marshal(map[string]any{"Command": map[string]any{"RequestType": "ProfileList"}})
		noType, _ := plist.Marshal(map[string]any{"CommandUUID": "X-1", "Command": map[string]any{}})
		for name, tc := range map[string]struct {
			body []byte
			want int
		}{
			"garbage":        {[]byte("garbage"), 400},
			"no CommandUUID": {noUUID, 400},
			"no RequestType": {noType, 400},
			"duplicate UUID": {dup, 409},
		} {
			status, res := s.enqueue(tc.body, d.ID())
			if status != tc.want || res.Error == "" || res.CommandError == "" {
				t.Errorf("%s: got %d %+v, want %d with error fields", name, status, res, tc.want)
			}
		}
		status, body, err := apiclient.Enqueue(c, s.URL, apiKey, []string{d.ID()}, nil, true)
		if err != nil || status != http.StatusBadRequest || !strings.Contains(string(body), `"error"`) {
			t.Fatalf("empty body with nopush: %d %s %v", status, body, err)
		}
	})

	t.Run("a failed push is reported, the command stays queued", func(t *testing.T) {
		_, raw := apiclient.NewCommand("ProfileList", nil)
		status, body, err := apiclient.Enqueue(c, s.URL, apiKey, []string{d.ID()}, raw, false)
		if err != nil {
			t.Fatal(err)
		}
		var res apiResult
		json.Unmarshal(body, &res)
		if res.Status[d.ID()].PushError == "" || status != http.StatusInternalServerError {
			t.Fatalf("got %d %s", status, body)
		}
	})

	t.Run("version", func(t *testing.T) {
		resp, err := http.Get(s.URL + "/version")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v struct{ Version string }
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.Version == "" || resp.StatusCode != 200 {
			t.Fatalf("version: %d %+v %v", resp.StatusCode, v, err)
		}
	})

	t.Run("oversized API body is 413", func(t *testing.T) {
		big := bytes.Repeat([]byte("A"), 11<<20)
		status, _, err := apiclient.Enqueue(c, s.URL, apiKey, []string{d.ID()}, big, true)
		if err != nil || status != http.StatusRequestEntityTooLarge {
			t.Fatalf("got %d %v", status, err)
		}
	})

	// The device receives exactly the commands that were accepted, in order.
	cmds, err := d.Drain(c, device.Answer("Acknowledged"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 5 {
		t.Fatalf("device got %d commands, want the 5 accepted ones", len(cmds))
	}
}

func mustCommand(t *testing.T) []byte {
	t.Helper()
	_, raw := apiclient.NewCommand("ProfileList", nil)
	return raw
}
