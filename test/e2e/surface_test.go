package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"github.com/picomdm/picomdm/test/wait"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picomdm/picomdm/storage/storagetest"
)

// recorder is an httptest receiver keeping every request.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
	srv  *httptest.Server
	// answer writes the response; nil answers 200 with no body.
	answer func(w http.ResponseWriter, r *http.Request, body []byte)
}

type recorded struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

func newRecorder(t *testing.T, answer func(http.ResponseWriter, *http.Request, []byte)) *recorder {
	rec := &recorder{answer: answer}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, recorded{r.Method, r.URL.Path, r.Header.Clone(), body})
		rec.mu.Unlock()
		if rec.answer != nil {
			rec.answer(w, r, body)
		}
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (rec *recorder) all() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]recorded(nil), rec.reqs...)
}

// waitFor polls until n requests arrived (webhook delivery is async).
func (rec *recorder) waitFor(t *testing.T, n int) []recorded {
	t.Helper()
	wait.For(t, 10*time.Second, func() bool { return len(rec.all()) >= n },
		func() string { return fmt.Sprintf("%d requests (got %d)", n, len(rec.all())) })
	return rec.all()
}

// TestWebhook: every check-in and report becomes a MicroMDM-style event,
// signed, in order.
func TestWebhook(t *testing.T) {
	hook := newRecorder(t, nil)
	s := startServer(t, "-webhook-url", hook.srv.URL+"/webhook", "-webhook-hmac-key", "secret")
	c := ctx(t)
	d := s.enrolled()
	uuid, _ := s.command("ProfileList", d.ID())
	if _, err := d.Idle(c); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Report(c, uuid, "Acknowledged", nil); err != nil {
		t.Fatal(err)
	}
	reqs := hook.waitFor(t, 4)
	type event struct {
		Topic        string `json:"topic"`
		EventID      string `json:"event_id"`
		CreatedAt    string `json:"created_at"`
		CheckinEvent *struct {
			UDID       string `json:"udid"`
			RawPayload []byte `json:"raw_payload"`
			Tally      int    `json:"token_update_tally"`
			IDs        struct {
				ID, Type string
			} `json:"ids"`
		} `json:"checkin_event"`
		AcknowledgeEvent *struct {
			UDID        string `json:"udid"`
			Status      string `json:"status"`
			CommandUUID string `json:"command_uuid"`
		} `json:"acknowledge_event"`
	}
	wantTopics := []string{"mdm.Authenticate", "mdm.TokenUpdate", "mdm.Connect", "mdm.Connect"}
	for i, r := range reqs {
		mac := hmac.New(sha256.New, []byte("secret"))
		mac.Write(r.Body)
		if r.Header.Get("X-Hmac-Signature") != base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
			t.Fatalf("event %d: bad HMAC", i)
		}
		var ev event
		if err := json.Unmarshal(r.Body, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Topic != wantTopics[i] || ev.EventID == "" || ev.CreatedAt == "" {
			t.Fatalf("event %d: %s", i, r.Body)
		}
		switch i {
		case 1:
			if ev.CheckinEvent == nil || ev.CheckinEvent.Tally != 1 || ev.CheckinEvent.UDID != d.UDID || ev.CheckinEvent.IDs.Type != "Device" ||
				!strings.Contains(string(ev.CheckinEvent.RawPayload), "TokenUpdate") {
				t.Fatalf("TokenUpdate event: %s", r.Body)
			}
		case 2:
			if ev.AcknowledgeEvent == nil || ev.AcknowledgeEvent.Status != "Idle" {
				t.Fatalf("Idle event: %s", r.Body)
			}
		case 3:
			if ev.AcknowledgeEvent == nil || ev.AcknowledgeEvent.Status != "Acknowledged" || ev.AcknowledgeEvent.CommandUUID != uuid {
				t.Fatalf("ack event: %s", r.Body)
			}
		}
	}
}

// TestDeclarativeManagement: forwarded to -dm (path prefix kept), with
// enrollment headers and HMAC both ways; a non-200 is a 500 to the device.
func TestDeclarativeManagement(t *testing.T) {
	sign := func(key string, b []byte) string {
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write(b)
		return base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	hook := newRecorder(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if strings.HasSuffix(r.URL.Path, "/broken") {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		out := []byte(`{"SyncTokens":{"DeclarationsToken":"t1"}}`)
		w.Header().Set("X-Hmac-Signature", sign("recv", out))
		w.Write(out)
	})
	s := startServer(t, "-dm", hook.srv.URL+"/prefix/", "-dm-send-hmac-key", "send", "-dm-recv-hmac-key", "recv")
	c := ctx(t)
	d := s.enrolled()
	body, err := d.DeclarativeManagement(c, "tokens", nil)
	if err != nil || !strings.Contains(string(body), "DeclarationsToken") {
		t.Fatalf("DM tokens: %q %v", body, err)
	}
	if _, err := d.DeclarativeManagement(c, "status", []byte(`{"StatusItems":{}}`)); err != nil {
		t.Fatal(err)
	}
	reqs := hook.all()
	if len(reqs) != 2 || reqs[0].Method != http.MethodGet || reqs[0].Path != "/prefix/tokens" ||
		reqs[1].Method != http.MethodPut || reqs[1].Path != "/prefix/status" || string(reqs[1].Body) != `{"StatusItems":{}}` {
		t.Fatalf("hook saw %+v", reqs)
	}
	if reqs[0].Header.Get("X-Enrollment-ID") != d.ID() || reqs[0].Header.Get("X-Enrollment-Type") != "Device" {
		t.Fatalf("enrollment headers: %v", reqs[0].Header)
	}
	if reqs[1].Header.Get("X-Hmac-Signature") != sign("send", reqs[1].Body) {
		t.Fatal("request HMAC missing or wrong")
	}
	if _, err := d.DeclarativeManagement(c, "broken", nil); statusOf(t, err) != http.StatusInternalServerError {
		t.Fatalf("non-200 hook: %v", err)
	}
}

// TestGetToken: a static token handler by TokenServiceType; unknown types
// are a 500.
func TestGetToken(t *testing.T) {
	s := startServer(t, "-get-token-static", "com.apple.maid=text:maid-token")
	c := ctx(t)
	d := s.enrolled()
	tok, err := d.GetToken(c, "com.apple.maid")
	if err != nil || string(tok) != "maid-token" {
		t.Fatalf("GetToken: %q %v", tok, err)
	}
	if _, err := d.GetToken(c, "com.example.unknown"); statusOf(t, err) != http.StatusInternalServerError {
		t.Fatalf("unknown service type: %v", err)
	}
}

// TestAuthProxy: device-authenticated reverse proxy adding X-Enrollment-ID
// and a trace ID; 502 when the upstream is down.
func TestAuthProxy(t *testing.T) {
	up := newRecorder(t, func(w http.ResponseWriter, r *http.Request, _ []byte) { io.WriteString(w, "upstream says hi") })
	s := startServer(t, "-auth-proxy-url", up.srv.URL+"/base")
	c := ctx(t)
	d := s.enrolled()
	status, body, err := d.Send(c, s.URL+"/authproxy/some/path", "application/json", []byte(`{}`), true)
	if err != nil || status != http.StatusOK || string(body) != "upstream says hi" {
		t.Fatalf("proxy: %d %q %v", status, body, err)
	}
	got := up.all()[0]
	if got.Path != "/base/some/path" || got.Header.Get("X-Enrollment-ID") != d.ID() || got.Header.Get("X-Trace-ID") == "" {
		t.Fatalf("upstream saw %+v", got)
	}
	if status, _, _ := d.Send(c, s.URL+"/authproxy/x", "application/json", []byte(`{}`), false); status != http.StatusBadRequest {
		t.Fatalf("unsigned proxy request: %d", status)
	}
	stranger := s.newDevice() // valid certificate, never enrolled
	if status, _, _ := stranger.Send(c, s.URL+"/authproxy/x", "application/json", []byte(`{}`), true); status != http.StatusForbidden {
		t.Fatalf("unenrolled device: %d", status)
	}
	up.srv.Close()
	if status, _, _ := d.Send(c, s.URL+"/authproxy/x", "application/json", []byte(`{}`), true); status != http.StatusBadGateway {
		t.Fatalf("upstream down: %d", status)
	}
}

// TestEscrowKeyUnlock: form validation, then relay to (a fake of) Apple's
// service with the topic's push certificate, Apple's answer passed back.
func TestEscrowKeyUnlock(t *testing.T) {
	var gotCert []byte
	var gotQuery url.Values
	apple := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			gotCert = r.TLS.PeerCertificates[0].Raw
		}
		gotQuery = r.URL.Query()
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "<plist>apple</plist>")
	}))
	apple.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	apple.StartTLS()
	t.Cleanup(apple.Close)
	caFile := filepath.Join(t.TempDir(), "apple-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: apple.Certificate().Raw}), 0o644)

	s := startServer(t, "-escrowkeyunlock-url", apple.URL+"/escrowKeyUnlock", "-push-ca", caFile)
	topic := storagetest.NewTopic()
	certPEM, keyPEM := storagetest.NewPushCert(topic)
	if status, body := s.api(http.MethodPut, "/v1/pushcert", append(certPEM, keyPEM...)); status != 200 {
		t.Fatalf("pushcert: %d %s", status, body)
	}
	post := func(form url.Values) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/escrowkeyunlock", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("nanomdm", apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := post(url.Values{"topic": {topic}, "serial": {"C02X"}})
	if status != http.StatusBadRequest || !strings.Contains(body, "productType") || !strings.Contains(body, "escrowKey") {
		t.Fatalf("missing fields: %d %s", status, body)
	}
	form := url.Values{"topic": {topic}, "serial": {"C02X"}, "productType": {"iPhone14,2"}, "escrowKey": {"KEY"}, "orgName": {"Org"}, "guid": {"G-1"}}
	status, body = post(form)
	if status != http.StatusAccepted || body != "<plist>apple</plist>" {
		t.Fatalf("relay: %d %q", status, body)
	}
	block, _ := pem.Decode(certPEM)
	if string(gotCert) != string(block.Bytes) || gotQuery.Get("serial") != "C02X" {
		t.Fatalf("Apple saw cert match=%v query=%v", string(gotCert) == string(block.Bytes), gotQuery)
	}
	form.Set("topic", "com.apple.mgmt.unknown")
	if status, _ := post(form); status != http.StatusNotFound {
		t.Fatalf("unknown topic: %d", status)
	}
}
