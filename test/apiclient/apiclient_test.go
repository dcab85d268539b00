package apiclient_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
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

// TestBodyForm checks EnqueueTargets and PushTargets, and that Enqueue and
// Push switch to them for ID lists too long for the path.
func TestBodyForm(t *testing.T) {
	type seen struct {
		method, path, query, contentType string
		body                             struct {
			Targets []string `json:"targets"`
			Plist   []byte   `json:"plist"`
			NoPush  bool     `json:"nopush"`
		}
		rawBody []byte
	}
	var got seen
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = seen{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, contentType: r.Header.Get("Content-Type")}
		got.rawBody, _ = io.ReadAll(r.Body)
		if got.contentType == "application/json" {
			if err := json.Unmarshal(got.rawBody, &got.body); err != nil {
				t.Errorf("body %.200q: %v", got.rawBody, err)
			}
		}
		io.WriteString(w, `{}`)
	}))
	defer ts.Close()
	c := &apiclient.Client{BaseURL: ts.URL, APIKey: "secret"}
	_, raw := apiclient.NewCommand("ProfileList", nil)
	few := []string{"UDID1", "UDID2:bob smith"}
	// 100,000 UUID-sized IDs: some 3.7 MB of path, which no server takes.
	many := make([]string, 100000)
	for i := range many {
		many[i] = fmt.Sprintf("%08X-0000-4000-8000-%012X", i, i)
	}

	check := func(name, method, path string, wantTargets []string, wantPlist []byte, wantNoPush bool) {
		t.Helper()
		if got.method != method || got.path != path || got.contentType != "application/json" || got.query != "" {
			t.Errorf("%s: server saw %s %s?%s (%s)", name, got.method, got.path, got.query, got.contentType)
		}
		if !slices.Equal(got.body.Targets, wantTargets) || !bytes.Equal(got.body.Plist, wantPlist) || got.body.NoPush != wantNoPush {
			t.Errorf("%s: body %d targets, plist %d bytes, nopush %v", name, len(got.body.Targets), len(got.body.Plist), got.body.NoPush)
		}
	}
	if _, _, err := c.EnqueueTargets(t.Context(), few, raw, true); err != nil {
		t.Fatal(err)
	}
	check("EnqueueTargets", http.MethodPost, "/v1/enqueue", few, raw, true)
	if _, _, err := c.PushTargets(t.Context(), few); err != nil {
		t.Fatal(err)
	}
	check("PushTargets", http.MethodPost, "/v1/push", few, nil, false)
	if bytes.Contains(got.rawBody, []byte("plist")) || bytes.Contains(got.rawBody, []byte("nopush")) {
		t.Errorf("push body %q has enqueue fields", got.rawBody)
	}
	if _, _, err := c.Enqueue(t.Context(), many, raw, false); err != nil {
		t.Fatal(err)
	}
	check("Enqueue of 100,000 IDs", http.MethodPost, "/v1/enqueue", many, raw, false)
	if _, _, err := c.Push(t.Context(), many); err != nil {
		t.Fatal(err)
	}
	check("Push to 100,000 IDs", http.MethodPost, "/v1/push", many, nil, false)

	// Up to MaxPathBytes, the path form, which NanoMDM takes too.
	fit := many[:apiclient.MaxPathBytes/(len(many[0])+1)]
	if _, _, err := c.Enqueue(t.Context(), fit, raw, true); err != nil {
		t.Fatal(err)
	}
	if got.method != http.MethodPut || got.contentType != "" || got.query != "nopush=1" || !bytes.Equal(got.rawBody, raw) {
		t.Errorf("Enqueue of %d IDs: server saw %s %.40s… (%s)", len(fit), got.method, got.path, got.contentType)
	}
}
