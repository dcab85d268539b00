package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/picomdm/picomdm/test/wait"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picomdm/picomdm/test/apiclient"
	"github.com/picomdm/picomdm/test/device"
)

// The durable webhook outbox (issue #13), end to end: no event is lost to
// a receiver that is down or to a restart, order per enrollment holds, a
// refused event is set aside without holding anything else back, and the
// API lists, redelivers and drops set-aside events.

// outboxFlags are the webhook flags every outbox test runs with: an
// event is retried for far longer than any test runs while the receiver
// is unreachable (nothing may be set aside for being late).
var outboxFlags = []string{"-webhook-retry-for", "1h"}

// hookEvent is one webhook event a receiver saw.
type hookEvent struct {
	EventID, Topic, EnrollmentID string
	// Key is what the test orders events by: the topic, and for a report
	// its status and command UUID.
	Key string
	// Path is the request path (which replica sent it, when replicas are
	// given different -webhook-url paths).
	Path string
}

// parseHookEvent decodes a webhook body.
func parseHookEvent(body []byte) (hookEvent, error) {
	type ids struct {
		ID string `json:"id"`
	}
	var ev struct {
		Topic        string `json:"topic"`
		EventID      string `json:"event_id"`
		CheckinEvent *struct {
			IDs ids `json:"ids"`
		} `json:"checkin_event"`
		AcknowledgeEvent *struct {
			IDs         ids    `json:"ids"`
			Status      string `json:"status"`
			CommandUUID string `json:"command_uuid"`
		} `json:"acknowledge_event"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return hookEvent{}, fmt.Errorf("webhook body %q: %w", body, err)
	}
	he := hookEvent{EventID: ev.EventID, Topic: ev.Topic, Key: ev.Topic}
	switch {
	case ev.CheckinEvent != nil:
		he.EnrollmentID = ev.CheckinEvent.IDs.ID
	case ev.AcknowledgeEvent != nil:
		he.EnrollmentID = ev.AcknowledgeEvent.IDs.ID
		he.Key = strings.TrimSpace(ev.Topic + " " + ev.AcknowledgeEvent.Status + " " + ev.AcknowledgeEvent.CommandUUID)
	}
	if he.EventID == "" || he.EnrollmentID == "" {
		return he, fmt.Errorf("webhook body without event_id or enrollment: %s", body)
	}
	return he, nil
}

// hookReceiver is a webhook receiver that can go down (its port closed:
// connection refused) and come back on the same address, refuse topics
// with a 500, and hold requests unanswered.
type hookReceiver struct {
	t    *testing.T
	addr string

	mu       sync.Mutex
	srv      *http.Server
	refuse   map[string]bool // topics answered 500
	hold     chan struct{}   // non-nil: requests wait until it is closed
	held     map[string]int  // requests waiting, by path
	received []hookEvent     // every event that reached the receiver
	accepted []hookEvent     // the events answered 2xx, in arrival order
	refused  int
}

// newHookReceiver starts a receiver on a free loopback port.
func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	h := &hookReceiver{t: t, addr: "127.0.0.1:0", refuse: map[string]bool{}, held: map[string]int{}}
	h.up()
	t.Cleanup(h.down)
	return h
}

// url returns the receiver's URL with path.
func (h *hookReceiver) url(path string) string { return "http://" + h.addr + path }

// up (re)starts listening on the receiver's address.
func (h *hookReceiver) up() {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.srv != nil {
		return
	}
	var l net.Listener
	var err error
	// The port may linger briefly after down; retry until bound.
	wait.For(h.t, 5*time.Second, func() bool {
		l, err = net.Listen("tcp", h.addr)
		return err == nil
	}, func() string { return fmt.Sprintf("the receiver to listen on %s (%v)", h.addr, err) })
	h.addr = l.Addr().String()
	h.srv = &http.Server{Handler: http.HandlerFunc(h.serve), ReadHeaderTimeout: 5 * time.Second}
	go h.srv.Serve(l)
}

// down closes the receiver's port and every connection to it.
func (h *hookReceiver) down() {
	h.mu.Lock()
	srv := h.srv
	h.srv = nil
	h.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	ev, err := parseHookEvent(body)
	if err != nil {
		h.t.Error(err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ev.Path = r.URL.Path
	h.mu.Lock()
	h.received = append(h.received, ev)
	hold := h.hold
	if hold != nil {
		h.held[r.URL.Path]++
	}
	h.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done(): // the sender went away
		}
		h.mu.Lock()
		h.held[r.URL.Path]--
		h.mu.Unlock()
		if r.Context().Err() != nil {
			return
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refuse[ev.Topic] {
		h.refused++
		http.Error(w, "not handled", http.StatusInternalServerError)
		return
	}
	h.accepted = append(h.accepted, ev)
	w.WriteHeader(http.StatusOK)
}

// setRefused makes the receiver answer 500 to topic (or stop doing so).
func (h *hookReceiver) setRefused(topic string, refused bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refuse[topic] = refused
}

// holdRequests makes later requests wait unanswered; the function it
// returns lets them (and every later one) through.
func (h *hookReceiver) holdRequests() (release func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := make(chan struct{})
	h.hold = ch
	return sync.OnceFunc(func() {
		h.mu.Lock()
		h.hold = nil
		h.mu.Unlock()
		close(ch)
	})
}

// heldBy returns how many requests to path are waiting, and in all.
func (h *hookReceiver) heldBy(path string) (byPath, total int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for p, n := range h.held {
		total += n
		if p == path {
			byPath = n
		}
	}
	return byPath, total
}

// snapshot returns copies of the received and accepted events.
func (h *hookReceiver) snapshot() (received, accepted []hookEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.received), slices.Clone(h.accepted)
}

// eventually polls cond every 10 ms until it is true, failing the test
// with what() after timeout.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	wait.For(t, timeout, cond, what)
}

// byEnrollment groups events' keys by enrollment, in arrival order; with
// firstOnly, an event_id seen before is skipped.
func byEnrollment(events []hookEvent, firstOnly bool) map[string][]string {
	out := make(map[string][]string)
	seen := make(map[string]bool)
	for _, ev := range events {
		if firstOnly && seen[ev.EventID] {
			continue
		}
		seen[ev.EventID] = true
		out[ev.EnrollmentID] = append(out[ev.EnrollmentID], ev.Key)
	}
	return out
}

// duplicateIDs returns the event_ids that occur more than once.
func duplicateIDs(events []hookEvent) []string {
	count := make(map[string]int)
	var dups []string
	for _, ev := range events {
		if count[ev.EventID]++; count[ev.EventID] == 2 {
			dups = append(dups, ev.EventID)
		}
	}
	return dups
}

// allArrived reports whether got holds every key of want, for every
// enrollment, in want's order (got may have more only if extra).
func allArrived(got, want map[string][]string) bool {
	for id, keys := range want {
		if len(got[id]) < len(keys) {
			return false
		}
	}
	return true
}

// retarget is a transport that sends every request to the current
// server, so that a device keeps talking to "the server" across restarts
// (as a device keeps its ServerURL behind a load balancer).
type retarget struct {
	target atomic.Pointer[url.URL]
}

func (rt *retarget) set(rawURL string) {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(err)
	}
	rt.target.Store(u)
}

func (rt *retarget) RoundTrip(req *http.Request) (*http.Response, error) {
	u := rt.target.Load()
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host, req.Host = u.Scheme, u.Host, u.Host
	return http.DefaultTransport.RoundTrip(req)
}

// fleetOf makes n devices from ca talking through client.
func fleetOf(t *testing.T, ca *device.CA, client *http.Client, n int) []*device.Device {
	t.Helper()
	fleet := make([]*device.Device, n)
	for i := range fleet {
		d, err := device.New(ca, "http://picomdm.invalid/mdm", device.WithKeyType(device.ECDSAP256), device.WithHTTPClient(client))
		if err != nil {
			t.Fatal(err)
		}
		fleet[i] = d
	}
	return fleet
}

// eventLog is what a fleet's devices sent, as event keys per enrollment.
type eventLog struct {
	mu   sync.Mutex
	want map[string][]string
}

func (l *eventLog) add(id string, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.want == nil {
		l.want = make(map[string][]string)
	}
	l.want[id] = append(l.want[id], keys...)
}

func (l *eventLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, keys := range l.want {
		n += len(keys)
	}
	return n
}

// inParallel runs fn for every device at once and fails on any error.
func inParallel(t *testing.T, fleet []*device.Device, fn func(d *device.Device) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(fleet))
	for _, d := range fleet {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(d); err != nil {
				errs <- fmt.Errorf("device %s: %w", d.ID(), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// enrollLogged enrolls d and logs its events.
func enrollLogged(c context.Context, d *device.Device, log *eventLog) error {
	if err := d.Enroll(c); err != nil {
		return err
	}
	log.add(d.ID(), "mdm.Authenticate", "mdm.TokenUpdate")
	return nil
}

// workLogged queues n fresh commands for d through apiURL (no push) and
// has d drain them, logging the events that causes: an Idle report, then
// one report per command.
func workLogged(c context.Context, apiURL string, d *device.Device, n int, log *eventLog) error {
	for range n {
		_, raw := apiclient.NewCommand("DeviceInformation", nil)
		if status, body, err := apiclient.Enqueue(c, apiURL, apiKey, []string{d.ID()}, raw, true); err != nil || status != http.StatusOK {
			return fmt.Errorf("enqueue: %d %s %v", status, body, err)
		}
	}
	cmds, err := d.Drain(c, device.Answer("Acknowledged"))
	if err != nil {
		return err
	}
	if len(cmds) != n {
		return fmt.Errorf("drained %d commands, want %d", len(cmds), n)
	}
	keys := []string{"mdm.Connect Idle"}
	for _, cmd := range cmds {
		keys = append(keys, "mdm.Connect Acknowledged "+cmd.CommandUUID)
	}
	log.add(d.ID(), keys...)
	return nil
}

// outboxEvents pages through GET /v1/webhook/events?state=state on baseURL.
func outboxEvents(t *testing.T, baseURL, state string) []map[string]any {
	t.Helper()
	var all []map[string]any
	cursor := ""
	for {
		q := url.Values{"state": {state}, "limit": {"7"}, "cursor": {cursor}}
		status, body := apiDo(t, baseURL, http.MethodGet, "/v1/webhook/events?"+q.Encode())
		if status != http.StatusOK {
			t.Fatalf("GET /v1/webhook/events?%s: %d %s", q.Encode(), status, body)
		}
		var page struct {
			Events     []map[string]any `json:"events"`
			NextCursor string           `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatalf("GET /v1/webhook/events: %s: %v", body, err)
		}
		all = append(all, page.Events...)
		if page.NextCursor == "" {
			return all
		}
		if page.NextCursor == cursor {
			t.Fatalf("next_cursor %q repeats", cursor)
		}
		cursor = page.NextCursor
	}
}

// apiDo sends an authenticated API request to baseURL.
func apiDo(t *testing.T, baseURL, method, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, baseURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("picomdm", apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestOutboxRestart is the first test, on every backend: with the
// receiver down, devices check in and report; the server is stopped
// gracefully (SIGTERM) and started again on the same storage; more
// traffic; then the receiver comes back. Every event arrives, in order per
// enrollment, each exactly once (nothing was in flight with an unknown
// outcome: the receiver was down).
func TestOutboxRestart(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			t.Parallel()
			runOutboxRestart(t, backend.name, backend.dsn(t))
		})
	}
}

func runOutboxRestart(t *testing.T, storageName, dsn string) {
	const devices, perPhase = 6, 3
	hook := newHookReceiver(t)
	hook.down()
	ca, args := backendArgs(t, storageName, dsn, append([]string{"-webhook-url", hook.url("/hook")}, outboxFlags...)...)
	rt := new(retarget)
	client := &http.Client{Transport: rt}
	c := ctx(t)

	s1 := startWithArgs(t, ca, args, nil)
	rt.set(s1.URL)
	fleet := fleetOf(t, ca, client, devices)
	var log eventLog
	inParallel(t, fleet, func(d *device.Device) error {
		if err := enrollLogged(c, d, &log); err != nil {
			return err
		}
		return workLogged(c, s1.URL, d, perPhase, &log)
	})
	// Every event is in the outbox, pending, before the restart.
	if got, want := len(outboxEvents(t, s1.URL, "pending")), log.total(); got != want {
		t.Fatalf("%d pending events in the outbox, want %d", got, want)
	}
	s1.stop() // graceful: what Main does on SIGTERM

	s2 := startWithArgs(t, ca, args, nil)
	rt.set(s2.URL)
	inParallel(t, fleet, func(d *device.Device) error { return workLogged(c, s2.URL, d, perPhase, &log) })
	hook.up()

	want := log.want
	eventually(t, 30*time.Second, func() bool {
		_, accepted := hook.snapshot()
		return allArrived(byEnrollment(accepted, true), want) && len(outboxEvents(t, s2.URL, "pending")) == 0
	}, func() string {
		_, accepted := hook.snapshot()
		return fmt.Sprintf("%d of %d events delivered; server log:\n%s", len(accepted), log.total(), s2.stderr.String())
	})
	_, accepted := hook.snapshot()
	if dups := duplicateIDs(accepted); len(dups) > 0 {
		t.Errorf("%d events delivered twice (nothing was in flight): %v", len(dups), dups)
	}
	got := byEnrollment(accepted, false)
	for id, keys := range want {
		if !slices.Equal(got[id], keys) {
			t.Errorf("enrollment %s received\n%q\nwant (in order, once each)\n%q", id, got[id], keys)
		}
	}
	if len(got) != len(want) {
		t.Errorf("events of %d enrollments, want %d", len(got), len(want))
	}
	if n := len(outboxEvents(t, s2.URL, "failed")); n != 0 {
		t.Errorf("%d events set aside, want none", n)
	}
}

// TestOutboxRefusedTopic: a receiver that answers 500 forever to one
// topic (as NanoCMD does to SetBootstrapToken). Other enrollments' events
// are delivered at once, the refusing enrollment's later events as soon
// as the refused one is set aside (a few quick retries), and the refused
// events are listed by GET /v1/webhook/events?state=failed, from where
// they can be redelivered (same event_id) or dropped.
func TestOutboxRefusedTopic(t *testing.T) {
	hook := newHookReceiver(t)
	hook.setRefused("mdm.SetBootstrapToken", true)
	s := startServer(t, append([]string{"-webhook-url", hook.url("/hook")}, outboxFlags...)...)
	c := ctx(t)

	var log eventLog
	refusing := []*device.Device{s.newDevice(), s.newDevice()}
	others := []*device.Device{s.newDevice(), s.newDevice()}
	inParallel(t, append(slices.Clone(refusing), others...), func(d *device.Device) error { return enrollLogged(c, d, &log) })
	for _, d := range refusing {
		if err := d.SetBootstrapToken(c, []byte("token-"+d.UDID)); err != nil {
			t.Fatal(err)
		}
		log.add(d.ID(), "mdm.SetBootstrapToken")
	}
	start := time.Now()
	inParallel(t, append(slices.Clone(refusing), others...), func(d *device.Device) error { return workLogged(c, s.URL, d, 2, &log) })
	want := log.want

	// Other enrollments wait on nothing: delivered within seconds.
	eventually(t, 5*time.Second, func() bool {
		_, accepted := hook.snapshot()
		got := byEnrollment(accepted, false)
		for _, d := range others {
			if !slices.Equal(got[d.ID()], want[d.ID()]) {
				return false
			}
		}
		return true
	}, func() string { return "the other enrollments' events were not all delivered" })
	t.Logf("other enrollments delivered after %v", time.Since(start))

	// The refusing enrollments' later events go on once the refused
	// event is set aside; the refused one is never accepted.
	eventually(t, 20*time.Second, func() bool {
		_, accepted := hook.snapshot()
		got := byEnrollment(accepted, false)
		for _, d := range refusing {
			if len(got[d.ID()]) < len(want[d.ID()])-1 {
				return false
			}
		}
		return true
	}, func() string { return "the refusing enrollments' later events were not delivered" })
	t.Logf("refusing enrollments' later events delivered after %v", time.Since(start))
	_, accepted := hook.snapshot()
	got := byEnrollment(accepted, false)
	for _, d := range refusing {
		wantAccepted := slices.DeleteFunc(slices.Clone(want[d.ID()]), func(k string) bool { return k == "mdm.SetBootstrapToken" })
		if !slices.Equal(got[d.ID()], wantAccepted) {
			t.Errorf("enrollment %s received\n%q\nwant\n%q", d.ID(), got[d.ID()], wantAccepted)
		}
	}
	if dups := duplicateIDs(accepted); len(dups) > 0 {
		t.Errorf("events delivered twice: %v", dups)
	}

	// The API lists both refused events, with their bodies.
	var failed []map[string]any
	eventually(t, 5*time.Second, func() bool {
		failed = outboxEvents(t, s.URL, "failed")
		return len(failed) == len(refusing)
	}, func() string { return fmt.Sprintf("%d failed events listed, want %d", len(failed), len(refusing)) })
	received, _ := hook.snapshot()
	refusedIDs := map[string]string{} // event_id → enrollment
	for _, ev := range received {
		if ev.Topic == "mdm.SetBootstrapToken" {
			refusedIDs[ev.EventID] = ev.EnrollmentID
		}
	}
	for _, ev := range failed {
		id, _ := ev["event_id"].(string)
		if ev["topic"] != "mdm.SetBootstrapToken" || ev["state"] != "failed" || refusedIDs[id] != ev["enrollment_id"] ||
			ev["attempts"].(float64) < 2 || ev["last_error"] == "" || ev["body"] == "" {
			t.Errorf("failed event %v (refused: %v)", ev, refusedIDs)
		}
	}
	if status, body := apiDo(t, s.URL, http.MethodGet, "/v1/webhook/events?state=bogus"); status != http.StatusBadRequest {
		t.Errorf("state=bogus: %d %s", status, body)
	}

	// Redeliver one to a receiver that now takes it: it arrives with its
	// event_id; drop the other.
	hook.setRefused("mdm.SetBootstrapToken", false)
	redeliver, drop := failed[0]["event_id"].(string), failed[1]["event_id"].(string)
	if status, body := apiDo(t, s.URL, http.MethodPost, "/v1/webhook/events/"+redeliver+"/redeliver"); status != http.StatusOK || !strings.Contains(string(body), `"redelivered":true`) {
		t.Fatalf("redeliver: %d %s", status, body)
	}
	if status, body := apiDo(t, s.URL, http.MethodDelete, "/v1/webhook/events/"+drop); status != http.StatusOK || !strings.Contains(string(body), `"dropped":true`) {
		t.Fatalf("drop: %d %s", status, body)
	}
	eventually(t, 10*time.Second, func() bool {
		_, accepted := hook.snapshot()
		return slices.ContainsFunc(accepted, func(ev hookEvent) bool { return ev.EventID == redeliver })
	}, func() string {
		return fmt.Sprintf("the redelivered event did not arrive; pending: %v", outboxEvents(t, s.URL, "pending"))
	})
	if n := len(outboxEvents(t, s.URL, "failed")); n != 0 {
		t.Errorf("%d failed events left after redeliver and drop", n)
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/v1/webhook/events/" + drop + "/redeliver"}, // dropped
		{http.MethodPost, "/v1/webhook/events/" + redeliver + "/redeliver"},
		{http.MethodDelete, "/v1/webhook/events/" + drop},
	} {
		if status, body := apiDo(t, s.URL, tc.method, tc.path); status != http.StatusNotFound {
			t.Errorf("%s %s: %d %s, want 404", tc.method, tc.path, status, body)
		}
	}
	_, accepted = hook.snapshot()
	if slices.ContainsFunc(accepted, func(ev hookEvent) bool { return ev.EventID == drop }) {
		t.Error("the dropped event was delivered")
	}
}
