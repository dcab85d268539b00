package apiclient_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/micromdm/plist"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/test/apiclient"
)

func TestNewCommand(t *testing.T) {
	uuid, raw := apiclient.NewCommand("InstallProfile", map[string]any{"Payload": []byte("profile")})
	cmd, err := mdm.DecodeCommand(raw)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.CommandUUID != uuid || cmd.RequestType() != "InstallProfile" {
		t.Errorf("decoded %q %q, want %q InstallProfile", cmd.CommandUUID, cmd.RequestType(), uuid)
	}
	var full struct{ Command struct{ Payload []byte } }
	if err := plist.Unmarshal(raw, &full); err != nil || string(full.Command.Payload) != "profile" {
		t.Errorf("Command.Payload = %q, %v", full.Command.Payload, err)
	}
	if other, _ := apiclient.NewCommand("InstallProfile", nil); other == uuid {
		t.Error("two commands share a CommandUUID")
	}
}

func TestEnqueueAndPush(t *testing.T) {
	type seen struct {
		method, path, query, user, pass string
		body                            []byte
	}
	var got seen
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.method, got.path, got.query = r.Method, r.URL.Path, r.URL.RawQuery
		got.user, got.pass, _ = r.BasicAuth()
		got.body, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusMultiStatus)
		io.WriteString(w, `{"status":{}}`)
	}))
	defer ts.Close()

	_, raw := apiclient.NewCommand("ProfileList", nil)
	status, body, err := apiclient.Enqueue(t.Context(), ts.URL+"/", "secret", []string{"UDID1", "UDID2:bob smith"}, raw, true)
	if err != nil || status != http.StatusMultiStatus || string(body) != `{"status":{}}` {
		t.Fatalf("Enqueue = %d %q %v", status, body, err)
	}
	want := seen{http.MethodPut, "/v1/enqueue/UDID1,UDID2:bob smith", "nopush=1", "nanomdm", "secret", raw}
	if got.method != want.method || got.path != want.path || got.query != want.query ||
		got.user != want.user || got.pass != want.pass || string(got.body) != string(want.body) {
		t.Errorf("server saw %+v", got)
	}

	if _, _, err := apiclient.Enqueue(t.Context(), ts.URL, "secret", []string{"A"}, raw, false); err != nil || got.query != "" {
		t.Errorf("Enqueue with push: query %q, %v", got.query, err)
	}
	if _, _, err := apiclient.Push(t.Context(), ts.URL, "secret", []string{"A", "B"}); err != nil || got.path != "/v1/push/A,B" {
		t.Errorf("Push: path %q, %v", got.path, err)
	}
}
