package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service/certauth"
	"github.com/picomdm/picomdm/test/device"
)

// TestAttackCertAuth is issue #12's identity attack through the real
// server on every backend: the holder of any certificate from the device
// CA must not be able to bind it to an enrolled device through an
// Authenticate that the server refuses (and then read its bootstrap
// token, drain its queue or replace its push token); a re-enrollment
// retires the device's earlier certificate; an operator can see and cut
// an identity.
func TestAttackCertAuth(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			hook := newRecorder(t, nil)
			s := startOn(t, backend.name, backend.dsn(t), "-webhook-url", hook.srv.URL)
			t.Run("RefusedAuthenticate", func(t *testing.T) { attackRefusedAuthenticate(t, s, hook) })
			if backend.name == "mysql" {
				t.Run("FailedAuthenticate", func(t *testing.T) { attackFailedAuthenticate(t, s) })
			}
			t.Run("ReEnrollRetiresOldCertificate", func(t *testing.T) { reEnrollRetiresOldCertificate(t, s) })
		})
	}
}

// victim enrolls a device with an escrowed bootstrap token and a pending
// command.
func victim(t *testing.T, s *server) (d *device.Device, token []byte, uuid string, raw []byte) {
	t.Helper()
	d = s.enrolled()
	token = []byte("bootstrap-token-" + d.UDID)
	if err := d.SetBootstrapToken(ctx(t), token); err != nil {
		t.Fatal(err)
	}
	uuid, raw = s.command("EraseDevice", d.ID())
	return d, token, uuid, raw
}

// refusedAsVictim checks that a device signing with cert but claiming the
// victim's UDID gets nothing: every message is refused with 500.
func refusedAsVictim(t *testing.T, attacker *device.Device) {
	t.Helper()
	c := ctx(t)
	if tok, err := attacker.GetBootstrapToken(c); statusOf(t, err) != http.StatusInternalServerError {
		t.Errorf("GetBootstrapToken with the attacker's certificate: %q, %v; want 500", tok, err)
	}
	if cmd, err := attacker.Idle(c); statusOf(t, err) != http.StatusInternalServerError {
		t.Errorf("Idle with the attacker's certificate: %v, %v; want 500", cmd, err)
	}
	if err := attacker.TokenUpdate(c); statusOf(t, err) != http.StatusInternalServerError {
		t.Errorf("TokenUpdate with the attacker's certificate: %v; want 500", err)
	}
}

// victimUntouched checks the victim's bootstrap token and queue are as
// they were and it still speaks with its own certificate.
func victimUntouched(t *testing.T, v *device.Device, token []byte, uuid string, raw []byte) {
	t.Helper()
	got, err := v.GetBootstrapToken(ctx(t))
	if err != nil || !bytes.Equal(got, token) {
		t.Fatalf("victim's bootstrap token: %q, %v; want %q", got, err, token)
	}
	assertQueueIntact(t, v, uuid, raw)
}

func attackRefusedAuthenticate(t *testing.T, s *server, hook *recorder) {
	c := ctx(t)
	v, token, uuid, raw := victim(t, s)
	before := len(hook.waitFor(t, 3)) // Authenticate, TokenUpdate, SetBootstrapToken
	// A fresh certificate from the device CA, never seen by the server,
	// in an Authenticate that the server refuses: it carries a UserID
	// (only device channels authenticate).
	attacker := s.newDevice(device.WithUDID(v.UDID))
	_, err := attacker.Checkin(c, map[string]any{
		"MessageType": mdm.MessageAuthenticate, "UDID": v.UDID, "UserID": "A5A5A5A5-0000-0000-0000-000000000000",
		"Topic": v.Topic, "SerialNumber": "ATTACKER",
	})
	if statusOf(t, err) != http.StatusInternalServerError {
		t.Fatalf("user-channel Authenticate: %v, want 500", err)
	}
	refusedAsVictim(t, attacker)
	victimUntouched(t, v, token, uuid, raw)
	// The refused Authenticate sent no webhook event: the next event is
	// the victim's own GetBootstrapToken.
	events := hook.waitFor(t, before+1)
	var ev struct {
		Topic        string `json:"topic"`
		CheckinEvent struct {
			UDID string `json:"udid"`
		} `json:"checkin_event"`
	}
	if err := json.Unmarshal(events[before].Body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Topic != "mdm.GetBootstrapToken" {
		t.Fatalf("event after the refused Authenticate: %s, want the victim's mdm.GetBootstrapToken", ev.Topic)
	}
}

// attackFailedAuthenticate: an Authenticate that storage fails to store
// (a serial number too long for MySQL's column) leaves no association.
func attackFailedAuthenticate(t *testing.T, s *server) {
	v, token, uuid, raw := victim(t, s)
	attacker := s.newDevice(device.WithUDID(v.UDID))
	attacker.SerialNumber = strings.Repeat("S", 300)
	if err := attacker.Authenticate(ctx(t)); statusOf(t, err) != http.StatusInternalServerError {
		t.Fatalf("Authenticate storage cannot store: %v, want 500", err)
	}
	refusedAsVictim(t, attacker)
	victimUntouched(t, v, token, uuid, raw)
}

// certificatesOf lists the hashes GET /v1/enrollments/{id}/certificates
// shows.
func certificatesOf(t *testing.T, s *server, id string) []string {
	t.Helper()
	status, body := s.api(http.MethodGet, "/v1/enrollments/"+id+"/certificates", nil)
	if status != http.StatusOK {
		t.Fatalf("GET certificates: %d %s", status, body)
	}
	var resp struct {
		ID           string `json:"id"`
		Certificates []struct {
			Hash         string  `json:"hash"`
			NotAfter     *string `json:"not_after"`
			AssociatedAt *string `json:"associated_at"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	var hashes []string
	for _, c := range resp.Certificates {
		if c.NotAfter == nil || c.AssociatedAt == nil {
			t.Fatalf("certificate without times: %s", body)
		}
		hashes = append(hashes, c.Hash)
	}
	return hashes
}

func reEnrollRetiresOldCertificate(t *testing.T, s *server) {
	c := ctx(t)
	old := s.enrolled()
	if got := certificatesOf(t, s, old.ID()); len(got) != 1 || got[0] != certauth.HashCert(old.Cert) {
		t.Fatalf("certificates after enrollment: %v, want the device's", got)
	}
	// The device re-enrolls with a new identity (same UDID).
	renewed := s.newDevice(device.WithUDID(old.UDID))
	if err := renewed.Enroll(c); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Idle(c); statusOf(t, err) != http.StatusInternalServerError {
		t.Fatalf("request signed with the retired certificate: %v, want 500", err)
	}
	if _, err := renewed.Idle(c); err != nil {
		t.Fatalf("request signed with the new certificate: %v", err)
	}
	newHash := certauth.HashCert(renewed.Cert)
	if got := certificatesOf(t, s, old.ID()); len(got) != 1 || got[0] != newHash {
		t.Fatalf("certificates after re-enrollment: %v, want only %s", got, newHash)
	}
	// The operator cuts the identity.
	if status, body := s.api(http.MethodDelete, "/v1/enrollments/"+old.ID()+"/certificates/"+newHash, nil); status != http.StatusOK {
		t.Fatalf("DELETE certificate: %d %s", status, body)
	}
	if _, err := renewed.Idle(c); statusOf(t, err) != http.StatusInternalServerError {
		t.Fatalf("request signed with a removed certificate: %v, want 500", err)
	}
	if status, _ := s.api(http.MethodDelete, "/v1/enrollments/"+old.ID()+"/certificates/"+newHash, nil); status != http.StatusNotFound {
		t.Fatalf("DELETE again: %d, want 404", status)
	}
	if status, _ := s.api(http.MethodGet, "/v1/enrollments/NO-SUCH-DEVICE/certificates", nil); status != http.StatusNotFound {
		t.Fatalf("certificates of an unknown enrollment: %d, want 404", status)
	}
}
