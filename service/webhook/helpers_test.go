package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/picomdm/picomdm/test/wait"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/micromdm/plist"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
)

var _ service.CheckinAndCommandService = (*Webhook)(nil)

// delivery is one POST the receiver accepted.
type delivery struct {
	method string
	header http.Header
	body   []byte
}

// event decodes the delivery's body.
func (d delivery) event(t *testing.T) *Event {
	t.Helper()
	ev := new(Event)
	if err := json.Unmarshal(d.body, ev); err != nil {
		t.Fatalf("decoding event %s: %v", d.body, err)
	}
	return ev
}

// receiver is a webhook endpoint that can be made to fail (503), to hang
// until the client gives up, or to go away entirely (listener closed).
type receiver struct {
	t        *testing.T
	addr     string
	mu       sync.Mutex
	srv      *http.Server
	got      []delivery
	attempts atomic.Int64
	fail     atomic.Bool  // answer 503
	failNext atomic.Int64 // this many next requests answer 503
	hang     atomic.Int64 // this many next requests hang until cancelled
	block    chan struct{}
	// refuse answers events of these topics with the status given
	// (guarded by mu), and counts the attempts per topic.
	refuse  map[string]int
	byTopic map[string]int
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{t: t, addr: ln.Addr().String()}
	rc.serve(ln)
	t.Cleanup(rc.down)
	return rc
}

func (rc *receiver) URL() string { return "http://" + rc.addr + "/webhook" }

func (rc *receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(rc.handle)}
	rc.mu.Lock()
	rc.srv = srv
	rc.mu.Unlock()
	go srv.Serve(ln)
}

// down closes the listener and every connection: deliveries now fail with
// "connection refused".
func (rc *receiver) down() {
	rc.mu.Lock()
	srv := rc.srv
	rc.srv = nil
	rc.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// up listens again on the same address.
func (rc *receiver) up() {
	rc.t.Helper()
	var ln net.Listener
	var err error
	// The port may take a moment to be free again.
	wait.For(rc.t, time.Second, func() bool {
		ln, err = net.Listen("tcp", rc.addr)
		return err == nil
	}, func() string { return fmt.Sprintf("listening again on %s (%v)", rc.addr, err) })
	rc.serve(ln)
}

func (rc *receiver) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	rc.attempts.Add(1)
	var ev struct {
		Topic string `json:"topic"`
	}
	json.Unmarshal(body, &ev)
	rc.mu.Lock()
	if rc.byTopic == nil {
		rc.byTopic = map[string]int{}
	}
	rc.byTopic[ev.Topic]++
	code := rc.refuse[ev.Topic]
	rc.mu.Unlock()
	if code != 0 {
		http.Error(w, "not handled here", code)
		return
	}
	if rc.block != nil {
		select {
		case <-rc.block:
		case <-r.Context().Done():
			return
		}
	}
	if rc.hang.Add(-1) >= 0 {
		<-r.Context().Done() // until the client's timeout
		return
	}
	if rc.fail.Load() || rc.failNext.Add(-1) >= 0 {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	rc.mu.Lock()
	rc.got = append(rc.got, delivery{method: r.Method, header: r.Header.Clone(), body: body})
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent) // any 2xx is success
}

// refuseTopic makes the receiver answer code to every event of topic.
func (rc *receiver) refuseTopic(topic string, code int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.refuse == nil {
		rc.refuse = map[string]int{}
	}
	rc.refuse[topic] = code
}

// topicAttempts returns how many attempts events of topic had.
func (rc *receiver) topicAttempts(topic string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.byTopic[topic]
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

// attempts is an http.RoundTripper that counts every delivery attempt per
// event_id and the failed ones (a transport error or a non-2xx answer), so
// a test can wait for retries to happen, whether the receiver answers 503
// or is not listening at all.
type attempts struct {
	next http.RoundTripper
	mu   sync.Mutex
	per  map[string]int // attempts per event_id
	fail map[string]int // failed attempts per event_id
}

// newAttempts returns a counting client over a transport of its own,
// closed when the test ends.
func newAttempts(t *testing.T) (*attempts, *http.Client) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	a := &attempts{next: tr, per: map[string]int{}, fail: map[string]int{}}
	return a, &http.Client{Transport: a}
}

func (a *attempts) RoundTrip(req *http.Request) (*http.Response, error) {
	var ev struct {
		EventID string `json:"event_id"`
	}
	if req.GetBody != nil {
		if body, err := req.GetBody(); err == nil {
			json.NewDecoder(body).Decode(&ev)
			body.Close()
		}
	}
	resp, err := a.next.RoundTrip(req)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.per[ev.EventID]++
	if err != nil || resp.StatusCode < 200 || resp.StatusCode > 299 {
		a.fail[ev.EventID]++
	}
	return resp, err
}

// of returns how many attempts, and how many failed ones, event id had.
func (a *attempts) of(id string) (all, failed int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.per[id], a.fail[id]
}

// mostFailed returns the largest number of failed attempts of one event.
func (a *attempts) mostFailed() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, f := range a.fail {
		n = max(n, f)
	}
	return n
}

// events lists the outbox's events in state, all of them.
func events(t *testing.T, outbox storage.OutboxStore, state string) []storage.OutboxEvent {
	t.Helper()
	var all []storage.OutboxEvent
	p := storage.Page{Limit: 100}
	for {
		page, next, err := outbox.ListEvents(context.Background(), state, p)
		if err != nil {
			t.Fatalf("listing %s events: %v", state, err)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		p.Cursor = next
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.Until(t, 15*time.Second, what, cond)
}

// waitDeliveries waits until the receiver has accepted n events and
// returns them.
func (rc *receiver) waitDeliveries(t *testing.T, n int) []delivery {
	t.Helper()
	waitFor(t, "deliveries", func() bool { return len(rc.deliveries()) >= n })
	return rc.deliveries()
}

// tallies is a storage.TokenUpdateTallyStore that counts reads per ID, or
// fails with err.
type tallies struct {
	mu  sync.Mutex
	n   map[string]int
	err error
}

func (s *tallies) RetrieveTokenUpdateTally(_ context.Context, id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	if s.n == nil {
		s.n = map[string]int{}
	}
	s.n[id]++
	return s.n[id], nil
}

var errNoTally = errors.New("tally store down")

var _ storage.TokenUpdateTallyStore = (*tallies)(nil)

// newTestWebhook returns a Webhook on an outbox of its own (inmem), with
// fast backoff, quick retries of refused events and a short poll
// interval, closed at cleanup.
func newTestWebhook(t *testing.T, url string, tally storage.TokenUpdateTallyStore, opts ...Option) *Webhook {
	t.Helper()
	return newTestWebhookOn(t, inmem.New(), url, tally, opts...)
}

// newTestWebhookOn is newTestWebhook on a given outbox, e.g. one that
// another Webhook (another "replica") shares.
func newTestWebhookOn(t *testing.T, outbox storage.OutboxStore, url string, tally storage.TokenUpdateTallyStore, opts ...Option) *Webhook {
	t.Helper()
	if tally == nil {
		tally = new(tallies)
	}
	opts = append([]Option{
		WithBackoff(2*time.Millisecond, 20*time.Millisecond), WithRetryFor(30 * time.Second),
		WithRefusedRetries(3, 2*time.Millisecond), WithPollInterval(5 * time.Millisecond),
	}, opts...)
	w := New(url, tally, outbox, opts...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		w.Close(ctx)
	})
	return w
}

// encode returns the plist for a message given as keys and values.
func encode(t *testing.T, msg map[string]any) []byte {
	t.Helper()
	raw, err := plist.MarshalIndent(msg, "\t")
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// send passes a check-in (MessageType set) or command report (Status set)
// through the same dispatch the HTTP handlers use.
func send(t *testing.T, svc service.CheckinAndCommandService, params map[string]string, msg map[string]any) []byte {
	t.Helper()
	raw := encode(t, msg)
	out, err := dispatch(svc, params, raw, msg)
	if err != nil {
		t.Fatalf("sending %v: %v", msg, err)
	}
	if out != nil {
		t.Errorf("the webhook answered the device with %q; it must never answer", out)
	}
	return raw
}

// dispatch hands raw, the encoding of msg, to svc as the HTTP handlers do
// and returns svc's answer.
func dispatch(svc service.CheckinAndCommandService, params map[string]string, raw []byte, msg map[string]any) ([]byte, error) {
	r := mdm.NewRequest(context.Background(), nil)
	r.Params = params
	if _, ok := msg["MessageType"]; ok {
		return service.CheckinRequest(svc, r, raw)
	}
	return service.CommandReportRequest(svc, r, raw)
}

// report is an Idle-or-answer command report for the device udid.
func report(udid, status, commandUUID string) map[string]any {
	m := map[string]any{"UDID": udid, "Status": status}
	if commandUUID != "" {
		m["CommandUUID"] = commandUUID
	}
	return m
}
