// Package apns pushes to MDM enrollments through Apple's Push Notification
// service (APNs) provider API over HTTP/2, authenticating with each topic's
// push certificate (Apple, "Sending notification requests to APNs";
// "Sending MDM commands to a device").
//
// Service is the push.Pusher: it reads the push info of a whole batch of
// enrollment IDs in one storage call, groups them by topic (several topics
// side by side, each with its own certificate and long-lived connection
// pool), and sends the pushes through a fixed pool of workers. APNs
// refusals come back typed (*Error); a token APNs says is dead is marked in
// storage (storage.PushTokenStore); TooManyRequests and APNs faults are
// retried with exponential backoff and jitter.
package apns

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/push"
	"github.com/picomdm/picomdm/storage"
)

// APNs provider API base URLs.
const (
	// ProductionURL is APNs' production environment, where devices
	// enrolled with a production push certificate listen.
	ProductionURL = "https://api.push.apple.com"
	// DevelopmentURL is APNs' development (sandbox) environment.
	DevelopmentURL = "https://api.sandbox.push.apple.com"
)

// Defaults of the options.
const (
	// DefaultWorkers is the default number of pushes in flight at once.
	// APNs answers in tens of milliseconds, so 100 workers sustain
	// thousands of pushes per second over a handful of HTTP/2
	// connections.
	DefaultWorkers = 100
	// DefaultExpiration is how long APNs keeps trying to deliver a push
	// to an offline device by default.
	DefaultExpiration = 24 * time.Hour
	// DefaultCertCheckInterval is how often, at most, a topic's
	// certificate is checked for replacement (on use).
	DefaultCertCheckInterval = 5 * time.Second
	// DefaultMaxRetries is how many times a push refused with
	// TooManyRequests or an APNs fault is tried again.
	DefaultMaxRetries = 3
	// DefaultRetryBackoff is the wait before the first retry; each
	// further retry waits about twice as long, up to maxRetryBackoff.
	DefaultRetryBackoff = 200 * time.Millisecond
)

// maxRetryBackoff caps the wait between two attempts.
const maxRetryBackoff = 10 * time.Second

// invalidateTimeout bounds marking a token in storage; it runs even if
// the push's caller has gone away, so the mark is not lost.
const invalidateTimeout = 10 * time.Second

// ErrClosed is the error of Push on a closed Service.
var ErrClosed = errors.New("apns: push service closed")

// Store is the storage the push service reads: push info of enrollments
// and push certificates. If it also implements storage.PushTokenStore,
// tokens APNs refuses for good are marked there.
type Store interface {
	storage.PushStore
	storage.PushCertStore
}

// Option configures a Service.
type Option func(*config)

type config struct {
	baseURL      string
	workers      int
	expiration   time.Duration
	checkEvery   time.Duration
	maxRetries   int
	retryBackoff time.Duration
	rootCAs      *x509.CertPool
	logger       *slog.Logger
	tokens       storage.PushTokenStore
	results      func(topic string, err error)
}

// WithResultObserver has every push's outcome reported to fn, with its
// topic ("" when the enrollment had no push info) and error (nil for a
// success): the metrics hook.
func WithResultObserver(fn func(topic string, err error)) Option {
	return func(c *config) { c.results = fn }
}

// WithBaseURL sets the APNs environment: "production" (or "", the
// default: ProductionURL), "development" (or "sandbox": DevelopmentURL),
// or any https URL, such as a test server's.
func WithBaseURL(u string) Option { return func(c *config) { c.baseURL = u } }

// WithWorkers sets how many pushes are in flight at once, across all
// concurrent Push calls; 0 means DefaultWorkers.
func WithWorkers(n int) Option { return func(c *config) { c.workers = n } }

// WithExpiration sets apns-expiration to now + d on every push: how long
// APNs keeps trying to reach an offline device (default
// DefaultExpiration). 0 sends no apns-expiration, as NanoMDM does, leaving
// it to APNs' storage policy.
func WithExpiration(d time.Duration) Option { return func(c *config) { c.expiration = d } }

// WithCertCheckInterval sets how often, at most, a topic's certificate is
// checked for replacement when the topic is pushed to (default
// DefaultCertCheckInterval); 0 checks on every push batch.
func WithCertCheckInterval(d time.Duration) Option { return func(c *config) { c.checkEvery = d } }

// WithRetry sets how many times a push refused with TooManyRequests, an
// APNs fault (5xx) or a network error is tried again (default
// DefaultMaxRetries; 0 never retries), and the backoff before the first
// retry (default DefaultRetryBackoff), which doubles on each retry and is
// jittered.
func WithRetry(maxRetries int, backoff time.Duration) Option {
	return func(c *config) { c.maxRetries, c.retryBackoff = maxRetries, backoff }
}

// WithRootCAs sets the certificates APNs' server certificate must chain
// to; nil (the default) means the system's. For test servers.
func WithRootCAs(pool *x509.CertPool) Option { return func(c *config) { c.rootCAs = pool } }

// WithLogger sets the logger; nil means slog.Default().
func WithLogger(logger *slog.Logger) Option { return func(c *config) { c.logger = logger } }

// WithPushTokenStore sets where refused tokens are marked, instead of the
// Store itself (useful when the Store is a wrapper that does not implement
// storage.PushTokenStore).
func WithPushTokenStore(s storage.PushTokenStore) Option { return func(c *config) { c.tokens = s } }

// Service pushes to enrollments through APNs; it implements push.Pusher.
// Build it with NewService and Close it when done. It is safe for
// concurrent use.
type Service struct {
	store        Store
	tokens       storage.PushTokenStore // nil: refused tokens are not marked
	baseURL      string
	expiration   time.Duration
	maxRetries   int
	retryBackoff time.Duration
	logger       *slog.Logger
	conns        *conns

	// jobs feeds the fixed pool of workers; quit stops them.
	jobs    chan job
	quit    chan struct{}
	workers sync.WaitGroup

	// mu is held for reading by every Push call and for writing by
	// Close, so Close waits for pushes in progress and no push starts
	// after it.
	mu     sync.RWMutex
	closed bool

	// results, if set, is told every push's topic and outcome.
	results func(topic string, err error)
	// observe, if set, is told how long each push took (tests and
	// benchmarks).
	observe func(time.Duration)
}

var _ push.Pusher = (*Service)(nil)

// job is one push to one enrollment, handed to a worker. The worker
// fills res and marks done.
type job struct {
	ctx  context.Context
	conn *topicConn
	id   string
	info *mdm.Push
	res  *push.Result
	done *sync.WaitGroup
}

// NewService returns a push service reading push info and certificates
// from store, and starts its workers. It fails on a nil store or an
// invalid option value.
func NewService(store Store, opts ...Option) (*Service, error) {
	if store == nil {
		return nil, errors.New("apns: nil store")
	}
	cfg := config{
		workers:      DefaultWorkers,
		expiration:   DefaultExpiration,
		checkEvery:   DefaultCertCheckInterval,
		maxRetries:   DefaultMaxRetries,
		retryBackoff: DefaultRetryBackoff,
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	base, err := baseURL(cfg.baseURL)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.workers == 0:
		cfg.workers = DefaultWorkers
	case cfg.workers < 0:
		return nil, fmt.Errorf("apns: %d workers: want at least 1", cfg.workers)
	case cfg.expiration < 0:
		return nil, fmt.Errorf("apns: negative expiration %v", cfg.expiration)
	case cfg.checkEvery < 0:
		return nil, fmt.Errorf("apns: negative certificate check interval %v", cfg.checkEvery)
	case cfg.maxRetries < 0 || cfg.retryBackoff < 0:
		return nil, fmt.Errorf("apns: negative retries (%d) or backoff (%v)", cfg.maxRetries, cfg.retryBackoff)
	}
	if cfg.retryBackoff == 0 {
		cfg.retryBackoff = DefaultRetryBackoff
	}
	logger := pmlog.Or(cfg.logger)
	tokens := cfg.tokens
	if tokens == nil {
		tokens, _ = store.(storage.PushTokenStore)
	}
	if tokens == nil {
		logger.Info("apns: storage cannot mark refused push tokens; they will only be reported")
	}
	s := &Service{
		store:        store,
		tokens:       tokens,
		baseURL:      base,
		expiration:   cfg.expiration,
		maxRetries:   cfg.maxRetries,
		retryBackoff: cfg.retryBackoff,
		logger:       logger,
		conns:        newConns(store, cfg.rootCAs, cfg.checkEvery, logger),
		jobs:         make(chan job, cfg.workers),
		results:      cfg.results,
		quit:         make(chan struct{}),
	}
	s.workers.Add(cfg.workers)
	for range cfg.workers {
		go s.work()
	}
	return s, nil
}

// baseURL resolves WithBaseURL's value.
func baseURL(v string) (string, error) {
	switch strings.ToLower(v) {
	case "", "production":
		return ProductionURL, nil
	case "development", "sandbox":
		return DevelopmentURL, nil
	}
	u, err := url.Parse(v)
	if err != nil {
		return "", fmt.Errorf("apns: base URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("apns: base URL %q: want production, development or https://host[:port]", v)
	}
	return strings.TrimSuffix(v, "/"), nil
}

// Close stops the workers and closes every APNs connection, after waiting
// for Push calls in progress. Push fails with ErrClosed afterwards. Close
// always returns nil; its signature fits shutdown hooks.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.quit)
	s.mu.Unlock()
	s.workers.Wait()
	s.conns.closeAll()
	return nil
}

// Push implements push.Pusher: it pushes to every enrollment in ids and
// returns a result per ID — the apns-id, or the reason it failed. Push
// info for all ids is read in one storage call; enrollments that are
// unknown, disabled or without a token get push.ErrNoPushInfo, and those
// whose topic has no certificate an error wrapping push.ErrNoPushCert,
// without a push. The whole call fails only if push info cannot be read
// or the service is closed. If ctx ends, pushes not yet sent fail with its
// error.
func (s *Service) Push(ctx context.Context, ids []string) (map[string]*push.Result, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	unique := make([]string, 0, len(ids))
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; !dup {
			seen[id] = struct{}{}
			unique = append(unique, id)
		}
	}
	results := make(map[string]*push.Result, len(unique))
	if len(unique) == 0 {
		return results, nil
	}
	infos, err := s.store.RetrievePushInfo(ctx, unique)
	if err != nil {
		return nil, fmt.Errorf("apns: retrieving push info: %w", err)
	}

	// One allocation for every result; workers write each their own.
	slots := make([]push.Result, len(unique))
	byTopic := make(map[string][]int)
	for i, id := range unique {
		results[id] = &slots[i]
		info := infos[id]
		if info == nil || len(info.Token) == 0 {
			slots[i].Err = push.ErrNoPushInfo
			continue
		}
		byTopic[info.Topic] = append(byTopic[info.Topic], i)
	}

	start := time.Now()
	var done sync.WaitGroup
	var acquired []*topicConn
	for topic, idx := range byTopic {
		conn, err := s.conns.acquire(ctx, topic)
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				err = fmt.Errorf("%w %q", push.ErrNoPushCert, topic)
			} else {
				s.logger.ErrorContext(ctx, "apns: loading push certificate", "topic", topic, "err", err)
				err = fmt.Errorf("apns: %w", err)
			}
			for _, i := range idx {
				slots[i].Err = err
			}
			continue
		}
		acquired = append(acquired, conn)
		for _, i := range idx {
			j := job{ctx: ctx, conn: conn, id: unique[i], info: infos[unique[i]], res: &slots[i], done: &done}
			done.Add(1)
			select {
			case s.jobs <- j:
			case <-ctx.Done():
				done.Done()
				slots[i].Err = notSent(ctx)
			}
		}
	}
	done.Wait()
	for _, c := range acquired {
		s.conns.release(c)
	}

	if s.results != nil {
		for i, id := range unique {
			topic := ""
			if info := infos[id]; info != nil {
				topic = info.Topic
			}
			s.results(topic, slots[i].Err)
		}
	}
	if s.logger.Enabled(ctx, slog.LevelDebug) {
		failed := 0
		for i := range slots {
			if slots[i].Err != nil {
				failed++
			}
		}
		s.logger.DebugContext(ctx, "apns: pushed", "ids", len(unique), "topics", len(byTopic), "failed", failed, "took", time.Since(start))
	}
	return results, nil
}

func notSent(ctx context.Context) error {
	return fmt.Errorf("apns: push not sent: %w", context.Cause(ctx))
}

// work is one worker: it sends pushes until the service closes.
func (s *Service) work() {
	defer s.workers.Done()
	for {
		select {
		case <-s.quit:
			return
		case j := <-s.jobs:
			s.do(j)
		}
	}
}

// do sends one push and records its outcome.
func (s *Service) do(j job) {
	defer j.done.Done()
	if j.ctx.Err() != nil {
		j.res.Err = notSent(j.ctx)
		return
	}
	start := time.Now()
	apnsID, err := s.send(j.ctx, j.conn, j.info)
	if s.observe != nil {
		s.observe(time.Since(start))
	}
	if err == nil {
		j.res.APNsID = apnsID
		return
	}
	j.res.Err = err
	var apnsErr *Error
	switch {
	case errors.As(err, &apnsErr):
		if apnsErr.InvalidToken() {
			s.invalidate(j.ctx, j.id, apnsErr)
		}
		if apnsErr.CertificateProblem() {
			s.conns.recheck(j.conn)
		}
	case isTLSRefusal(err):
		s.conns.recheck(j.conn)
	}
}

// invalidate marks id's token as refused by APNs.
func (s *Service) invalidate(ctx context.Context, id string, apnsErr *Error) {
	if s.tokens == nil {
		return
	}
	reason := apnsErr.Reason
	if reason == "" {
		reason = strconv.Itoa(apnsErr.Status)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), invalidateTimeout)
	defer cancel()
	if err := s.tokens.InvalidatePushToken(ctx, id, reason); err != nil {
		s.logger.WarnContext(ctx, "apns: marking push token invalid", "id", id, "reason", reason, "err", err)
		return
	}
	s.logger.DebugContext(ctx, "apns: push token refused; marked invalid", "id", id, "reason", reason)
}

// Header values every MDM push carries (Apple, "Sending notification
// requests to APNs"): push type mdm, and priority 10, send immediately.
var (
	pushTypeMDM       = []string{"mdm"}
	priorityImmediate = []string{"10"}
)

// mdmPayload is the body of an MDM push: just the enrollment's PushMagic
// (Apple, "Sending MDM commands to a device").
type mdmPayload struct {
	MDM string `json:"mdm"`
}

// send pushes to one enrollment, retrying TooManyRequests, APNs faults
// and network errors up to s.maxRetries times.
func (s *Service) send(ctx context.Context, conn *topicConn, info *mdm.Push) (string, error) {
	body, err := json.Marshal(mdmPayload{MDM: info.PushMagic})
	if err != nil {
		return "", fmt.Errorf("apns: encoding payload: %w", err)
	}
	u := s.baseURL + "/3/device/" + hex.EncodeToString(info.Token)
	for attempt := 0; ; attempt++ {
		apnsID, err := s.sendOnce(ctx, conn, u, body)
		if err == nil || attempt >= s.maxRetries || !retryable(ctx, err) {
			return apnsID, err
		}
		t := time.NewTimer(s.backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("%w; giving up retrying: %w", err, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// backoff returns the wait before retry attempt+1: exponential, with
// "equal jitter" (half fixed, half random) so that many pushes refused at
// once do not come back at once.
func (s *Service) backoff(attempt int) time.Duration {
	d := s.retryBackoff << min(attempt, 20)
	if d <= 0 || d > maxRetryBackoff {
		d = maxRetryBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// retryable reports whether a failed attempt may succeed if repeated:
// TooManyRequests and APNs faults, and network errors other than a
// refused TLS handshake or a timeout (an APNs that did not answer in
// requestTimeout would only make the caller wait that long again) — and
// nothing once ctx is done.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var apnsErr *Error
	if errors.As(err, &apnsErr) {
		return apnsErr.Retryable()
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return false
	}
	return !isTLSRefusal(err) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// sendOnce makes one attempt: POST {base}/3/device/{token}.
func (s *Service) sendOnce(ctx context.Context, conn *topicConn, u string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("apns: building request: %w", err)
	}
	// Canonical keys and shared read-only values: no allocation per
	// push for what never changes (HTTP/2 sends the names lower-case).
	req.Header = http.Header{
		"Apns-Topic":     conn.topicHeader,
		"Apns-Push-Type": pushTypeMDM,
		"Apns-Priority":  priorityImmediate,
	}
	if s.expiration > 0 {
		req.Header["Apns-Expiration"] = []string{strconv.FormatInt(time.Now().Add(s.expiration).Unix(), 10)}
	}
	resp, err := conn.client.Do(req)
	if err != nil {
		// The *url.Error would repeat the URL, and so the device token,
		// in every API answer and log line.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return "", fmt.Errorf("apns: sending push: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		// Reading to the end lets the stream finish cleanly instead
		// of being reset; a 200 has no body worth reading.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return resp.Header.Get("apns-id"), nil
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	apnsErr := &Error{Status: resp.StatusCode, APNsID: resp.Header.Get("apns-id")}
	var refusal struct {
		Reason    string `json:"reason"`
		Timestamp int64  `json:"timestamp"`
	}
	if json.Unmarshal(answer, &refusal) == nil {
		apnsErr.Reason = refusal.Reason
		if refusal.Timestamp > 0 {
			apnsErr.Timestamp = time.UnixMilli(refusal.Timestamp)
		}
	}
	return "", apnsErr
}
