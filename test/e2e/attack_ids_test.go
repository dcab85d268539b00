package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage/file"
	"github.com/picomdm/picomdm/test/apiclient"
	"github.com/picomdm/picomdm/test/device"
)

// enrollmentIDs lists every enrollment the server has, through the
// inspection API.
func (s *server) enrollmentIDs() []string {
	s.t.Helper()
	var ids []string
	for cursor := ""; ; {
		status, body := s.api(http.MethodGet, "/v1/enrollments?limit=1000&cursor="+url.QueryEscape(cursor), nil)
		var page struct {
			Enrollments []struct {
				ID string `json:"id"`
			} `json:"enrollments"`
			NextCursor string `json:"next_cursor"`
		}
		if status != http.StatusOK || json.Unmarshal(body, &page) != nil {
			s.t.Fatalf("GET /v1/enrollments: %d %s", status, body)
		}
		for _, e := range page.Enrollments {
			ids = append(ids, e.ID)
		}
		if cursor = page.NextCursor; cursor == "" {
			slices.Sort(ids)
			return ids
		}
	}
}

// enrollmentType returns the type and parent the server has for id.
func (s *server) enrollmentType(id string) (typ, parent string) {
	s.t.Helper()
	status, body := s.api(http.MethodGet, "/v1/enrollments/"+url.PathEscape(id), nil)
	var e struct {
		Type     string  `json:"type"`
		ParentID *string `json:"parent_id"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &e) != nil {
		s.t.Fatalf("GET /v1/enrollments/%s: %d %s", id, status, body)
	}
	if e.ParentID != nil {
		parent = *e.ParentID
	}
	return e.Type, parent
}

// TestAttackColonUDID is the ':' collision: a device that enrolls with
// UDID "<victim UDID>:<victim's UserID>" (or EnrollmentID
// "<EnrollmentID>:<EnrollmentUserID>") has, without the check, the ID of
// the victim's user channel, so its Authenticate and TokenUpdate take the
// channel over (new push token) and its polls drain the victim's user
// commands. Every message of the attacker must be a 400, and the victim's
// user channel, its type, parent and queue, untouched.
func TestAttackColonUDID(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			s := startOn(t, backend.name, backend.dsn(t))
			for _, tc := range []struct {
				name string
				opts []device.Option
			}{
				{"macOS user channel", nil},
				{"User Enrollment user channel", []device.Option{device.WithUserEnrollment()}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					runColonAttack(t, s, tc.opts...)
				})
			}
		})
	}
}

func runColonAttack(t *testing.T, s *server, opts ...device.Option) {
	c := ctx(t)
	victim := s.enrolled(opts...)
	user := victim.UserChannel("5A1C2E3F-0B4D-4E6F-8A9B-"+fmt.Sprintf("%012d", len(s.enrollmentIDs())), "alice", "Alice")
	if err := user.Enroll(c); err != nil {
		t.Fatalf("user channel TokenUpdate: %v", err)
	}
	userType, userParent := s.enrollmentType(user.ID())
	uuid, raw := s.command("InstallProfile", user.ID())
	before := s.enrollmentIDs()

	// The attacker holds its own valid certificate from the device CA and
	// names itself after the victim's user channel.
	attacker := s.newDevice(opts...)
	if attacker.UDID != "" {
		attacker.UDID = user.ID()
	} else {
		attacker.EnrollmentID = user.ID()
	}
	if attacker.ID() != user.ID() {
		t.Fatalf("attacker's ID %q is not the victim's %q", attacker.ID(), user.ID())
	}
	if err := attacker.Authenticate(c); statusOf(t, err) != http.StatusBadRequest {
		t.Fatalf("Authenticate with a ':' in the identifier: %v, want 400", err)
	}
	if err := attacker.TokenUpdate(c); statusOf(t, err) != http.StatusBadRequest {
		t.Fatalf("TokenUpdate with a ':' in the identifier: %v, want 400", err)
	}
	if cmd, err := attacker.Idle(c); statusOf(t, err) != http.StatusBadRequest {
		t.Fatalf("Idle with a ':' in the identifier: %v %v, want 400", cmd, err)
	}
	if _, err := attacker.Report(c, uuid, mdm.StatusAcknowledged, nil); statusOf(t, err) != http.StatusBadRequest {
		t.Fatalf("Acknowledged with a ':' in the identifier: %v, want 400", err)
	}

	if after := s.enrollmentIDs(); !slices.Equal(after, before) {
		t.Errorf("enrollments changed: %v, were %v", after, before)
	}
	if typ, parent := s.enrollmentType(user.ID()); typ != userType || parent != userParent {
		t.Errorf("victim's user channel is now %s (parent %q), was %s (parent %q)", typ, parent, userType, userParent)
	}
	// The victim's user channel still gets its command, byte for byte,
	// and its push token is the victim's.
	assertQueueIntact(t, user, uuid, raw)
	if s.logContains(`status=400`) == 0 {
		t.Errorf("no log line for the refusals:\n%s", s.stderr.String())
	}
}

// commandUUIDOf returns the CommandUUID of a raw command.
func commandUUIDOf(t *testing.T, raw []byte) string {
	t.Helper()
	cmd, err := mdm.DecodeCommand(raw)
	if err != nil {
		t.Fatal(err)
	}
	return cmd.CommandUUID
}

// logContains counts the server's log lines containing sub.
func (s *server) logContains(sub string) int {
	return strings.Count(s.stderr.String(), sub)
}

// TestAttackBadIDs sends identifiers that break DESIGN §2's rules on the
// device path (over 255 bytes, control characters, a ':' in an
// EnrollmentID, a CommandUUID over 255 bytes): each message is a 400 with
// a log line, nothing is stored, and the server goes on serving. Exactly
// 255 bytes is accepted end to end.
func TestAttackBadIDs(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			s := startOn(t, backend.name, backend.dsn(t))
			c := ctx(t)
			good := s.enrolled()
			uuid, raw := s.command("ProfileList", good.ID())
			before := s.enrollmentIDs()

			over := strings.Repeat("A", mdm.MaxIDBytes+1)
			for _, tc := range []struct {
				name  string
				opts  []device.Option
				spoil func(d *device.Device) *device.Device // returns the channel to send as
			}{
				{"UDID of 256 bytes", nil, func(d *device.Device) *device.Device { d.UDID = over; return d }},
				{"UDID with a newline", nil, func(d *device.Device) *device.Device { d.UDID += "\n"; return d }},
				{"UDID with a tab", nil, func(d *device.Device) *device.Device { d.UDID = "\t" + d.UDID; return d }},
				{"UDID with DEL", nil, func(d *device.Device) *device.Device { d.UDID += "\x7f"; return d }},
				{"UDID with a C1 control", nil, func(d *device.Device) *device.Device { d.UDID += "\u0085"; return d }},
				{"EnrollmentID of 256 bytes", []device.Option{device.WithUserEnrollment()}, func(d *device.Device) *device.Device { d.EnrollmentID = over; return d }},
				{"EnrollmentID with ':'", []device.Option{device.WithUserEnrollment()}, func(d *device.Device) *device.Device { d.EnrollmentID += ":x"; return d }},
				{"UserID of 256 bytes", nil, func(d *device.Device) *device.Device { return d.UserChannel(over, "bob", "Bob") }},
				{"UserID with a CR", nil, func(d *device.Device) *device.Device { return d.UserChannel("5A1C2E3F\r", "bob", "Bob") }},
				{"Shared iPad UserShortName of 256 bytes", nil, func(d *device.Device) *device.Device { return d.SharedIPadUser(over) }},
				{"Shared iPad UserShortName with a newline", nil, func(d *device.Device) *device.Device { return d.SharedIPadUser("student\n7") }},
				{"EnrollmentUserID of 256 bytes", []device.Option{device.WithUserEnrollment()}, func(d *device.Device) *device.Device { return d.UserChannel(over, "", "") }},
			} {
				t.Run(tc.name, func(t *testing.T) {
					d := s.newDevice(tc.opts...)
					ch := tc.spoil(d)
					if ch != d {
						// A user channel of an enrolled device: only its
						// own identifier is wrong.
						if err := d.Enroll(c); err != nil {
							t.Fatalf("enrolling the device channel: %v", err)
						}
						before = append(before, d.ID())
						slices.Sort(before)
					}
					logged := s.logContains("status=400")
					if ch == d {
						if err := ch.Authenticate(c); statusOf(t, err) != http.StatusBadRequest {
							t.Fatalf("Authenticate: %v, want 400", err)
						}
					}
					if err := ch.TokenUpdate(c); statusOf(t, err) != http.StatusBadRequest {
						t.Fatalf("TokenUpdate: %v, want 400", err)
					}
					if _, err := ch.Idle(c); statusOf(t, err) != http.StatusBadRequest {
						t.Fatalf("Idle: %v, want 400", err)
					}
					if got := s.logContains("status=400") - logged; got < 2 {
						t.Errorf("%d log lines for the refusals, want one each", got)
					}
				})
			}
			if after := s.enrollmentIDs(); !slices.Equal(after, before) {
				t.Errorf("enrollments changed: %v, were %v", after, before)
			}

			t.Run("CommandUUID of 256 bytes in a report", func(t *testing.T) {
				if _, err := good.Report(c, strings.Repeat("C", mdm.MaxIDBytes+1), mdm.StatusAcknowledged, nil); statusOf(t, err) != http.StatusBadRequest {
					t.Fatalf("report: %v, want 400", err)
				}
				if _, err := good.Report(c, uuid+"\n", mdm.StatusAcknowledged, nil); statusOf(t, err) != http.StatusBadRequest {
					t.Fatalf("report with a newline in the CommandUUID: %v, want 400", err)
				}
				assertQueueIntact(t, good, uuid, raw)
			})

			t.Run("CommandUUID of 256 bytes enqueued", func(t *testing.T) {
				long := bytes.Replace(raw, []byte(uuid), []byte(strings.Repeat("C", mdm.MaxIDBytes+1)), 1)
				status, res := s.enqueue(long, good.ID())
				if status != http.StatusBadRequest || !strings.Contains(res.Error, "CommandUUID") {
					t.Fatalf("enqueue: %d %+v, want 400 naming the CommandUUID", status, res)
				}
				assertQueueIntact(t, good, uuid, raw)
			})

			t.Run("bad IDs on the API", func(t *testing.T) {
				_, other := apiclient.NewCommand("ProfileList", nil)
				for _, id := range []string{over, good.ID() + ":" + over, "a\nb", "a\x00", good.ID() + ":", ":" + good.ID()} {
					for _, form := range []string{"path", "body"} {
						var status int
						var body []byte
						var err error
						if form == "path" {
							status, body, err = apiclient.Enqueue(c, s.URL, apiKey, []string{good.ID(), id}, other, true)
						} else {
							status, body, err = (&apiclient.Client{BaseURL: s.URL, APIKey: apiKey}).EnqueueTargets(c, []string{good.ID(), id}, other, true)
						}
						if err != nil || status != http.StatusBadRequest || !bytes.Contains(body, []byte(`"error"`)) {
							t.Errorf("%s form, ID %.40q: %d %s %v, want 400", form, id, status, body, err)
						}
						status, body, err = apiclient.Push(c, s.URL, apiKey, []string{good.ID(), id})
						if err != nil || status != http.StatusBadRequest {
							t.Errorf("push, ID %.40q: %d %s %v, want 400", id, status, body, err)
						}
					}
				}
				// Nothing was queued: the device's one command is still
				// the first, and after it the queue is empty.
				assertQueueIntact(t, good, uuid, raw)
			})

			t.Run("255 bytes are accepted", func(t *testing.T) {
				part := func(prefix string) string { return prefix + strings.Repeat("E", mdm.MaxIDBytes-len(prefix)) }
				edge := s.newDevice()
				edge.UDID = part(backend.name)
				if err := edge.Enroll(c); err != nil {
					t.Fatalf("enroll with a 255-byte UDID: %v", err)
				}
				user := edge.UserChannel(part("user"), "edge", "Edge")
				if err := user.Enroll(c); err != nil {
					t.Fatalf("enroll a user channel with 255-byte UDID and UserID: %v", err)
				}
				shared := edge.SharedIPadUser(part("student"))
				if err := shared.Enroll(c); err != nil {
					t.Fatalf("enroll a Shared iPad user with 255-byte UDID and UserShortName: %v", err)
				}
				for i, ch := range []*device.Device{edge, user, shared} {
					uuid := part(fmt.Sprintf("cmd-%d-", i))
					_, cmd := apiclient.NewCommand("DeviceInformation", nil)
					cmd = bytes.Replace(cmd, []byte(commandUUIDOf(t, cmd)), []byte(uuid), 1)
					if status, res := s.enqueue(cmd, ch.ID()); status != http.StatusOK {
						t.Fatalf("enqueue a 255-byte CommandUUID to %d-byte %s: %d %+v", len(ch.ID()), ch.Type(), status, res)
					}
					got, err := ch.Idle(c)
					if err != nil || got == nil || got.CommandUUID != uuid || !bytes.Equal(got.Raw, cmd) {
						t.Fatalf("%s: Idle: %v %v, want the command", ch.Type(), got, err)
					}
					if next, err := ch.Report(c, uuid, mdm.StatusAcknowledged, nil); err != nil || next != nil {
						t.Fatalf("%s: Acknowledged: %v %v", ch.Type(), next, err)
					}
				}
			})
		})
	}
}

// TestEnqueueBodyForm100k queues one command for 100,000 enrollments on
// file storage with the body form (the IDs are some 3.7 MB, more than a
// request header may hold), then checks that -max-ids + 1 IDs are refused
// with nothing stored.
func TestEnqueueBodyForm100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 enrollments")
	}
	const n = 100000
	ca, err := device.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	dir := fastTempDir(t)
	dbDir := filepath.Join(dir, "db")
	ids := seedEnrollments(t, dbDir, n-1)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startWithArgs(t, ca, []string{"-ca", caFile, "-api", apiKey, "-storage", "file", "-storage-dsn", dbDir}, nil)
	c := ctx(t)
	// One real device among them, to see the command delivered.
	d := s.enrolled()
	ids = append(ids, d.ID())
	client := &apiclient.Client{BaseURL: s.URL, APIKey: apiKey}

	uuid, raw := apiclient.NewCommand("ProfileList", nil)
	status, body, err := client.EnqueueTargets(c, ids, raw, true)
	if err != nil || status != http.StatusOK {
		t.Fatalf("body-form enqueue to %d: %d %.300s %v", len(ids), status, body, err)
	}
	var res apiResult
	if err := json.Unmarshal(body, &res); err != nil || res.CommandUUID != uuid || !res.NoPush || len(res.Status) != 0 {
		t.Fatalf("answer %.300s (%v)", body, err)
	}
	assertQueueIntact(t, d, uuid, raw)

	// One more than -max-ids (default 100,000): 400, nothing stored, so
	// the same CommandUUID can then be queued.
	tooMany := append(slices.Clone(ids), "ONE-TOO-MANY")
	second, raw2 := apiclient.NewCommand("DeviceInformation", nil)
	status, body, err = client.EnqueueTargets(c, tooMany, raw2, true)
	if err != nil || status != http.StatusBadRequest || !bytes.Contains(body, []byte("-max-ids")) {
		t.Fatalf("enqueue to %d: %d %.300s %v, want 400", len(tooMany), status, body, err)
	}
	status, body, err = client.PushTargets(c, tooMany)
	if err != nil || status != http.StatusBadRequest {
		t.Fatalf("push to %d: %d %.300s %v, want 400", len(tooMany), status, body, err)
	}
	if status, body, err := client.EnqueueTargets(c, []string{d.ID()}, raw2, true); err != nil || status != http.StatusOK {
		t.Fatalf("%s after the refused enqueue: %d %s %v, want 200 (nothing stored before)", second, status, body, err)
	}
}

// fastTempDir is a temporary directory in memory (/dev/shm) where there
// is one, else t.TempDir(): 100,000 enrollments are some 300,000 files,
// which a disk takes most of a minute to create and remove.
func fastTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "picomdm-e2e-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	return dir
}

// seedEnrollments writes n enrolled device channels straight into a file
// storage directory (without fsync), the fastest way to a server that
// knows 100,000 enrollments; signed enrollments through HTTP would take
// minutes.
func seedEnrollments(t *testing.T, dir string, n int) []string {
	t.Helper()
	store, err := file.New(dir, file.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%08X-0000-4000-8000-%012X", i, i)
	}
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				r := mdm.NewRequest(t.Context(), nil)
				r.EnrollID = &mdm.EnrollID{Type: mdm.Device, ID: ids[i]}
				msg := &mdm.TokenUpdate{
					MessageType: mdm.MessageType{MessageType: mdm.MessageTokenUpdate},
					Push:        mdm.Push{PushMagic: "magic", Token: []byte{byte(i)}, Topic: device.DefaultTopic},
				}
				msg.Raw.Raw = []byte("<plist/>")
				if err := store.StoreTokenUpdate(r, msg); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestMaxIDsFlag checks -max-ids and its PICOMDM_MAX_IDS variable at the
// edge, on both forms of enqueue and push: the cap passes, one more is a
// 400 with nothing queued.
func TestMaxIDsFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"flag", []string{"-max-ids", "3"}, nil},
		{"environment", nil, map[string]string{"PICOMDM_MAX_IDS": "3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := device.NewCA()
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			caFile := filepath.Join(dir, "ca.pem")
			if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"-ca", caFile, "-api", apiKey, "-storage-dsn", filepath.Join(dir, "db")}, tc.args...)
			s := startWithArgs(t, ca, args, tc.env)
			c := ctx(t)
			var ids []string
			for range 3 {
				ids = append(ids, s.enrolled().ID())
			}
			client := &apiclient.Client{BaseURL: s.URL, APIKey: apiKey}
			raw := mustNewCommand()
			tooMany := append(slices.Clone(ids), ids[0]+"-4")
			if status, body, _ := client.Enqueue(c, tooMany, raw, true); status != http.StatusBadRequest {
				t.Errorf("path form, 4 IDs: %d %s, want 400", status, body)
			}
			if status, body, _ := client.EnqueueTargets(c, tooMany, raw, true); status != http.StatusBadRequest {
				t.Errorf("body form, 4 IDs: %d %s, want 400", status, body)
			}
			if status, body, _ := client.Push(c, tooMany); status != http.StatusBadRequest {
				t.Errorf("push, 4 IDs: %d %s, want 400", status, body)
			}
			if status, body, _ := client.PushTargets(c, tooMany); status != http.StatusBadRequest {
				t.Errorf("body-form push, 4 IDs: %d %s, want 400", status, body)
			}
			// Nothing was stored: the same command now queues for 3.
			if status, body, err := client.EnqueueTargets(c, ids, raw, true); err != nil || status != http.StatusOK {
				t.Fatalf("body form, 3 IDs: %d %s %v, want 200", status, body, err)
			}
			if status, body, err := client.Enqueue(c, ids, mustNewCommand(), true); err != nil || status != http.StatusOK {
				t.Fatalf("path form, 3 IDs: %d %s %v, want 200", status, body, err)
			}
		})
	}
}

// mustNewCommand returns a fresh ProfileList command.
func mustNewCommand() []byte {
	_, raw := apiclient.NewCommand("ProfileList", nil)
	return raw
}
