package apns

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/picomdm/picomdm/storage"
)

// Connection tuning. APNs asks providers to keep their connections open
// across pushes rather than reconnecting, and suggests PING frames to check
// an idle connection's health.
const (
	// requestTimeout bounds one attempt of one push, connecting included.
	requestTimeout = 30 * time.Second
	// healthCheckIdle is how long a connection may receive nothing
	// before a PING checks it; pingTimeout is how long the PING may go
	// unanswered before the connection is dropped.
	healthCheckIdle = time.Minute
	pingTimeout     = 15 * time.Second
	// writeByteTimeout drops a connection that cannot write at all.
	writeByteTimeout = 30 * time.Second
)

// topicConn is one topic's APNs client: an HTTP/2 connection pool that
// authenticates with one version of the topic's certificate. It lives
// until the certificate is replaced (or the service closes); connections
// are reused by every push meanwhile.
type topicConn struct {
	topic      string
	staleToken string
	// topicHeader is the apns-topic header value, shared read-only by
	// every request.
	topicHeader []string
	transport   *http2.Transport
	client      *http.Client

	// mu guards users, retired and open: a retired connection pool is
	// closed once its last user (a push batch) releases it, so replacing
	// a certificate never cuts pushes in flight.
	mu      sync.Mutex
	users   int
	retired bool
	// open holds the pool's connections. Closing them ourselves is
	// deterministic where Transport.CloseIdleConnections is not: it
	// skips a connection whose last stream is still being torn down,
	// and health-check PINGs would then keep that one alive for good.
	open map[*trackedConn]struct{}
}

// trackedConn is a connection of a topicConn's pool; embedding *tls.Conn
// keeps ConnectionState, which the HTTP/2 transport reads.
type trackedConn struct {
	*tls.Conn
	owner *topicConn
}

// Close implements net.Conn, forgetting the connection.
func (c *trackedConn) Close() error {
	c.owner.mu.Lock()
	delete(c.owner.open, c)
	c.owner.mu.Unlock()
	return c.Conn.Close()
}

// dialTLS dials a connection for the pool and tracks it: the transport's
// own TLS dial with the same configuration (client certificate, ALPN h2)
// and the same check that the server speaks HTTP/2.
func (c *topicConn) dialTLS(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: conn.(*tls.Conn), owner: c}
	if p := tc.ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
		tc.Conn.Close()
		return nil, fmt.Errorf("server at %s does not speak HTTP/2 (ALPN %q)", addr, p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.retired && c.users == 0 {
		// Dialled for a push that has given up meanwhile.
		tc.Conn.Close()
		return nil, errors.New("connection pool closed: push certificate replaced")
	}
	c.open[tc] = struct{}{}
	return tc, nil
}

// retire marks c as replaced, closing it now if no batch uses it.
func (c *topicConn) retire() {
	c.mu.Lock()
	c.retired = true
	idle := c.users == 0
	c.mu.Unlock()
	if idle {
		c.close()
	}
}

// close closes every connection of c's pool. Callers make sure no push
// uses it any more.
func (c *topicConn) close() {
	c.mu.Lock()
	conns := make([]*trackedConn, 0, len(c.open))
	for tc := range c.open {
		conns = append(conns, tc)
	}
	c.mu.Unlock()
	for _, tc := range conns {
		tc.Close()
	}
	c.transport.CloseIdleConnections()
}

// topicState is what the cache knows of one topic.
type topicState struct {
	// mu serialises loading and checking the topic's certificate, so
	// that concurrent batches share one store lookup.
	mu   sync.Mutex
	conn *topicConn // nil until loaded
	// checkedAt is when conn's certificate was last found current;
	// recheck forces a check on next use (after a certificate error).
	checkedAt time.Time
	recheck   bool
}

// conns caches one topicConn per topic, loaded from storage on first use
// and replaced when its certificate goes stale.
//
// Staleness is checked on use, never in the background: when a push batch
// for a topic starts and the topic was last checked at least checkEvery
// ago (one IsPushCertStale call; every batch with checkEvery 0), or right
// away after APNs or the TLS handshake refused the certificate. A
// certificate replaced through any replica is thus in use everywhere
// within checkEvery, at a cost of at most one cheap storage read per topic
// per checkEvery.
type conns struct {
	store      storage.PushCertStore
	rootCAs    *x509.CertPool
	checkEvery time.Duration
	logger     *slog.Logger
	now        func() time.Time

	mu     sync.Mutex
	topics map[string]*topicState
}

func newConns(store storage.PushCertStore, rootCAs *x509.CertPool, checkEvery time.Duration, logger *slog.Logger) *conns {
	return &conns{
		store:      store,
		rootCAs:    rootCAs,
		checkEvery: checkEvery,
		logger:     logger,
		now:        time.Now,
		topics:     make(map[string]*topicState),
	}
}

// acquire returns topic's current connection pool, loading or reloading
// its certificate as needed. The caller releases it when its batch is
// done. An unknown topic fails with an error wrapping storage.ErrNotFound.
func (cs *conns) acquire(ctx context.Context, topic string) (*topicConn, error) {
	cs.mu.Lock()
	ts := cs.topics[topic]
	if ts == nil {
		ts = new(topicState)
		cs.topics[topic] = ts
	}
	cs.mu.Unlock()

	ts.mu.Lock()
	defer ts.mu.Unlock()
	now := cs.now()
	switch {
	case ts.conn == nil:
		if err := cs.load(ctx, topic, ts, now); err != nil {
			return nil, err
		}
	case ts.recheck || now.Sub(ts.checkedAt) >= cs.checkEvery:
		stale, err := cs.store.IsPushCertStale(ctx, topic, ts.conn.staleToken)
		switch {
		case err != nil:
			// A storage hiccup should not stop pushes: keep the
			// certificate in hand and check again next time.
			cs.logger.WarnContext(ctx, "apns: checking push certificate", "topic", topic, "err", err)
		case stale:
			err := cs.load(ctx, topic, ts, now)
			if errors.Is(err, storage.ErrNotFound) {
				ts.conn.retire()
				ts.conn = nil
				return nil, err
			}
			if err != nil {
				cs.logger.WarnContext(ctx, "apns: reloading push certificate; still using the previous one", "topic", topic, "err", err)
			}
		default:
			ts.checkedAt, ts.recheck = now, false
		}
	}
	c := ts.conn
	c.mu.Lock()
	c.users++
	c.mu.Unlock()
	return c, nil
}

// release ends a batch's use of c.
func (cs *conns) release(c *topicConn) {
	c.mu.Lock()
	c.users--
	idle := c.retired && c.users == 0
	c.mu.Unlock()
	if idle {
		c.close()
	}
}

// recheck makes the next batch of c's topic check its certificate.
func (cs *conns) recheck(c *topicConn) {
	cs.mu.Lock()
	ts := cs.topics[c.topic]
	cs.mu.Unlock()
	if ts == nil {
		return
	}
	ts.mu.Lock()
	if ts.conn == c {
		ts.recheck = true
	}
	ts.mu.Unlock()
}

// load reads topic's certificate and makes it ts's connection pool,
// retiring the previous one. Callers hold ts.mu.
func (cs *conns) load(ctx context.Context, topic string, ts *topicState, now time.Time) error {
	cert, staleToken, err := cs.store.RetrievePushCert(ctx, topic)
	if err != nil {
		return fmt.Errorf("loading push certificate of %q: %w", topic, err)
	}
	c := cs.newTopicConn(topic, cert, staleToken)
	if ts.conn != nil {
		ts.conn.retire()
		cs.logger.InfoContext(ctx, "apns: push certificate replaced", "topic", topic)
	}
	ts.conn, ts.checkedAt, ts.recheck = c, now, false
	return nil
}

// newTopicConn builds the HTTP/2 client that authenticates with cert.
// golang.org/x/net/http2's Transport speaks only HTTP/2, as APNs does, so
// no request ever falls back to HTTP/1.1.
func (cs *conns) newTopicConn(topic string, cert *tls.Certificate, staleToken string) *topicConn {
	c := &topicConn{
		topic:       topic,
		staleToken:  staleToken,
		topicHeader: []string{topic},
		open:        make(map[*trackedConn]struct{}),
	}
	c.transport = &http2.Transport{
		DialTLSContext: c.dialTLS,
		TLSClientConfig: &tls.Config{
			Certificates: []tls.Certificate{*cert},
			RootCAs:      cs.rootCAs,
			MinVersion:   tls.VersionTLS12,
		},
		// APNs answers are a few bytes of JSON.
		DisableCompression: true,
		ReadIdleTimeout:    healthCheckIdle,
		PingTimeout:        pingTimeout,
		WriteByteTimeout:   writeByteTimeout,
	}
	c.client = &http.Client{
		Transport: c.transport,
		Timeout:   requestTimeout,
		// APNs never redirects; following one would send the push
		// (and its PushMagic) elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c
}

// closeAll retires every topic's connection pool.
func (cs *conns) closeAll() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for topic, ts := range cs.topics {
		ts.mu.Lock()
		if ts.conn != nil {
			ts.conn.retire()
			ts.conn = nil
		}
		ts.mu.Unlock()
		delete(cs.topics, topic)
	}
}

// isTLSRefusal reports whether err is a TLS handshake failure that
// retrying will not fix: the server refused our certificate (a TLS alert
// from APNs, e.g. "bad certificate" or "certificate expired"), or we
// refused the server's.
func isTLSRefusal(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		return true
	}
	var verifyErr *tls.CertificateVerificationError
	var alert tls.AlertError
	return errors.As(err, &verifyErr) || errors.As(err, &alert)
}
