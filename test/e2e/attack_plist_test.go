package e2e

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/test/device"
)

// plistBombSize is how large the directive bombs are: just under the
// default -max-body-bytes (4 MiB), so that they reach the plist decoder.
// Before the depth limit saw through directives, a body this size cost
// the server about 160 MB of stack; ten times as much overflowed it,
// killing the process.
const plistBombSize = 4<<20 - 1<<10

// bombDoctype is the DOCTYPE of the bombs: an internal subset that is never
// closed, which encoding/xml (and so micromdm/plist) ends at its '>',
// while a scan looking for "]>" took everything after it for the subset.
const bombDoctype = "<!DOCTYPE plist [>"

// directiveBomb writes msg as a plist whose DOCTYPE is bombDoctype and whose
// dictionary gets one more key, holding arrays nested about size bytes
// deep. closed says the arrays are closed again, so that the body is a
// well-formed message, which a decoder without a depth limit accepts;
// otherwise the body ends inside them.
func directiveBomb(t *testing.T, msg map[string]any, size int, closed bool) []byte {
	t.Helper()
	raw, err := plist.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	start := strings.Index(doc, "<!DOCTYPE")
	end := strings.LastIndex(doc, "</dict>")
	if start < 0 || end < 0 {
		t.Fatalf("unexpected plist %q", doc)
	}
	stop := start + strings.IndexByte(doc[start:], '>') + 1
	var b strings.Builder
	b.WriteString(doc[:start] + bombDoctype + doc[stop:end] + "<key>Nested</key>")
	if closed {
		levels := (size - b.Len()) / len("<array></array>")
		b.WriteString(strings.Repeat("<array>", levels) + strings.Repeat("</array>", levels) + doc[end:])
	} else {
		b.WriteString(strings.Repeat("<array>", (size-b.Len())/len("<array>")))
	}
	return []byte(b.String())
}

// TestAttackPlistDirectiveBomb sends directive bombs signed by an enrolled
// device, as a check-in (TokenUpdate) and as a command report (Idle),
// through the real server on every backend: each is refused with 400 and
// a log line, the device's queue is as it was, and the server goes on
// serving it.
func TestAttackPlistDirectiveBomb(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			s := startOn(t, backend.name, backend.dsn(t))
			runDirectiveBombs(t, s)
		})
	}
}

func runDirectiveBombs(t *testing.T, s *server) {
	c := ctx(t)
	d := s.enrolled()
	uuid, raw := s.command("ProfileList", d.ID())
	tokenUpdate := map[string]any{
		"MessageType": mdm.MessageTokenUpdate, "UDID": d.UDID,
		"Topic": d.Topic, "PushMagic": d.PushMagic, "Token": d.Token,
	}
	idle := map[string]any{"UDID": d.UDID, "Status": mdm.StatusIdle}

	refused := 0
	for _, tc := range []struct {
		name, contentType string
		msg               map[string]any
	}{
		{"check-in", device.ContentTypeCheckin, tokenUpdate},
		{"command report", device.ContentTypeReport, idle},
	} {
		for _, closed := range []bool{true, false} {
			name := fmt.Sprintf("%s, closed %v", tc.name, closed)
			body := directiveBomb(t, tc.msg, plistBombSize, closed)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			status, _, err := d.Send(c, s.mdmURL(), tc.contentType, body, true)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			// What the request cost the process (server and signing client
			// together), for the log only.
			t.Logf("%s: %d bytes answered %d in %v; %d MiB allocated, stack in use %d KiB",
				name, len(body), status, elapsed.Round(time.Millisecond),
				(after.TotalAlloc-before.TotalAlloc)>>20, after.StackInuse>>10)
			if status != http.StatusBadRequest {
				t.Errorf("%s: answered %d, want 400", name, status)
				continue
			}
			refused++
		}
	}

	if got := strings.Count(s.stderr.String(), "nested too deep"); got < refused {
		t.Errorf("%d refusals logged as nesting too deep, want %d", got, refused)
	}
	// The server still serves the device: its queue is untouched, the
	// command can be answered, and a TokenUpdate goes through.
	assertQueueIntact(t, d, uuid, raw)
	if next, err := d.Report(c, uuid, mdm.StatusAcknowledged, nil); err != nil || next != nil {
		t.Fatalf("after the bombs: %v %v", next, err)
	}
	if err := d.TokenUpdate(c); err != nil {
		t.Fatalf("TokenUpdate after the bombs: %v", err)
	}
}
