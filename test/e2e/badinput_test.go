package e2e

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/test/device"
)

// assertQueueIntact checks the device's pending command is still there and
// unchanged: bad input must leave storage as it was.
func assertQueueIntact(t *testing.T, d *device.Device, uuid string, raw []byte) {
	t.Helper()
	cmd, err := d.Idle(ctx(t))
	if err != nil || cmd == nil || cmd.CommandUUID != uuid || !bytes.Equal(cmd.Raw, raw) {
		t.Fatalf("queue disturbed: got %v %v, want %s", cmd, err, uuid)
	}
}

func reportBody(t *testing.T, keys map[string]any) []byte {
	t.Helper()
	b, err := plist.Marshal(keys)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSpoofing: identities that must not be accepted.
func TestSpoofing(t *testing.T) {
	s := startServer(t)
	c := ctx(t)
	victim := s.enrolled()
	uuid, raw := s.command("EraseDevice", victim.ID())
	idle := reportBody(t, map[string]any{"UDID": victim.UDID, "Status": "Idle"})

	t.Run("certificate from another CA", func(t *testing.T) {
		otherCA, err := device.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		rogue, err := device.New(otherCA, s.mdmURL(), device.WithUDID(victim.UDID))
		if err != nil {
			t.Fatal(err)
		}
		status, _, err := rogue.Send(c, s.mdmURL(), device.ContentTypeReport, idle, true)
		if err != nil || status != http.StatusBadRequest {
			t.Fatalf("other CA: %d %v, want 400", status, err)
		}
		if err := rogue.Authenticate(c); statusOf(t, err) != http.StatusBadRequest {
			t.Fatalf("Authenticate from other CA: %v", err)
		}
	})
	t.Run("another enrolled device's certificate", func(t *testing.T) {
		attacker := s.enrolled()
		// The attacker signs with its own valid certificate but claims the
		// victim's UDID: cert-auth refuses (500, never 401).
		status, _, err := attacker.Send(c, s.mdmURL(), device.ContentTypeReport, idle, true)
		if err != nil || status != http.StatusInternalServerError {
			t.Fatalf("cross-device report: %d %v, want 500", status, err)
		}
		attacker.UDID = victim.UDID
		if err := attacker.Authenticate(c); statusOf(t, err) != http.StatusInternalServerError {
			t.Fatalf("Authenticate as victim with attacker's cert: %v, want 500", err)
		}
	})
	t.Run("garbled signature", func(t *testing.T) {
		req, err := victim.NewRequest(c, s.mdmURL(), device.ContentTypeReport, idle, true)
		if err != nil {
			t.Fatal(err)
		}
		sig := []byte(req.Header.Get(device.SignatureHeader))
		sig[len(sig)/2] ^= 0x01
		req.Header.Set(device.SignatureHeader, string(sig))
		if got := do(t, req); got != http.StatusBadRequest {
			t.Fatalf("garbled signature: %d", got)
		}
		req, _ = victim.NewRequest(c, s.mdmURL(), device.ContentTypeReport, idle, true)
		req.Header.Set(device.SignatureHeader, "not base64 at all!")
		if got := do(t, req); got != http.StatusBadRequest {
			t.Fatalf("non-base64 signature: %d", got)
		}
	})
	t.Run("signature over a different body", func(t *testing.T) {
		other := reportBody(t, map[string]any{"UDID": victim.UDID, "Status": "Acknowledged", "CommandUUID": uuid})
		req, _ := victim.NewRequest(c, s.mdmURL(), device.ContentTypeReport, other, false)
		sig, err := victim.SignBody(idle)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(device.SignatureHeader, sig)
		if got := do(t, req); got != http.StatusBadRequest {
			t.Fatalf("signature for another body: %d", got)
		}
	})
	t.Run("no signature", func(t *testing.T) {
		status, _, err := victim.Send(c, s.mdmURL(), device.ContentTypeReport, idle, false)
		if err != nil || status != http.StatusBadRequest {
			t.Fatalf("unsigned: %d %v", status, err)
		}
	})
	t.Run("expired and not-client-auth certificates", func(t *testing.T) {
		expired := s.newDevice(device.WithUDID(victim.UDID), device.WithIssueOptions(
			device.WithNotBefore(time.Now().Add(-48*time.Hour)), device.WithNotAfter(time.Now().Add(-24*time.Hour))))
		if status, _, _ := expired.Send(c, s.mdmURL(), device.ContentTypeReport, idle, true); status != http.StatusBadRequest {
			t.Fatalf("expired cert: %d", status)
		}
		serverAuth := s.newDevice(device.WithUDID(victim.UDID), device.WithIssueOptions(device.WithoutClientAuth()))
		if status, _, _ := serverAuth.Send(c, s.mdmURL(), device.ContentTypeReport, idle, true); status != http.StatusBadRequest {
			t.Fatalf("cert without client-auth usage: %d", status)
		}
	})
	// None of it touched the victim's queue.
	assertQueueIntact(t, victim, uuid, raw)
}

func do(t *testing.T, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestBadBodies: undecodable and invalid messages get 400, oversized
// bodies 413, and none of them changes storage.
func TestBadBodies(t *testing.T) {
	s := startServer(t, "-max-body-bytes", "65536")
	c := ctx(t)
	d := s.enrolled()
	uuid, raw := s.command("ProfileList", d.ID())

	cases := []struct {
		name        string
		contentType string
		body        []byte
		want        int
	}{
		{"garbage check-in", device.ContentTypeCheckin, []byte("this is not a plist"), 400},
		{"empty check-in", device.ContentTypeCheckin, nil, 400},
		{"unknown MessageType", device.ContentTypeCheckin, reportBody(t, map[string]any{"MessageType": "Bogus", "UDID": d.UDID}), 400},
		{"missing MessageType", device.ContentTypeCheckin, reportBody(t, map[string]any{"UDID": d.UDID}), 400},
		{"check-in without UDID or EnrollmentID", device.ContentTypeCheckin, reportBody(t, map[string]any{"MessageType": "TokenUpdate"}), 400},
		{"garbage report", device.ContentTypeReport, []byte("<plist><dict><key>"), 400},
		{"report with empty Status", device.ContentTypeReport, reportBody(t, map[string]any{"UDID": d.UDID, "CommandUUID": uuid, "Status": ""}), 400},
		{"report without Status", device.ContentTypeReport, reportBody(t, map[string]any{"UDID": d.UDID, "CommandUUID": uuid}), 400},
		{"truncated binary plist", device.ContentTypeReport, []byte("bplist00\xd1\x01\x02"), 400},
		{"oversized body", device.ContentTypeReport, bytes.Repeat([]byte("A"), 70000), 413},
	}
	for _, tc := range cases {
		status, _, err := d.Send(c, s.mdmURL(), tc.contentType, tc.body, true)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if status != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, status, tc.want)
		}
	}
	assertQueueIntact(t, d, uuid, raw)
	// And the command can still be answered normally.
	if next, err := d.Report(c, uuid, mdm.StatusAcknowledged, nil); err != nil || next != nil {
		t.Fatalf("after bad input: %v %v", next, err)
	}
	if !strings.Contains(s.stderr.String(), "400") {
		t.Error("bad input was not logged")
	}
}
