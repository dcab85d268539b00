package e2e

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/test/device"
)

// TestEnrollAndReceiveCommand is the basic life: enroll, queue a command,
// the device fetches it byte-exact, acknowledges it, and the queue is then
// empty (200 with an empty body).
func TestEnrollAndReceiveCommand(t *testing.T) {
	s := startServer(t)
	d := s.enrolled()
	c := ctx(t)

	cmd, err := d.Idle(c)
	if err != nil || cmd != nil {
		t.Fatalf("empty queue: got %v, %v; want 200 with empty body", cmd, err)
	}
	uuid, raw := s.command("ProfileList", d.ID())
	cmd, err = d.Idle(c)
	if err != nil {
		t.Fatal(err)
	}
	if cmd == nil || cmd.CommandUUID != uuid || cmd.RequestType != "ProfileList" {
		t.Fatalf("got command %+v, want %s", cmd, uuid)
	}
	if !bytes.Equal(cmd.Raw, raw) {
		t.Fatalf("delivered bytes differ from enqueued bytes:\n%s\n---\n%s", cmd.Raw, raw)
	}
	next, err := d.Report(c, uuid, mdm.StatusAcknowledged, nil)
	if err != nil || next != nil {
		t.Fatalf("after ack: %v, %v; want empty queue", next, err)
	}
}

// TestQueueSemantics covers DESIGN §2's queue rules through the server.
func TestQueueSemantics(t *testing.T) {
	s := startServer(t)
	c := ctx(t)

	t.Run("FIFO", func(t *testing.T) {
		d := s.enrolled()
		var want []string
		for i := 0; i < 5; i++ {
			u, _ := s.command("DeviceInformation", d.ID())
			want = append(want, u)
		}
		got, err := d.Drain(c, device.Answer(mdm.StatusAcknowledged))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("drained %d commands, want %d", len(got), len(want))
		}
		for i := range want {
			if got[i].CommandUUID != want[i] {
				t.Fatalf("command %d = %s, want %s (FIFO)", i, got[i].CommandUUID, want[i])
			}
		}
	})

	t.Run("unanswered command is handed out again", func(t *testing.T) {
		d := s.enrolled()
		u, _ := s.command("SecurityInfo", d.ID())
		for i := 0; i < 3; i++ {
			cmd, err := d.Idle(c)
			if err != nil || cmd == nil || cmd.CommandUUID != u {
				t.Fatalf("poll %d: %v %v; want %s again", i, cmd, err, u)
			}
		}
	})

	t.Run("final statuses", func(t *testing.T) {
		for _, status := range []string{mdm.StatusAcknowledged, mdm.StatusError, mdm.StatusCommandFormatError} {
			d := s.enrolled()
			u1, _ := s.command("ProfileList", d.ID())
			u2, _ := s.command("ProfileList", d.ID())
			if cmd, _ := d.Idle(c); cmd == nil || cmd.CommandUUID != u1 {
				t.Fatalf("%s: first command not delivered", status)
			}
			extra := map[string]any(nil)
			if status == mdm.StatusError {
				extra = device.ErrorChain(12021, "MCMDMErrorDomain", "test error")
			}
			next, err := d.Report(c, u1, status, extra)
			if err != nil || next == nil || next.CommandUUID != u2 {
				t.Fatalf("%s: after report got %v %v, want %s", status, next, err, u2)
			}
			next, err = d.Report(c, u2, status, extra)
			if err != nil || next != nil {
				t.Fatalf("%s: queue should be empty, got %v %v", status, next, err)
			}
			if cmd, _ := d.Idle(c); cmd != nil {
				t.Fatalf("%s is final, but %s came back", status, cmd.CommandUUID)
			}
		}
	})

	t.Run("NotNow", func(t *testing.T) {
		d := s.enrolled()
		u1, _ := s.command("InstallProfile", d.ID())
		u2, _ := s.command("ProfileList", d.ID())
		if cmd, _ := d.Idle(c); cmd == nil || cmd.CommandUUID != u1 {
			t.Fatal("first command not delivered")
		}
		// Right after NotNow, the NotNow'd command is skipped.
		next, err := d.Report(c, u1, mdm.StatusNotNow, nil)
		if err != nil || next == nil || next.CommandUUID != u2 {
			t.Fatalf("after NotNow got %v %v, want %s", next, err, u2)
		}
		next, err = d.Report(c, u2, mdm.StatusAcknowledged, nil)
		if err != nil || next != nil {
			t.Fatalf("NotNow'd command must be skipped for the rest of the exchange, got %v %v", next, err)
		}
		// The next Idle makes it eligible again.
		next, err = d.Idle(c)
		if err != nil || next == nil || next.CommandUUID != u1 {
			t.Fatalf("Idle after NotNow: got %v %v, want %s again", next, err, u1)
		}
		if next, err = d.Report(c, u1, mdm.StatusAcknowledged, nil); err != nil || next != nil {
			t.Fatalf("after ack: %v %v", next, err)
		}
	})

	t.Run("unknown and duplicate acks are harmless", func(t *testing.T) {
		d := s.enrolled()
		u, _ := s.command("ProfileList", d.ID())
		// An ack for a command the server never queued: 200, queue intact.
		next, err := d.Report(c, "no-such-command", mdm.StatusAcknowledged, nil)
		if err != nil || next == nil || next.CommandUUID != u {
			t.Fatalf("unknown ack: %v %v; want 200 and the pending command", next, err)
		}
		if _, err := d.Report(c, u, mdm.StatusAcknowledged, nil); err != nil {
			t.Fatal(err)
		}
		// The same ack again, and a late NotNow: still 200, nothing returns.
		for _, st := range []string{mdm.StatusAcknowledged, mdm.StatusNotNow, mdm.StatusError} {
			next, err := d.Report(c, u, st, nil)
			if err != nil || next != nil {
				t.Fatalf("repeat %s for a final command: %v %v", st, next, err)
			}
		}
		if cmd, _ := d.Idle(c); cmd != nil {
			t.Fatalf("final command came back: %s", cmd.CommandUUID)
		}
	})

	t.Run("multi-target enqueue", func(t *testing.T) {
		a, b := s.enrolled(), s.enrolled()
		u, raw := s.command("DeviceInformation", a.ID(), b.ID())
		for _, d := range []*device.Device{a, b} {
			cmd, err := d.Idle(c)
			if err != nil || cmd == nil || cmd.CommandUUID != u || !bytes.Equal(cmd.Raw, raw) {
				t.Fatalf("%s: got %v %v", d.ID(), cmd, err)
			}
		}
	})
}

// TestChannels enrolls every channel kind and checks each has its own
// queue under the enrollment ID DESIGN §2 gives.
func TestChannels(t *testing.T) {
	s := startServer(t)
	c := ctx(t)
	mac := s.enrolled()
	ipad := s.enrolled()
	ue := s.enrolled(device.WithUserEnrollment())
	channels := map[string]*device.Device{
		"device":                   mac,
		"user":                     mac.UserChannel("A1B2C3D4-0000-0000-0000-000000000501", "alice", "Alice Appleseed"),
		"shared iPad":              ipad.SharedIPadUser("bob"),
		"user enrollment (device)": ue,
		"user enrollment":          ue.UserChannel("UE-USER-1", "carol", "Carol"),
	}
	wantIDs := map[string]string{
		"device":                   mac.UDID,
		"user":                     mac.UDID + ":A1B2C3D4-0000-0000-0000-000000000501",
		"shared iPad":              ipad.UDID + ":bob",
		"user enrollment (device)": ue.EnrollmentID,
		"user enrollment":          ue.EnrollmentID + ":" + channels["user enrollment"].EnrollmentUserID,
	}
	for name, ch := range channels {
		if ch.ID() != wantIDs[name] {
			t.Fatalf("%s: simulator ID %q, want %q", name, ch.ID(), wantIDs[name])
		}
		if ch.Type().IsUserChannel() {
			if err := ch.TokenUpdate(c); err != nil {
				t.Fatalf("%s TokenUpdate: %v", name, err)
			}
		}
	}
	uuids := map[string]string{}
	for name, ch := range channels {
		uuids[name], _ = s.command("ProfileList", ch.ID())
	}
	for name, ch := range channels {
		cmd, err := ch.Idle(c)
		if err != nil || cmd == nil || cmd.CommandUUID != uuids[name] {
			t.Fatalf("%s (%s): got %v %v, want its own command %s", name, ch.ID(), cmd, err, uuids[name])
		}
		if _, err := ch.Report(c, cmd.CommandUUID, mdm.StatusAcknowledged, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReenrollAndCheckOut: Authenticate starts clean (queue of the device
// and its user channels cleared, bootstrap token cleared); CheckOut
// disables the device and its user channels.
func TestReenrollAndCheckOut(t *testing.T) {
	s := startServer(t)
	c := ctx(t)
	d := s.enrolled()
	user := d.UserChannel("USER-1", "alice", "Alice")
	if err := user.TokenUpdate(c); err != nil {
		t.Fatal(err)
	}
	if err := d.SetBootstrapToken(c, []byte("bootstrap-secret")); err != nil {
		t.Fatal(err)
	}
	tok, err := d.GetBootstrapToken(c)
	if err != nil || string(tok) != "bootstrap-secret" {
		t.Fatalf("GetBootstrapToken = %q, %v", tok, err)
	}
	s.command("ProfileList", d.ID(), user.ID())

	info, err := s.app.Store.RetrievePushInfo(c, []string{d.ID(), user.ID()})
	if err != nil || len(info) != 2 {
		t.Fatalf("push info before re-enroll: %v %v", info, err)
	}

	if err := d.Authenticate(c); err != nil {
		t.Fatal(err)
	}
	// Disabled until the next TokenUpdate.
	if info, _ := s.app.Store.RetrievePushInfo(c, []string{d.ID(), user.ID()}); len(info) != 0 {
		t.Fatalf("re-enrolling device still pushable: %v", info)
	}
	if err := d.TokenUpdate(c); err != nil {
		t.Fatal(err)
	}
	if err := user.TokenUpdate(c); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []*device.Device{d, user} {
		if cmd, _ := ch.Idle(c); cmd != nil {
			t.Fatalf("%s: queue survived re-enroll: %s", ch.ID(), cmd.CommandUUID)
		}
	}
	if tok, err := d.GetBootstrapToken(c); err != nil || tok != nil {
		t.Fatalf("bootstrap token survived re-enroll: %q %v", tok, err)
	}

	if err := d.CheckOut(c); err != nil {
		t.Fatal(err)
	}
	if info, _ := s.app.Store.RetrievePushInfo(c, []string{d.ID(), user.ID()}); len(info) != 0 {
		t.Fatalf("checked-out device or its user channel still enabled: %v", info)
	}
}

// TestCheckinStatusCodes covers the check-in table's answers.
func TestCheckinStatusCodes(t *testing.T) {
	c := ctx(t)
	t.Run("UserAuthenticate declined by default", func(t *testing.T) {
		s := startServer(t)
		d := s.enrolled()
		_, err := d.UserChannel("NETUSER", "net", "Net User").UserAuthenticate(c, "")
		if got := statusOf(t, err); got != http.StatusGone {
			t.Fatalf("UserAuthenticate: %d, want 410", got)
		}
		// One that carries a DigestResponse is answered 200 empty without
		// -ua-zl-dc too, as NanoMDM answers it.
		body, err := d.UserChannel("NETUSER", "net", "Net User").UserAuthenticate(c, "digest-response")
		if err != nil || len(body) != 0 {
			t.Fatalf("UserAuthenticate with a DigestResponse: %q %v; want 200 empty", body, err)
		}
	})
	t.Run("UserAuthenticate zero-length digest challenge", func(t *testing.T) {
		s := startServer(t, "-ua-zl-dc")
		d := s.enrolled()
		u := d.UserChannel("NETUSER", "net", "Net User")
		body, err := u.UserAuthenticate(c, "")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body), "<key>DigestChallenge</key>") || !strings.Contains(string(body), "<string></string>") {
			t.Fatalf("first UserAuthenticate answer %q: want an empty DigestChallenge", body)
		}
		body, err = u.UserAuthenticate(c, "digest-response")
		if err != nil || len(body) != 0 {
			t.Fatalf("second UserAuthenticate: %q %v; want 200 empty", body, err)
		}
	})
	t.Run("GetBootstrapToken with none is 200 empty", func(t *testing.T) {
		s := startServer(t)
		d := s.enrolled()
		tok, err := d.GetBootstrapToken(c)
		if err != nil || tok != nil {
			t.Fatalf("got %q %v", tok, err)
		}
	})
	t.Run("unconfigured DeclarativeManagement and GetToken are 500", func(t *testing.T) {
		s := startServer(t)
		d := s.enrolled()
		_, err := d.DeclarativeManagement(c, "tokens", nil)
		if got := statusOf(t, err); got != http.StatusInternalServerError {
			t.Fatalf("DeclarativeManagement: %d", got)
		}
		_, err = d.GetToken(c, "com.apple.maid")
		if got := statusOf(t, err); got != http.StatusInternalServerError {
			t.Fatalf("GetToken: %d", got)
		}
	})
}
