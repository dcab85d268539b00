package apns

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/push"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/apnsmock"
)

var quiet = slog.New(slog.DiscardHandler)

// fixture is a store and a mock APNs to push to.
type fixture struct {
	store *inmem.Store
	mock  *apnsmock.Server
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{store: inmem.New(), mock: apnsmock.New()}
	t.Cleanup(f.mock.Close)
	return f
}

// service returns a push service for f's store and mock, retrying fast,
// closed when the test ends.
func (f *fixture) service(t testing.TB, opts ...Option) *Service {
	t.Helper()
	base := []Option{
		WithBaseURL(f.mock.URL),
		WithRootCAs(f.mock.RootCAs()),
		WithRetry(DefaultMaxRetries, time.Millisecond),
		WithLogger(quiet),
	}
	s, err := NewService(f.store, append(base, opts...)...)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// storeCert stores a new push certificate for topic and returns its
// Subject, as the mock reports it.
func (f *fixture) storeCert(t testing.TB, topic string) string {
	t.Helper()
	certPEM, keyPEM := storagetest.NewPushCert(topic)
	if err := f.store.StorePushCert(context.Background(), certPEM, keyPEM); err != nil {
		t.Fatalf("storing push cert: %v", err)
	}
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.Subject.String()
}

// enroll enrolls n devices on topic.
func (f *fixture) enroll(t testing.TB, topic string, n int) []*storagetest.Channel {
	t.Helper()
	cert := storagetest.NewIdentityCert("apns test fleet")
	devs := make([]*storagetest.Channel, n)
	for i := range devs {
		keys := mdm.Enrollment{UDID: storagetest.NewUUID()}
		id, err := keys.Resolve()
		if err != nil {
			t.Fatal(err)
		}
		d := &storagetest.Channel{Keys: keys, EnrollID: id, Cert: cert}
		d.RotatePushToken()
		d.Push.Topic = topic
		if err := f.store.StoreTokenUpdate(d.Request(), d.TokenUpdate(nil)); err != nil {
			t.Fatalf("TokenUpdate: %v", err)
		}
		devs[i] = d
	}
	return devs
}

func idsOf(chans ...*storagetest.Channel) []string {
	ids := make([]string, len(chans))
	for i, c := range chans {
		ids[i] = c.ID()
	}
	return ids
}

// mustPush pushes to ids and fails on a whole-call error or a missing
// result.
func mustPush(t testing.TB, s *Service, ids ...string) map[string]*push.Result {
	t.Helper()
	res, err := s.Push(context.Background(), ids)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	for _, id := range ids {
		if res[id] == nil {
			t.Fatalf("no result for %s", id)
		}
	}
	return res
}

// wantPushed asserts that every id was pushed successfully.
func wantPushed(t testing.TB, res map[string]*push.Result, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if r := res[id]; r == nil || r.Err != nil || r.APNsID == "" {
			t.Fatalf("push to %s: %+v, want an apns-id", id, r)
		}
	}
}

func TestPushRequest(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       []Option
		expiration time.Duration // 0: no header
	}{
		{"default expiration", nil, DefaultExpiration},
		{"configured expiration", []Option{WithExpiration(90 * time.Minute)}, 90 * time.Minute},
		{"no expiration", []Option{WithExpiration(0)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			topic := storagetest.NewTopic()
			subject := f.storeCert(t, topic)
			d := f.enroll(t, topic, 1)[0]
			s := f.service(t, tc.opts...)

			before := time.Now()
			res := mustPush(t, s, d.ID())
			after := time.Now()
			wantPushed(t, res, d.ID())

			reqs := f.mock.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost || r.Path != "/3/device/"+hex.EncodeToString(d.Push.Token) || r.Proto != "HTTP/2.0" {
				t.Fatalf("request line %s %s %s", r.Method, r.Path, r.Proto)
			}
			if want := `{"mdm":"` + d.Push.PushMagic + `"}`; string(r.Body) != want {
				t.Fatalf("body %q, want %q", r.Body, want)
			}
			for name, want := range map[string]string{"apns-topic": topic, "apns-push-type": "mdm", "apns-priority": "10"} {
				if got := r.Header.Values(name); len(got) != 1 || got[0] != want {
					t.Fatalf("header %s = %q, want [%q]", name, got, want)
				}
			}
			exp := r.Header.Values("apns-expiration")
			if tc.expiration == 0 {
				if len(exp) != 0 {
					t.Fatalf("apns-expiration %q, want none", exp)
				}
			} else {
				if len(exp) != 1 {
					t.Fatalf("apns-expiration %q, want one value", exp)
				}
				sec, err := strconv.ParseInt(exp[0], 10, 64)
				if err != nil {
					t.Fatalf("apns-expiration %q: %v", exp[0], err)
				}
				if lo, hi := before.Add(tc.expiration).Unix(), after.Add(tc.expiration).Unix(); sec < lo || sec > hi {
					t.Fatalf("apns-expiration %d, want within [%d, %d]", sec, lo, hi)
				}
			}
			for _, name := range []string{"apns-id", "apns-collapse-id", "authorization"} {
				if v := r.Header.Get(name); v != "" {
					t.Fatalf("unexpected header %s: %q", name, v)
				}
			}
			if r.ClientTopic != topic || r.ClientSubject != subject {
				t.Fatalf("client certificate %q (topic %q), want %q (%q)", r.ClientSubject, r.ClientTopic, subject, topic)
			}
			if res[d.ID()].APNsID == "" || r.Response.Status != http.StatusOK {
				t.Fatalf("result %+v for answer %+v", res[d.ID()], r.Response)
			}
		})
	}
}

func TestPushMultiTopic(t *testing.T) {
	f := newFixture(t)
	topicA, topicB, noCert := storagetest.NewTopic(), storagetest.NewTopic(), storagetest.NewTopic()
	subjects := map[string]string{topicA: f.storeCert(t, topicA), topicB: f.storeCert(t, topicB)}
	a, b, orphans := f.enroll(t, topicA, 5), f.enroll(t, topicB, 5), f.enroll(t, noCert, 2)
	s := f.service(t)

	// One batch spanning both topics (interleaved), twice: the second
	// reuses each topic's connection pool.
	var ids []string
	for i := range a {
		ids = append(ids, a[i].ID(), b[i].ID())
	}
	ids = append(ids, idsOf(orphans...)...)
	for range 2 {
		res := mustPush(t, s, ids...)
		wantPushed(t, res, idsOf(append(a, b...)...)...)
		for _, o := range orphans {
			if err := res[o.ID()].Err; !errors.Is(err, push.ErrNoPushCert) || !strings.Contains(err.Error(), noCert) {
				t.Fatalf("push to %s on a topic without certificate: %v, want ErrNoPushCert naming the topic", o.ID(), err)
			}
		}
	}
	tokenTopic := make(map[string]string)
	for _, d := range a {
		tokenTopic[hex.EncodeToString(d.Push.Token)] = topicA
	}
	for _, d := range b {
		tokenTopic[hex.EncodeToString(d.Push.Token)] = topicB
	}
	reqs := f.mock.Requests()
	if len(reqs) != 2*(len(a)+len(b)) {
		t.Fatalf("%d requests, want %d (none for the topic without certificate)", len(reqs), 2*(len(a)+len(b)))
	}
	for _, r := range reqs {
		topic := tokenTopic[r.Token]
		if r.Header.Get("apns-topic") != topic || r.ClientTopic != topic || r.ClientSubject != subjects[topic] {
			t.Fatalf("push to %s: apns-topic %q over certificate %q (topic %q), want %q over %q",
				r.Token, r.Header.Get("apns-topic"), r.ClientSubject, r.ClientTopic, topic, subjects[topic])
		}
	}
}

// TestCertRotation: two services over one store are two replicas; a
// certificate replaced through the store is used by both on their next
// push, without a restart.
func TestCertRotation(t *testing.T) {
	f := newFixture(t)
	topic := storagetest.NewTopic()
	oldSubject := f.storeCert(t, topic)
	d := f.enroll(t, topic, 1)[0]
	replicas := []*Service{f.service(t, WithCertCheckInterval(0)), f.service(t, WithCertCheckInterval(0))}

	lastSubject := func() string {
		t.Helper()
		reqs := f.mock.Requests()
		return reqs[len(reqs)-1].ClientSubject
	}
	for i, s := range replicas {
		wantPushed(t, mustPush(t, s, d.ID()), d.ID())
		if got := lastSubject(); got != oldSubject {
			t.Fatalf("replica %d pushed with %q, want %q", i, got, oldSubject)
		}
	}
	newSubject := f.storeCert(t, topic)
	for i, s := range replicas {
		wantPushed(t, mustPush(t, s, d.ID()), d.ID())
		if got := lastSubject(); got != newSubject {
			t.Fatalf("replica %d pushed with %q after rotation, want the new %q", i, got, newSubject)
		}
	}
}

// TestCertCheckInterval: with an interval, a replaced certificate is
// noticed at the first push after the interval, and the store is asked
// at most once per interval.
func TestCertCheckInterval(t *testing.T) {
	f := newFixture(t)
	topic := storagetest.NewTopic()
	oldSubject := f.storeCert(t, topic)
	d := f.enroll(t, topic, 1)[0]
	counting := &countingStore{Store: f.store}
	s, err := NewService(counting, WithBaseURL(f.mock.URL), WithRootCAs(f.mock.RootCAs()), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	var clock sync.Mutex
	s.conns.now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	advance := func(d time.Duration) { clock.Lock(); now = now.Add(d); clock.Unlock() }
	lastSubject := func() string { reqs := f.mock.Requests(); return reqs[len(reqs)-1].ClientSubject }

	for range 5 {
		wantPushed(t, mustPush(t, s, d.ID()), d.ID())
	}
	if n := counting.staleChecks(); n != 0 {
		t.Fatalf("%d staleness checks within the interval, want 0", n)
	}
	newSubject := f.storeCert(t, topic)
	advance(DefaultCertCheckInterval - time.Second)
	wantPushed(t, mustPush(t, s, d.ID()), d.ID())
	if got := lastSubject(); got != oldSubject {
		t.Fatalf("within the interval pushed with %q, want the old certificate", got)
	}
	advance(time.Second)
	wantPushed(t, mustPush(t, s, d.ID()), d.ID())
	if got := lastSubject(); got != newSubject {
		t.Fatalf("after the interval pushed with %q, want the new certificate", got)
	}
	if n := counting.staleChecks(); n != 1 {
		t.Fatalf("%d staleness checks, want 1", n)
	}
}

// TestRotationDuringPush: pushes in flight when a certificate is replaced
// finish over the old connection, which is closed once they are done.
func TestRotationDuringPush(t *testing.T) {
	f := newFixture(t)
	topic := storagetest.NewTopic()
	oldSubject := f.storeCert(t, topic)
	devs := f.enroll(t, topic, 4)
	early, late := devs[:2], devs[2:]
	s := f.service(t, WithCertCheckInterval(0))

	f.mock.SetDelay(300 * time.Millisecond)
	done := make(chan map[string]*push.Result)
	go func() {
		res, err := s.Push(context.Background(), idsOf(early...))
		if err != nil {
			t.Errorf("Push: %v", err)
		}
		done <- res
	}()
	if !settle(func() bool { return f.mock.MaxInFlight() == int64(len(early)) }) {
		t.Fatal("the early pushes never reached the server")
	}
	f.mock.SetDelay(0)
	newSubject := f.storeCert(t, topic)
	wantPushed(t, mustPush(t, s, idsOf(late...)...), idsOf(late...)...)
	wantPushed(t, <-done, idsOf(early...)...)

	for _, r := range f.mock.Requests() {
		want := newSubject
		if r.Token == hex.EncodeToString(early[0].Push.Token) || r.Token == hex.EncodeToString(early[1].Push.Token) {
			want = oldSubject
		}
		if r.ClientSubject != want {
			t.Fatalf("push to %s over %q, want %q", r.Token, r.ClientSubject, want)
		}
	}
	if !settle(func() bool { return f.mock.OpenConns() == 1 }) {
		t.Fatalf("%d connections open, want 1: the old certificate's was not closed after its last push", f.mock.OpenConns())
	}
}

// countingStore counts IsPushCertStale calls.
type countingStore struct {
	*inmem.Store
	mu     sync.Mutex
	checks int
}

func (c *countingStore) IsPushCertStale(ctx context.Context, topic, token string) (bool, error) {
	c.mu.Lock()
	c.checks++
	c.mu.Unlock()
	return c.Store.IsPushCertStale(ctx, topic, token)
}

func (c *countingStore) staleChecks() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checks
}

func TestPushAPNsAnswers(t *testing.T) {
	busy := apnsmock.Response{Status: http.StatusTooManyRequests, Reason: ReasonTooManyRequests}
	fault := apnsmock.Response{Status: http.StatusInternalServerError, Reason: ReasonInternalServerError}
	down := apnsmock.Response{Status: http.StatusServiceUnavailable, Reason: ReasonServiceUnavailable}
	ok := apnsmock.Response{}
	for _, tc := range []struct {
		name         string
		answers      []apnsmock.Response
		wantRequests int
		wantStatus   int    // 0: success
		wantReason   string // in the error text
		wantInvalid  bool   // token marked in storage
	}{
		{"200", []apnsmock.Response{ok}, 1, 0, "", false},
		{"410 Unregistered", []apnsmock.Response{{Status: 410, Reason: ReasonUnregistered}}, 1, 410, ReasonUnregistered, true},
		{"410 ExpiredToken", []apnsmock.Response{{Status: 410, Reason: ReasonExpiredToken}}, 1, 410, ReasonExpiredToken, true},
		{"400 BadDeviceToken", []apnsmock.Response{{Status: 400, Reason: ReasonBadDeviceToken}}, 1, 400, ReasonBadDeviceToken, true},
		{"400 DeviceTokenNotForTopic", []apnsmock.Response{{Status: 400, Reason: ReasonDeviceTokenNotForTopic}}, 1, 400, ReasonDeviceTokenNotForTopic, true},
		{"400 BadTopic: no retry, token kept", []apnsmock.Response{{Status: 400, Reason: ReasonBadTopic}}, 1, 400, ReasonBadTopic, false},
		{"403 BadCertificate: no retry", []apnsmock.Response{{Status: 403, Reason: ReasonBadCertificate}}, 1, 403, ReasonBadCertificate, false},
		{"400 without a reason", []apnsmock.Response{{Status: 400}}, 1, 400, "no reason given", false},
		{"429 retried, then 200", []apnsmock.Response{busy, busy, ok}, 3, 0, "", false},
		{"500 retried, then 200", []apnsmock.Response{fault, ok}, 2, 0, "", false},
		{"503 then 429 then 500 then 200", []apnsmock.Response{down, busy, fault, ok}, 4, 0, "", false},
		{"429 until giving up", []apnsmock.Response{busy}, 1 + DefaultMaxRetries, 429, ReasonTooManyRequests, false},
		{"503 until giving up", []apnsmock.Response{down}, 1 + DefaultMaxRetries, 503, ReasonServiceUnavailable, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			topic := storagetest.NewTopic()
			f.storeCert(t, topic)
			devs := f.enroll(t, topic, 2)
			d, bystander := devs[0], devs[1]
			f.mock.Respond(d.Push.Token, tc.answers...)
			s := f.service(t)

			res := mustPush(t, s, d.ID(), bystander.ID())
			wantPushed(t, res, bystander.ID())
			got := res[d.ID()]
			if n := len(f.mock.RequestsFor(d.Push.Token)); n != tc.wantRequests {
				t.Fatalf("%d requests, want %d", n, tc.wantRequests)
			}
			if tc.wantStatus == 0 {
				wantPushed(t, res, d.ID())
			} else {
				var apnsErr *Error
				if !errors.As(got.Err, &apnsErr) || apnsErr.Status != tc.wantStatus {
					t.Fatalf("result %+v, want an *Error with status %d", got, tc.wantStatus)
				}
				if got.APNsID != "" || !strings.Contains(got.Err.Error(), tc.wantReason) {
					t.Fatalf("error %q does not carry %q", got.Err, tc.wantReason)
				}
				if apnsErr.InvalidToken() != tc.wantInvalid {
					t.Fatalf("InvalidToken() = %v, want %v", apnsErr.InvalidToken(), tc.wantInvalid)
				}
			}
			ctx := context.Background()
			if valid, err := f.store.PushTokenValid(ctx, d.ID()); err != nil || valid == tc.wantInvalid {
				t.Fatalf("PushTokenValid = %v, %v; want %v", valid, err, !tc.wantInvalid)
			}
			if valid, _ := f.store.PushTokenValid(ctx, bystander.ID()); !valid {
				t.Fatal("the bystander's token was marked")
			}
			if tc.wantInvalid {
				// Push info is unchanged, and the next TokenUpdate
				// clears the mark.
				if info, _ := f.store.RetrievePushInfo(ctx, []string{d.ID()}); info[d.ID()] == nil {
					t.Fatal("a marked enrollment lost its push info")
				}
				d.RotatePushToken()
				if err := f.store.StoreTokenUpdate(d.Request(), d.TokenUpdate(nil)); err != nil {
					t.Fatal(err)
				}
				if valid, _ := f.store.PushTokenValid(ctx, d.ID()); !valid {
					t.Fatal("TokenUpdate did not clear the mark")
				}
			}
		})
	}
}

func TestPushWithoutPushInfo(t *testing.T) {
	f := newFixture(t)
	topic := storagetest.NewTopic()
	f.storeCert(t, topic)
	devs := f.enroll(t, topic, 3)
	enrolled, checkedOut := devs[0], devs[1]
	user := devs[2].NewUser()
	user.Push.Topic = topic
	storagetest.Enroll(t, f.store, user)
	if err := f.store.Disable(checkedOut.Request()); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Disable(user.Request()); err != nil {
		t.Fatal(err)
	}
	s := f.service(t)

	unknown := storagetest.NewUUID()
	ids := []string{unknown, enrolled.ID(), checkedOut.ID(), enrolled.ID(), user.ID(), ""}
	res := mustPush(t, s, ids...)
	if len(res) != 5 {
		t.Fatalf("%d results, want one per distinct ID (5): %v", len(res), res)
	}
	wantPushed(t, res, enrolled.ID())
	for _, id := range []string{unknown, checkedOut.ID(), user.ID(), ""} {
		if err := res[id].Err; !errors.Is(err, push.ErrNoPushInfo) || err.Error() != "no push info: unknown or disabled enrollment" {
			t.Fatalf("push to %q: %v, want ErrNoPushInfo", id, err)
		}
	}
	if reqs := f.mock.Requests(); len(reqs) != 1 || reqs[0].Token != hex.EncodeToString(enrolled.Push.Token) {
		t.Fatalf("requests %+v, want exactly one, to the enabled enrollment", reqs)
	}
	if res, err := s.Push(context.Background(), nil); err != nil || len(res) != 0 {
		t.Fatalf("Push(nil) = %v, %v; want empty, nil", res, err)
	}
}

// failingStore fails RetrievePushInfo.
type failingStore struct{ *inmem.Store }

func (failingStore) RetrievePushInfo(context.Context, []string) (map[string]*mdm.Push, error) {
	return nil, errors.New("database down")
}

func TestPushStoreFailure(t *testing.T) {
	f := newFixture(t)
	s, err := NewService(failingStore{f.store}, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Push(context.Background(), []string{"a"}); err == nil || !strings.Contains(err.Error(), "database down") {
		t.Fatalf("Push = %v, want the store's error for the whole call", err)
	}
}

func TestWorkerBound(t *testing.T) {
	const workers = 3
	f := newFixture(t)
	topic := storagetest.NewTopic()
	f.storeCert(t, topic)
	devs := f.enroll(t, topic, 24)
	f.mock.SetDelay(20 * time.Millisecond)
	s := f.service(t, WithWorkers(workers))

	// Two API requests at once share the one pool.
	var wg sync.WaitGroup
	results := make([]map[string]*push.Result, 2)
	for i, half := range [][]*storagetest.Channel{devs[:12], devs[12:]} {
		wg.Go(func() {
			var err error
			if results[i], err = s.Push(context.Background(), idsOf(half...)); err != nil {
				t.Errorf("Push: %v", err)
			}
		})
	}
	wg.Wait()
	wantPushed(t, results[0], idsOf(devs[:12]...)...)
	wantPushed(t, results[1], idsOf(devs[12:]...)...)
	if n := f.mock.Served(); n != int64(len(devs)) {
		t.Fatalf("%d pushes served, want %d", n, len(devs))
	}
	if m := f.mock.MaxInFlight(); m > workers || m < 2 {
		t.Fatalf("at most %d pushes in flight, want 2..%d", m, workers)
	}
}

func TestContextCancel(t *testing.T) {
	t.Run("pushes not yet sent", func(t *testing.T) {
		f := newFixture(t)
		topic := storagetest.NewTopic()
		f.storeCert(t, topic)
		devs := f.enroll(t, topic, 6)
		f.mock.SetDelay(300 * time.Millisecond)
		s := f.service(t, WithWorkers(1))

		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		res, err := s.Push(ctx, idsOf(devs...))
		if err != nil {
			t.Fatalf("Push: %v", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("Push took %v after its context ended", took)
		}
		for _, d := range devs {
			if r := res[d.ID()]; r == nil || !errors.Is(r.Err, context.DeadlineExceeded) {
				t.Fatalf("push to %s: %+v, want the context's error", d.ID(), r)
			}
		}
	})
	t.Run("retry backoff", func(t *testing.T) {
		f := newFixture(t)
		topic := storagetest.NewTopic()
		f.storeCert(t, topic)
		d := f.enroll(t, topic, 1)[0]
		f.mock.Respond(d.Push.Token, apnsmock.Response{Status: 503, Reason: ReasonServiceUnavailable})
		s := f.service(t, WithRetry(3, time.Hour))

		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		res, err := s.Push(ctx, []string{d.ID()})
		if err != nil {
			t.Fatalf("Push: %v", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("Push took %v: the backoff ignored the context", took)
		}
		if n := len(f.mock.Requests()); n != 1 {
			t.Fatalf("%d requests, want 1 (the retry waits out the context)", n)
		}
		err = res[d.ID()].Err
		var apnsErr *Error
		if !errors.As(err, &apnsErr) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want the APNs error and the context's", err)
		}
	})
}

func TestUntrustedServer(t *testing.T) {
	f := newFixture(t)
	topic := storagetest.NewTopic()
	f.storeCert(t, topic)
	d := f.enroll(t, topic, 1)[0]
	// No WithRootCAs: the mock's self-signed certificate is not trusted.
	s, err := NewService(f.store, WithBaseURL(f.mock.URL), WithRetry(3, time.Hour), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	res := mustPush(t, s, d.ID())
	if err := res[d.ID()].Err; err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("push: %v, want a certificate error", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v: a refused handshake was retried", took)
	}
	if n := f.mock.Served(); n != 0 {
		t.Fatalf("%d requests reached the server", n)
	}
}

// settle polls cond for up to 10s, for goroutines and connections that
// wind down asynchronously.
func settle(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestNoLeak: a rotated certificate's connections are closed once the
// pushes using them are done, and Close leaves no goroutine and no
// connection behind. The mock stays up throughout, so only the client
// can have closed them.
func TestNoLeak(t *testing.T) {
	f := newFixture(t)
	topicA, topicB := storagetest.NewTopic(), storagetest.NewTopic()
	f.storeCert(t, topicA)
	f.storeCert(t, topicB)
	devs := append(f.enroll(t, topicA, 20), f.enroll(t, topicB, 20)...)
	f.mock.Respond(devs[0].Push.Token, apnsmock.Response{Status: 429, Reason: ReasonTooManyRequests})
	before := runtime.NumGoroutine()

	s, err := NewService(f.store, WithBaseURL(f.mock.URL), WithRootCAs(f.mock.RootCAs()),
		WithRetry(2, time.Millisecond), WithCertCheckInterval(0), WithWorkers(8), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	mustPush(t, s, idsOf(devs...)...)
	if n := f.mock.OpenConns(); n != 2 {
		t.Fatalf("%d connections open, want one per topic (2)", n)
	}
	mustPush(t, s, idsOf(devs...)...)
	if n := f.mock.OpenConns(); n != 2 {
		t.Fatalf("%d connections open after a second batch, want the same 2 reused", n)
	}
	f.storeCert(t, topicA) // rotation retires topic A's connection pool
	mustPush(t, s, idsOf(devs...)...)
	if !settle(func() bool { return f.mock.OpenConns() == 2 }) {
		t.Fatalf("%d connections open after rotation, want 2: the retired one was not closed", f.mock.OpenConns())
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push(context.Background(), idsOf(devs...)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Push after Close: %v, want ErrClosed", err)
	}
	s.Close() // twice is fine
	if !settle(func() bool { return f.mock.OpenConns() == 0 }) {
		t.Fatalf("%d connections still open after Close", f.mock.OpenConns())
	}
	var now int
	if !settle(func() bool { now = runtime.NumGoroutine(); return now <= before }) {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before, %d after Close:\n%s", before, now, buf[:runtime.Stack(buf, true)])
	}
}

func TestNewService(t *testing.T) {
	store := inmem.New()
	for _, tc := range []struct {
		name    string
		opts    []Option
		wantURL string // "" means an error
	}{
		{"default", nil, ProductionURL},
		{"production", []Option{WithBaseURL("production")}, ProductionURL},
		{"development", []Option{WithBaseURL("development")}, DevelopmentURL},
		{"sandbox", []Option{WithBaseURL("Sandbox")}, DevelopmentURL},
		{"test server", []Option{WithBaseURL("https://127.0.0.1:8443/")}, "https://127.0.0.1:8443"},
		{"http refused", []Option{WithBaseURL("http://127.0.0.1:8080")}, ""},
		{"garbage refused", []Option{WithBaseURL("::not a url")}, ""},
		{"negative workers", []Option{WithWorkers(-1)}, ""},
		{"negative expiration", []Option{WithExpiration(-time.Second)}, ""},
		{"negative interval", []Option{WithCertCheckInterval(-time.Second)}, ""},
		{"negative retries", []Option{WithRetry(-1, 0)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewService(store, append(tc.opts, WithLogger(quiet))...)
			if tc.wantURL == "" {
				if err == nil {
					s.Close()
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.baseURL != tc.wantURL {
				t.Fatalf("base URL %q, want %q", s.baseURL, tc.wantURL)
			}
		})
	}
	if _, err := NewService(nil); err == nil {
		t.Fatal("NewService(nil): no error")
	}
	// A store that cannot mark tokens is fine; one can be given.
	s, err := NewService(struct{ Store }{store}, WithPushTokenStore(store), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.tokens != storage.PushTokenStore(store) {
		t.Fatal("WithPushTokenStore ignored")
	}
}

func TestError(t *testing.T) {
	for _, tc := range []struct {
		err                                      *Error
		text                                     string
		unregistered, badToken, retryable, certs bool
	}{
		{&Error{Status: 410, Reason: ReasonUnregistered}, "apns: Unregistered (410 Gone)", true, false, false, false},
		{&Error{Status: 410, Reason: ReasonExpiredToken}, "apns: ExpiredToken (410 Gone)", true, false, false, false},
		{&Error{Status: 400, Reason: ReasonBadDeviceToken}, "apns: BadDeviceToken (400 Bad Request)", false, true, false, false},
		{&Error{Status: 400, Reason: ReasonDeviceTokenNotForTopic}, "apns: DeviceTokenNotForTopic (400 Bad Request)", false, true, false, false},
		{&Error{Status: 400, Reason: ReasonBadTopic}, "apns: BadTopic (400 Bad Request)", false, false, false, false},
		{&Error{Status: 403, Reason: ReasonBadCertificateEnvironment}, "apns: BadCertificateEnvironment (403 Forbidden)", false, false, false, true},
		{&Error{Status: 429, Reason: ReasonTooManyRequests}, "apns: TooManyRequests (429 Too Many Requests)", false, false, true, false},
		{&Error{Status: 500, Reason: ReasonInternalServerError}, "apns: InternalServerError (500 Internal Server Error)", false, false, true, false},
		{&Error{Status: 503, Reason: ReasonShutdown}, "apns: Shutdown (503 Service Unavailable)", false, false, true, false},
		{&Error{Status: 502}, "apns: no reason given (502 Bad Gateway)", false, false, true, false},
	} {
		t.Run(tc.text, func(t *testing.T) {
			e := tc.err
			if e.Error() != tc.text {
				t.Fatalf("Error() = %q, want %q", e.Error(), tc.text)
			}
			if e.Unregistered() != tc.unregistered || e.BadToken() != tc.badToken || e.InvalidToken() != (tc.unregistered || tc.badToken) ||
				e.Retryable() != tc.retryable || e.CertificateProblem() != tc.certs {
				t.Fatalf("%v: Unregistered %v BadToken %v InvalidToken %v Retryable %v CertificateProblem %v", e,
					e.Unregistered(), e.BadToken(), e.InvalidToken(), e.Retryable(), e.CertificateProblem())
			}
			if wrapped := fmt.Errorf("push: %w", e); !errors.As(wrapped, new(*Error)) {
				t.Fatal("errors.As does not find a wrapped *Error")
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	s := &Service{retryBackoff: 100 * time.Millisecond}
	for attempt, base := range []time.Duration{100, 200, 400, 800} {
		base *= time.Millisecond
		for range 50 {
			if d := s.backoff(attempt); d < base/2 || d > base {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", attempt, d, base/2, base)
			}
		}
	}
	if d := s.backoff(60); d > maxRetryBackoff || d < maxRetryBackoff/2 {
		t.Fatalf("backoff(60) = %v, want capped at %v", d, maxRetryBackoff)
	}
}

// timeoutErr is a net.Error that timed out, like http.Client's.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "Client.Timeout exceeded" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestRetryable(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"429", live, fmt.Errorf("x: %w", &Error{Status: 429, Reason: ReasonTooManyRequests}), true},
		{"503", live, &Error{Status: 503, Reason: ReasonServiceUnavailable}, true},
		{"400", live, &Error{Status: 400, Reason: ReasonBadTopic}, false},
		{"410", live, &Error{Status: 410, Reason: ReasonUnregistered}, false},
		{"connection lost", live, fmt.Errorf("apns: sending push: %w", errors.New("http2: client connection lost")), true},
		{"timeout", live, fmt.Errorf("apns: sending push: %w", timeoutErr{}), false},
		{"certificate refused by the server", live, fmt.Errorf("apns: sending push: %w", &net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}), false},
		{"server certificate refused", live, fmt.Errorf("apns: sending push: %w", &tls.CertificateVerificationError{Err: errors.New("x509: unknown authority")}), false},
		{"context cancelled", live, fmt.Errorf("apns: sending push: %w", context.Canceled), false},
		{"429 after the caller gave up", cancelled, &Error{Status: 429}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryable(tc.ctx, tc.err); got != tc.want {
				t.Fatalf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// TestAPIPush: the push service behind /v1/push renders per-ID results
// and APNs' reasons, with DESIGN §3's status codes.
func TestAPIPush(t *testing.T) {
	f := newFixture(t)
	topic := storagetest.NewTopic()
	f.storeCert(t, topic)
	devs := f.enroll(t, topic, 2)
	ok, gone := devs[0], devs[1]
	f.mock.Respond(gone.Push.Token, apnsmock.Response{Status: 410, Reason: ReasonUnregistered})
	unknown := storagetest.NewUUID()
	h := http.StripPrefix("/v1/push/", api.PushHandler(f.service(t), quiet))

	for _, tc := range []struct {
		ids  []string
		want int
	}{
		{[]string{ok.ID()}, http.StatusOK},
		{[]string{ok.ID(), gone.ID(), unknown}, http.StatusMultiStatus},
		{[]string{gone.ID(), unknown}, http.StatusInternalServerError},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/push/"+strings.Join(tc.ids, ","), nil))
		if rec.Code != tc.want {
			t.Fatalf("push to %v: status %d, want %d; %s", tc.ids, rec.Code, tc.want, rec.Body)
		}
		var resp api.Response
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		for _, id := range tc.ids {
			st := resp.Status[id]
			var wantErr string
			switch id {
			case gone.ID():
				wantErr = "apns: Unregistered (410 Gone)"
			case unknown:
				wantErr = "no push info: unknown or disabled enrollment"
			}
			if st == nil || st.PushError != wantErr || (wantErr == "") != (st.PushResult != "") {
				t.Fatalf("status of %s: %+v, want push_error %q", id, st, wantErr)
			}
		}
	}
}

func TestResultObserver(t *testing.T) {
	f := newFixture(t)
	topic := storagetest.NewTopic()
	f.storeCert(t, topic)
	dev := f.enroll(t, topic, 1)[0]
	var mu sync.Mutex
	seen := map[string][]error{}
	s := f.service(t, WithResultObserver(func(topic string, err error) {
		mu.Lock()
		defer mu.Unlock()
		seen[topic] = append(seen[topic], err)
	}))
	mustPush(t, s, dev.ID(), "NO-SUCH-ENROLLMENT")
	mu.Lock()
	defer mu.Unlock()
	if len(seen[topic]) != 1 || seen[topic][0] != nil {
		t.Fatalf("observer for %s: %v, want one success", topic, seen[topic])
	}
	if len(seen[""]) != 1 || !errors.Is(seen[""][0], push.ErrNoPushInfo) {
		t.Fatalf("observer without push info: %v", seen[""])
	}
}
