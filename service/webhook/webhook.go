// Package webhook is the service-chain link that reports every check-in
// message and command report to an HTTP endpoint as a JSON event, in
// MicroMDM's webhook format with NanoMDM's additions (see docs/webhook.md).
//
// It runs as one of multi's secondary services and never answers the
// device. Each service method builds the event and stores it in the
// durable outbox (storage.OutboxStore) before the device gets its answer,
// so no event is lost to a receiver that is down or to a restart. A pool
// of workers in every replica claims events from the outbox, under a lease
// in storage, and delivers them: an enrollment's events one at a time and
// in order, retried with backoff while the receiver is unreachable; an
// event the receiver refuses is retried a few times quickly and then set
// aside (kept, visible through the API), so that enrollment's later events
// go on. No enrollment ever waits on another's.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// Defaults for the options.
const (
	DefaultTimeout = 10 * time.Second
	// DefaultRetryFor is how long an event is retried while the receiver
	// is unreachable: nothing is lost meanwhile (the event waits in
	// storage), so it is long.
	DefaultRetryFor = 24 * time.Hour
	// DefaultQueueSize and DefaultQueueBytes bounded the in-memory queue
	// that the outbox replaced; they remain for the flags that still
	// accept them and no longer apply.
	DefaultQueueSize  = 10000
	DefaultQueueBytes = 64 << 20
	DefaultWorkers    = 8
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
	// DefaultRefusedAttempts is how many attempts an event the receiver
	// refuses gets in all before it is set aside.
	DefaultRefusedAttempts = 3
	// DefaultPollInterval is how often the workers look for events stored
	// by other replicas or coming due for a retry.
	DefaultPollInterval = time.Second
	// DefaultOutboxMaxEvents bounds the events the outbox keeps.
	DefaultOutboxMaxEvents = 1000000
	// DefaultFailedRetention is how long set-aside events are kept.
	DefaultFailedRetention = 7 * 24 * time.Hour
	// DefaultTrimInterval is how often the outbox trim job runs.
	DefaultTrimInterval = time.Minute
)

// DefaultRefusedWaits are the waits after the first and the second
// refusal of an event (1 s, then 5 s).
var DefaultRefusedWaits = []time.Duration{time.Second, 5 * time.Second}

// SignatureHeader carries base64(HMAC-SHA256(key, body)) when an HMAC key is
// set, as NanoMDM sends it.
const SignatureHeader = "X-Hmac-Signature"

// ErrClosed is kept for callers that checked it: since the outbox, the
// service methods store events after Close too (any replica, or this one
// after a restart, delivers them), so it is no longer returned.
var ErrClosed = errors.New("webhook: closed")

// Webhook is a service.CheckinAndCommandService that stores an event for
// every message in the outbox and POSTs it to a URL. Create it with New
// and stop it with Close.
type Webhook struct {
	url             string
	tally           storage.TokenUpdateTallyStore
	outbox          storage.OutboxStore
	hmacKey         []byte
	client          *http.Client
	transport       *http.Transport // ours to close, when no client was given
	logger          *slog.Logger
	owner           string
	timeout         time.Duration
	retryFor        time.Duration
	workers         int
	minBackoff      time.Duration
	maxBackoff      time.Duration
	refusedAttempts int
	refusedWaits    []time.Duration
	pollInterval    time.Duration
	maxEvents       int
	failedRetention time.Duration
	now             func() time.Time

	// wake tells the claimer there may be events to claim: one was
	// stored here, or a delivery finished (its enrollment's next event is
	// now the head). Capacity 1: wake-ups coalesce.
	wake chan struct{}
	// closing is closed by Close: the claimer stops claiming.
	closing   chan struct{}
	closeOnce sync.Once
	// stop is cancelled when Close's context ends: in-flight attempts
	// are abandoned (their events are released, not retried).
	stop     context.Context
	cancel   context.CancelFunc
	inflight sync.WaitGroup
	claimer  chan struct{} // closed when the claimer has exited
	done     chan struct{} // closed when Close has finished
	closeErr error

	delivered   atomic.Uint64
	retries     atomic.Uint64
	setAside    atomic.Uint64
	storeFailed atomic.Uint64
	leaseLost   atomic.Uint64
	trimmed     atomic.Uint64
}

// Option configures a Webhook.
type Option func(*Webhook)

// WithHMACKey signs every event: the X-Hmac-Signature header carries the
// standard base64 of HMAC-SHA256(key, body) (the -webhook-hmac-key flag).
func WithHMACKey(key []byte) Option {
	return func(w *Webhook) { w.hmacKey = append([]byte(nil), key...) }
}

// WithClient sets the HTTP client deliveries use (e.g. for a custom TLS
// configuration). The per-request timeout applies on top of the client's.
func WithClient(client *http.Client) Option { return func(w *Webhook) { w.client = client } }

// WithLogger sets the logger.
func WithLogger(logger *slog.Logger) Option { return func(w *Webhook) { w.logger = logger } }

// WithOwner sets the name this process claims outbox events under
// (default: a random one). Every replica must have its own.
func WithOwner(owner string) Option { return func(w *Webhook) { w.owner = owner } }

// WithTimeout bounds each delivery attempt (default 10s); a timed-out
// attempt counts as the receiver being unreachable. A claim lasts twice
// the timeout.
func WithTimeout(d time.Duration) Option { return func(w *Webhook) { w.timeout = d } }

// WithRetryFor sets how long, counted from when the event was stored, an
// event keeps being retried while the receiver is unreachable before it
// is set aside (default 24h; 0 means a single attempt).
func WithRetryFor(d time.Duration) Option { return func(w *Webhook) { w.retryFor = d } }

// WithQueueSize is accepted for compatibility and does nothing: the
// in-memory queue it bounded was replaced by the outbox, bounded by
// WithOutboxMaxEvents.
func WithQueueSize(int) Option { return func(*Webhook) {} }

// WithQueueBytes is accepted for compatibility and does nothing (the
// -webhook-queue-bytes flag): events wait in storage, not in memory.
func WithQueueBytes(int64) Option { return func(*Webhook) {} }

// WithWorkers sets how many deliveries run at once in this process
// (default 8), each for a different enrollment.
func WithWorkers(n int) Option { return func(w *Webhook) { w.workers = n } }

// WithBackoff sets the first and the largest wait between retries of an
// unreachable receiver (defaults 500ms and 30s); each wait doubles the
// previous one, with jitter. Tests use short ones.
func WithBackoff(minWait, maxWait time.Duration) Option {
	return func(w *Webhook) { w.minBackoff, w.maxBackoff = minWait, maxWait }
}

// WithRefusedRetries sets how many attempts in all an event the receiver
// refuses gets before it is set aside (default 3), and the waits after
// each refusal (default 1s, then 5s; the last one repeats).
func WithRefusedRetries(attempts int, waits ...time.Duration) Option {
	return func(w *Webhook) {
		w.refusedAttempts = attempts
		if len(waits) > 0 {
			w.refusedWaits = append([]time.Duration(nil), waits...)
		}
	}
}

// WithPollInterval sets how often the workers look in the outbox for
// events they were not woken for: stored by another replica, or coming due
// for a retry (default 1s).
func WithPollInterval(d time.Duration) Option { return func(w *Webhook) { w.pollInterval = d } }

// WithOutboxMaxEvents bounds the events the outbox keeps, used by Trim
// (default 1,000,000; 0 or less: no count bound).
func WithOutboxMaxEvents(n int) Option { return func(w *Webhook) { w.maxEvents = n } }

// WithFailedRetention sets how long set-aside events are kept, used by
// Trim (default 7 days; 0: until the count bound needs their room).
func WithFailedRetention(d time.Duration) Option { return func(w *Webhook) { w.failedRetention = d } }

// NewOwner returns a random owner name for claims and leases, prefixed
// with the host name so that logs and the API say which replica holds
// what.
func NewOwner() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "picomdm"
	}
	return host + "-" + hex.EncodeToString(b[:])
}

// New returns a Webhook POSTing events to rawURL, storing them in outbox
// and reading token-update tallies from tally, and starts its delivery
// workers. It panics on an empty or non-http(s) URL or a nil store
// (wiring mistakes).
func New(rawURL string, tally storage.TokenUpdateTallyStore, outbox storage.OutboxStore, opts ...Option) *Webhook {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		panic(fmt.Sprintf("webhook: invalid URL %q", rawURL))
	}
	if tally == nil {
		panic("webhook: nil token-update tally store")
	}
	if outbox == nil {
		panic("webhook: nil outbox store")
	}
	w := &Webhook{
		url:             rawURL,
		tally:           tally,
		outbox:          outbox,
		timeout:         DefaultTimeout,
		retryFor:        DefaultRetryFor,
		workers:         DefaultWorkers,
		minBackoff:      DefaultMinBackoff,
		maxBackoff:      DefaultMaxBackoff,
		refusedAttempts: DefaultRefusedAttempts,
		refusedWaits:    DefaultRefusedWaits,
		pollInterval:    DefaultPollInterval,
		maxEvents:       DefaultOutboxMaxEvents,
		failedRetention: DefaultFailedRetention,
		now:             time.Now,
	}
	for _, opt := range opts {
		opt(w)
	}
	w.logger = pmlog.Or(w.logger)
	if w.owner == "" {
		w.owner = NewOwner()
	}
	if w.timeout <= 0 {
		w.timeout = DefaultTimeout
	}
	w.retryFor = max(w.retryFor, 0)
	if w.workers <= 0 {
		w.workers = DefaultWorkers
	}
	if w.minBackoff <= 0 {
		w.minBackoff = DefaultMinBackoff
	}
	w.maxBackoff = max(w.maxBackoff, w.minBackoff)
	w.refusedAttempts = max(w.refusedAttempts, 1)
	if len(w.refusedWaits) == 0 {
		w.refusedWaits = DefaultRefusedWaits
	}
	if w.pollInterval <= 0 {
		w.pollInterval = DefaultPollInterval
	}
	w.failedRetention = max(w.failedRetention, 0)
	if w.client == nil {
		// One idle connection per worker: the default of 2 per host would
		// make busy workers reconnect for every event.
		w.transport = http.DefaultTransport.(*http.Transport).Clone()
		w.transport.MaxIdleConnsPerHost = w.workers
		w.client = &http.Client{Transport: w.transport}
	}
	w.start()
	return w
}

// Owner returns the name this Webhook claims outbox events under.
func (w *Webhook) Owner() string { return w.owner }

// checkin stores the event for a check-in message.
func (w *Webhook) checkin(r *mdm.Request, msg mdm.Checkin) error {
	return w.store(r, newCheckinEvent(r, msg, w.now()))
}

// Authenticate implements service.Checkin; it only stores an event.
func (w *Webhook) Authenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	return w.checkin(r, msg)
}

// TokenUpdate implements service.Checkin. The event carries the
// enrollment's token-update tally, read after the core service stored the
// message (multi runs the webhook after the core); it is left out, and the
// failure logged, when the tally cannot be read.
func (w *Webhook) TokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	ev := newCheckinEvent(r, msg, w.now())
	if r.EnrollID != nil {
		tally, err := w.tally.RetrieveTokenUpdateTally(r.Context, r.ID)
		if err != nil {
			w.logger.WarnContext(r.Context, "webhook: reading token-update tally", "enrollment_id", r.ID, "err", err)
		} else {
			ev.CheckinEvent.TokenUpdateTally = &tally
		}
	}
	return w.store(r, ev)
}

// CheckOut implements service.Checkin; it only stores an event.
func (w *Webhook) CheckOut(r *mdm.Request, msg *mdm.CheckOut) error {
	return w.checkin(r, msg)
}

// UserAuthenticate implements service.Checkin; it only stores an event and
// never answers the device (nil bytes).
func (w *Webhook) UserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) ([]byte, error) {
	return nil, w.checkin(r, msg)
}

// SetBootstrapToken implements service.Checkin; it only stores an event.
func (w *Webhook) SetBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	return w.checkin(r, msg)
}

// GetBootstrapToken implements service.Checkin; it only stores an event
// and returns no token.
func (w *Webhook) GetBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	return nil, w.checkin(r, msg)
}

// DeclarativeManagement implements service.Checkin; it only stores an
// event and returns no body.
func (w *Webhook) DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error) {
	return nil, w.checkin(r, msg)
}

// GetToken implements service.Checkin; it only stores an event and
// returns no token.
func (w *Webhook) GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	return nil, w.checkin(r, msg)
}

// CommandAndReportResults implements service.CommandAndReportResults: every
// report, Idle included, becomes an mdm.Connect event. It returns no
// command.
func (w *Webhook) CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error) {
	if pending, ok := storage.PendingEventFrom(r.Context); ok {
		if pending.Stored() {
			// The store wrote it with the report (PrepareReport).
			w.poke()
			return nil, nil
		}
		return nil, w.storeOutbox(r, pending.Event)
	}
	return nil, w.store(r, newAcknowledgeEvent(r, results, w.now()))
}

// PrepareReport implements multi.ReportPreparer: it builds the report's
// event before the core service stores the report and hands it to storage
// with the request (storage.PendingEvent), so that a backend that can
// stores it in the report's own transaction, at no extra round trip; an
// event the store did not take is stored by CommandAndReportResults.
func (w *Webhook) PrepareReport(r *mdm.Request, results *mdm.CommandResults) *mdm.Request {
	oe, err := w.outboxEvent(r, newAcknowledgeEvent(r, results, w.now()))
	if err != nil {
		return r // CommandAndReportResults builds and reports it again
	}
	return r.Clone(storage.WithPendingEvent(r.Context, &storage.PendingEvent{Event: oe}))
}

// sign returns the X-Hmac-Signature value for body.
func sign(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// store encodes ev and appends it to the outbox, in the request's
// goroutine (multi calls the webhook inline, before the device gets its
// answer), then wakes the workers. A failure to store is logged and
// counted, and does not fail the device's request: the core service has
// already stored the report, and a device retrying would not bring the
// event back.
func (w *Webhook) store(r *mdm.Request, ev *Event) error {
	oe, err := w.outboxEvent(r, ev)
	if err != nil {
		return err
	}
	return w.storeOutbox(r, oe)
}

// outboxEvent encodes ev as the outbox event of r's enrollment.
func (w *Webhook) outboxEvent(r *mdm.Request, ev *Event) (*storage.OutboxEvent, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("webhook: encoding %s event: %w", ev.Topic, err)
	}
	oe := &storage.OutboxEvent{ID: ev.EventID, Topic: ev.Topic, Body: body, CreatedAt: ev.CreatedAt, State: storage.OutboxPending}
	if r.EnrollID != nil {
		oe.EnrollmentID = r.ID
	}
	return oe, nil
}

// storeOutbox appends oe to the outbox and wakes the workers.
func (w *Webhook) storeOutbox(r *mdm.Request, oe *storage.OutboxEvent) error {
	if err := w.outbox.StoreEvent(r.Context, oe); err != nil {
		w.storeFailed.Add(1)
		w.logger.ErrorContext(r.Context, "webhook: storing event in the outbox failed; event lost",
			"topic", oe.Topic, "event_id", oe.ID, "enrollment_id", oe.EnrollmentID, "err", err)
		return nil
	}
	w.poke()
	return nil
}

// poke wakes the claimer without blocking.
func (w *Webhook) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// QueuesOnly implements multi.Queuer: every method only stores an event
// in the outbox and returns, so multi calls the webhook in the request's
// goroutine, before the device gets its answer, and one enrollment's
// events are stored in the order its requests were answered.
func (w *Webhook) QueuesOnly() bool { return true }
