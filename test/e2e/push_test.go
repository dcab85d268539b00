package e2e

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/apiclient"
	"github.com/picomdm/picomdm/test/apnsmock"
	"github.com/picomdm/picomdm/test/device"
)

// api sends an authenticated API request.
func (s *server) api(method, path string, body []byte) (int, []byte) {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	req.SetBasicAuth("nanomdm", apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestPush: upload a push certificate through the API, enqueue (which
// pushes) and push, against a mock APNs over HTTP/2.
func TestPush(t *testing.T) {
	mock := apnsmock.New()
	t.Cleanup(mock.Close)
	caFile := filepath.Join(t.TempDir(), "apns-ca.pem")
	os.WriteFile(caFile, mock.CertPEM(), 0o644)
	s := startServer(t, "-push-url", mock.URL, "-push-ca", caFile)
	c := ctx(t)

	topic := storagetest.NewTopic()
	certPEM, keyPEM := storagetest.NewPushCert(topic)
	status, body := s.api(http.MethodPut, "/v1/pushcert", append(keyPEM, certPEM...))
	if status != http.StatusOK {
		t.Fatalf("PUT /v1/pushcert: %d %s", status, body)
	}
	var pc struct {
		Topic    string `json:"topic"`
		NotAfter string `json:"not_after"`
	}
	json.Unmarshal(body, &pc)
	if pc.Topic != topic || pc.NotAfter == "" {
		t.Fatalf("pushcert answer %s", body)
	}
	if status, _ := s.api(http.MethodGet, "/v1/pushcert?topic="+topic, nil); status != http.StatusOK {
		t.Fatalf("GET pushcert: %d", status)
	}
	var list struct {
		PushCerts []struct {
			Topic    string `json:"topic"`
			NotAfter string `json:"not_after"`
		} `json:"pushcerts"`
	}
	if status, body := s.api(http.MethodGet, "/v1/pushcerts", nil); status != http.StatusOK || json.Unmarshal(body, &list) != nil ||
		len(list.PushCerts) != 1 || list.PushCerts[0].Topic != topic || list.PushCerts[0].NotAfter != pc.NotAfter {
		t.Fatalf("GET /v1/pushcerts: %d %s", status, body)
	}
	if status, _ := s.api(http.MethodGet, "/v1/pushcert?topic=com.apple.mgmt.nope", nil); status != http.StatusNotFound {
		t.Fatalf("GET unknown pushcert: %d", status)
	}
	if status, body := s.api(http.MethodPut, "/v1/pushcert", certPEM); status != http.StatusBadRequest || !bytes.Contains(body, []byte(`"error"`)) {
		t.Fatalf("cert without key: %d %s", status, body)
	}

	d := s.enrolled(device.WithTopic(topic))
	_, raw := apiclient.NewCommand("ProfileList", nil)
	status, body, err := apiclient.Enqueue(c, s.URL, apiKey, []string{d.ID()}, raw, false)
	if err != nil || status != http.StatusOK {
		t.Fatalf("enqueue with push: %d %s %v", status, body, err)
	}
	var res apiResult
	json.Unmarshal(body, &res)
	if res.Status[d.ID()].PushResult == "" {
		t.Fatalf("no apns-id in %s", body)
	}
	reqs := mock.RequestsFor(d.Token)
	if len(reqs) != 1 || reqs[0].Token != hex.EncodeToString(d.Token) || reqs[0].Header.Get("apns-topic") != topic ||
		!bytes.Contains(reqs[0].Body, []byte(d.PushMagic)) {
		t.Fatalf("APNs saw %+v", reqs)
	}

	status, body, err = apiclient.Push(c, s.URL, apiKey, []string{d.ID(), "NO-SUCH-DEVICE"})
	if err != nil || status != http.StatusMultiStatus {
		t.Fatalf("push to known+unknown: %d %s %v", status, body, err)
	}
	json.Unmarshal(body, &res)
	if res.Status[d.ID()].PushResult == "" || res.Status["NO-SUCH-DEVICE"].PushError == "" {
		t.Fatalf("push answer %s", body)
	}
	// Pushes and the certificate's expiry are in the metrics.
	status, body = s.api(http.MethodGet, "/metrics", nil)
	for _, series := range []string{
		`picomdm_pushes_total{result="success",topic="` + topic + `"} 2`,
		`picomdm_pushes_total{result="no_push_info",topic=""} 1`,
		`picomdm_push_cert_expiry_seconds{topic="` + topic + `"}`,
	} {
		if status != http.StatusOK || !bytes.Contains(body, []byte(series)) {
			t.Errorf("metrics lack %s", series)
		}
	}
	// The device comes when pushed and finds its command.
	if cmd, err := d.Idle(c); err != nil || cmd == nil {
		t.Fatalf("after push: %v %v", cmd, err)
	}
}
