// Package webhook is the service-chain link that reports every check-in
// message and command report to an HTTP endpoint as a JSON event, in
// MicroMDM's webhook format with NanoMDM's additions (see docs/webhook.md).
//
// It runs as one of multi's secondary services: it never answers the
// device and never blocks it. Each service method only builds the event and
// puts it on a bounded in-memory queue; a fixed pool of workers delivers
// the events, in order per device, retrying a receiver that fails or is
// down with exponential backoff for up to a configurable time. The queue
// is bounded both by a number of events and by the bytes they hold, so a
// receiver that is down cannot make the server hold more than a set amount
// of memory however large the reports are.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// Defaults for the options.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultRetryFor   = 5 * time.Minute
	DefaultQueueSize  = 10000
	DefaultQueueBytes = 64 << 20
	DefaultWorkers    = 8
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

// SignatureHeader carries base64(HMAC-SHA256(key, body)) when an HMAC key is
// set, as NanoMDM sends it.
const SignatureHeader = "X-Hmac-Signature"

// ErrClosed is returned by the service methods after Close: the event was
// not queued.
var ErrClosed = errors.New("webhook: closed")

// Webhook is a service.CheckinAndCommandService that POSTs an event for
// every message to a URL. Create it with New and stop it with Close.
type Webhook struct {
	url        string
	tally      storage.TokenUpdateTallyStore
	hmacKey    []byte
	client     *http.Client
	transport  *http.Transport // ours to close, when no client was given
	logger     *slog.Logger
	timeout    time.Duration
	retryFor   time.Duration
	queueSize  int
	queueBytes int64
	workers    int
	minBackoff time.Duration
	maxBackoff time.Duration

	// mu orders enqueueing against Close: events are pushed under the read
	// lock, and Close sets closed under the write lock, so no event lands
	// on a shard after its worker was told to finish.
	mu      sync.RWMutex
	closed  bool
	closing chan struct{} // closed by Close: workers drain and exit
	shards  []*shard

	// account guards the two bounds together, so an event is admitted
	// only when both hold and neither count ever passes its bound.
	account sync.Mutex
	queued  int   // events on all shards, bounded by queueSize
	held    int64 // bytes of the events queued or being delivered, bounded by queueBytes

	// stop is cancelled when Close's context ends: in-flight deliveries and
	// backoff waits are abandoned.
	stop     context.Context
	cancel   context.CancelFunc
	workerWG sync.WaitGroup
	done     chan struct{} // closed when every worker has exited

	delivered   atomic.Uint64
	retries     atomic.Uint64
	dropped     atomic.Uint64
	lastFullLog atomic.Int64 // unix nanoseconds of the last queue-full warning
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

// WithTimeout bounds each delivery attempt (default 10s); a timed-out
// attempt is retried like any other failure.
func WithTimeout(d time.Duration) Option { return func(w *Webhook) { w.timeout = d } }

// WithRetryFor sets how long a failing event keeps being retried, counted
// from its first attempt, before it is dropped (default 5m; 0 means a
// single attempt).
func WithRetryFor(d time.Duration) Option { return func(w *Webhook) { w.retryFor = d } }

// WithQueueSize bounds how many events may wait for delivery (default
// 10000); when the queue is full new events are dropped and counted.
func WithQueueSize(n int) Option { return func(w *Webhook) { w.queueSize = n } }

// WithQueueBytes bounds the bytes the events waiting for delivery or being
// delivered may hold, counted as the size of each event's encoded JSON
// (default 64 MiB, the -webhook-queue-bytes flag); an event that does not
// fit is dropped and counted, like one that finds the queue full.
func WithQueueBytes(n int64) Option { return func(w *Webhook) { w.queueBytes = n } }

// WithWorkers sets how many deliveries run at once (default 8). Each
// worker owns the devices whose ID hashes to it.
func WithWorkers(n int) Option { return func(w *Webhook) { w.workers = n } }

// WithBackoff sets the first and the largest wait between retries
// (defaults 500ms and 30s); each wait doubles the previous one, with
// jitter. Tests use short ones.
func WithBackoff(minWait, maxWait time.Duration) Option {
	return func(w *Webhook) { w.minBackoff, w.maxBackoff = minWait, maxWait }
}

// New returns a Webhook POSTing events to rawURL and reading token-update
// tallies from tally, and starts its delivery workers. It panics on an
// empty or non-http(s) URL or a nil tally store (wiring mistakes).
func New(rawURL string, tally storage.TokenUpdateTallyStore, opts ...Option) *Webhook {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		panic(fmt.Sprintf("webhook: invalid URL %q", rawURL))
	}
	if tally == nil {
		panic("webhook: nil token-update tally store")
	}
	w := &Webhook{
		url:        rawURL,
		tally:      tally,
		timeout:    DefaultTimeout,
		retryFor:   DefaultRetryFor,
		queueSize:  DefaultQueueSize,
		queueBytes: DefaultQueueBytes,
		workers:    DefaultWorkers,
		minBackoff: DefaultMinBackoff,
		maxBackoff: DefaultMaxBackoff,
	}
	for _, opt := range opts {
		opt(w)
	}
	w.logger = pmlog.Or(w.logger)
	if w.timeout <= 0 {
		w.timeout = DefaultTimeout
	}
	w.retryFor = max(w.retryFor, 0)
	if w.queueSize <= 0 {
		w.queueSize = DefaultQueueSize
	}
	if w.queueBytes <= 0 {
		w.queueBytes = DefaultQueueBytes
	}
	if w.workers <= 0 {
		w.workers = DefaultWorkers
	}
	if w.minBackoff <= 0 {
		w.minBackoff = DefaultMinBackoff
	}
	w.maxBackoff = max(w.maxBackoff, w.minBackoff)
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

// checkin queues the event for a check-in message.
func (w *Webhook) checkin(r *mdm.Request, msg mdm.Checkin) error {
	return w.enqueue(r, newCheckinEvent(r, msg, time.Now()))
}

// Authenticate implements service.Checkin; it only queues an event.
func (w *Webhook) Authenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	return w.checkin(r, msg)
}

// TokenUpdate implements service.Checkin. The event carries the
// enrollment's token-update tally, read after the core service stored the
// message (multi runs the webhook after the core); it is left out, and the
// failure logged, when the tally cannot be read.
func (w *Webhook) TokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	ev := newCheckinEvent(r, msg, time.Now())
	if r.EnrollID != nil {
		tally, err := w.tally.RetrieveTokenUpdateTally(r.Context, r.ID)
		if err != nil {
			w.logger.WarnContext(r.Context, "webhook: reading token-update tally", "enrollment_id", r.ID, "err", err)
		} else {
			ev.CheckinEvent.TokenUpdateTally = &tally
		}
	}
	return w.enqueue(r, ev)
}

// CheckOut implements service.Checkin; it only queues an event.
func (w *Webhook) CheckOut(r *mdm.Request, msg *mdm.CheckOut) error {
	return w.checkin(r, msg)
}

// UserAuthenticate implements service.Checkin; it only queues an event and
// never answers the device (nil bytes).
func (w *Webhook) UserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) ([]byte, error) {
	return nil, w.checkin(r, msg)
}

// SetBootstrapToken implements service.Checkin; it only queues an event.
func (w *Webhook) SetBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	return w.checkin(r, msg)
}

// GetBootstrapToken implements service.Checkin; it only queues an event and
// returns no token.
func (w *Webhook) GetBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	return nil, w.checkin(r, msg)
}

// DeclarativeManagement implements service.Checkin; it only queues an
// event and returns no body.
func (w *Webhook) DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error) {
	return nil, w.checkin(r, msg)
}

// GetToken implements service.Checkin; it only queues an event and returns
// no token.
func (w *Webhook) GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	return nil, w.checkin(r, msg)
}

// CommandAndReportResults implements service.CommandAndReportResults: every
// report, Idle included, becomes an mdm.Connect event. It returns no
// command.
func (w *Webhook) CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error) {
	return nil, w.enqueue(r, newAcknowledgeEvent(r, results, time.Now()))
}

// sign returns the X-Hmac-Signature value for body.
func sign(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// enqueue encodes ev and queues it on the shard of r's device, without
// blocking. An event that finds the queue full, by count or by bytes, is
// dropped (counted, and logged at most once a second so an outage does not
// flood the log).
func (w *Webhook) enqueue(r *mdm.Request, ev *Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("webhook: encoding %s event: %w", ev.Topic, err)
	}
	j := &job{topic: ev.Topic, eventID: ev.EventID, body: body}
	if r.EnrollID != nil {
		j.enrollmentID = r.ID
		j.deviceID = r.DeviceID()
	}
	if len(w.hmacKey) > 0 {
		j.signature = sign(w.hmacKey, body)
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.dropped.Add(1)
		return ErrClosed
	}
	if !w.admit(j) {
		dropped := w.dropped.Add(1)
		now := time.Now().UnixNano()
		if last := w.lastFullLog.Load(); now-last >= int64(time.Second) && w.lastFullLog.CompareAndSwap(last, now) {
			w.logger.WarnContext(r.Context, "webhook: queue full, event dropped",
				"topic", j.topic, "enrollment_id", j.enrollmentID, "event_bytes", j.size(),
				"queue_size", w.queueSize, "queue_bytes", w.queueBytes, "dropped_total", dropped)
		}
		return nil
	}
	w.shards[shardIndex(j.deviceID, len(w.shards))].push(j)
	return nil
}

// admit reserves room for j under both bounds, or reports that there is
// none.
func (w *Webhook) admit(j *job) bool {
	w.account.Lock()
	defer w.account.Unlock()
	if w.queued >= w.queueSize || w.held+j.size() > w.queueBytes {
		return false
	}
	w.queued++
	w.held += j.size()
	return true
}

// taken accounts for a job a worker took off its shard: it no longer
// waits, though its bytes stay held until release.
func (w *Webhook) taken() {
	w.account.Lock()
	w.queued--
	w.account.Unlock()
}

// release frees the bytes of a job that was delivered or given up.
func (w *Webhook) release(j *job) {
	w.account.Lock()
	w.held -= j.size()
	w.account.Unlock()
}

// QueuesOnly implements multi.Queuer: every method only puts an event on
// the bounded queue and returns, so multi calls the webhook in the
// request's goroutine and one enrollment's events stay in order.
func (w *Webhook) QueuesOnly() bool { return true }
