package multi

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/test/servicetest"
)

func idleRequest(ctx context.Context) *mdm.Request {
	r := mdm.NewRequest(ctx, nil)
	r.EnrollID = &mdm.EnrollID{Type: mdm.Device, ID: "UDID-1"}
	return r
}

func TestFirstAnswersOthersRunAfter(t *testing.T) {
	want := servicetest.NewCommand("C1", "ProfileList")
	first := &servicetest.Recorder{Next: want}
	release := make(chan struct{})
	other := &servicetest.Recorder{Err: errors.New("webhook down")}
	var ctxErr error
	other.Called = func(string) { // a slow secondary service
		<-release
		ctxErr = other.Requests()[0].Context.Err()
	}
	var logs bytes.Buffer
	m := New(first, nil, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	m.others = append(m.others, other)

	ctx, cancel := context.WithCancel(context.Background())
	got, err := m.CommandAndReportResults(idleRequest(ctx), &mdm.CommandResults{Status: "Idle"})
	cancel() // the device's request is over once we answer
	if err != nil || got != want {
		t.Fatalf("got %v, %v; want the first service's command", got, err)
	}
	// The answer came back while the other service was still blocked.
	close(release)
	m.Wait()
	if calls := other.Calls(); len(calls) != 1 || calls[0] != "CommandAndReportResults" {
		t.Fatalf("other service calls = %v", calls)
	}
	// Its context outlived the device request, and carried a deadline.
	req := other.Requests()[0]
	if ctxErr != nil {
		t.Fatal("other service's context was cancelled with the device request")
	}
	if _, ok := req.Context.Deadline(); !ok {
		t.Fatal("other service's context has no timeout")
	}
	if !bytes.Contains(logs.Bytes(), []byte("webhook down")) {
		t.Fatalf("secondary error not logged: %s", logs.String())
	}
}

// callEvery calls every method of m once with r.
func callEvery(m *Multi, r *mdm.Request) []error {
	_, uaErr := m.UserAuthenticate(r, &mdm.UserAuthenticate{})
	_, gbtErr := m.GetBootstrapToken(r, &mdm.GetBootstrapToken{})
	_, dmErr := m.DeclarativeManagement(r, &mdm.DeclarativeManagement{})
	_, gtErr := m.GetToken(r, &mdm.GetToken{})
	_, reportErr := m.CommandAndReportResults(r, &mdm.CommandResults{Status: "Idle"})
	return []error{
		m.Authenticate(r, &mdm.Authenticate{}),
		m.TokenUpdate(r, &mdm.TokenUpdate{}),
		m.CheckOut(r, &mdm.CheckOut{}),
		uaErr,
		m.SetBootstrapToken(r, &mdm.SetBootstrapToken{}),
		gbtErr, dmErr, gtErr, reportErr,
	}
}

// TestOthersSkippedWhenFirstFails: a request the first service refuses
// (a declined UserAuthenticate, a failed store, an unconfigured DDM) never
// reaches the others, neither the inline queuers nor the background ones:
// no webhook event for a refused request.
func TestOthersSkippedWhenFirstFails(t *testing.T) {
	declined := errors.New("declined")
	first := &servicetest.Recorder{Err: declined}
	background, inline := &servicetest.Recorder{}, &queuer{}
	m := New(first, nil)
	m.others = append(m.others, background, inline)
	for i, err := range callEvery(m, idleRequest(context.Background())) {
		if !errors.Is(err, declined) {
			t.Errorf("call %d: %v, want the first service's error", i, err)
		}
	}
	m.Wait()
	if n := len(first.Calls()); n != 9 {
		t.Fatalf("first got %d calls, want 9", n)
	}
	if calls := background.Calls(); len(calls) != 0 {
		t.Errorf("background service called for refused requests: %v", calls)
	}
	if calls := inline.Calls(); len(calls) != 0 {
		t.Errorf("queuer called for refused requests: %v", calls)
	}
}

func TestEveryMethodFansOut(t *testing.T) {
	first, a, b := &servicetest.Recorder{}, &servicetest.Recorder{}, &servicetest.Recorder{}
	m := New(first, nil, WithTimeout(time.Second))
	m.others = append(m.others, a, b)
	for i, err := range callEvery(m, idleRequest(context.Background())) {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	m.Wait()
	if n := len(first.Calls()); n != 9 {
		t.Fatalf("first got %d calls, want 9", n)
	}
	for _, s := range []*servicetest.Recorder{a, b} {
		if n := len(s.Calls()); n != 9 {
			t.Fatalf("other got %d calls, want 9", n)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	first, other := &servicetest.Recorder{}, &servicetest.Recorder{}
	m := New(first, nil)
	m.others = append(m.others, other)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.TokenUpdate(idleRequest(context.Background()), &mdm.TokenUpdate{})
		}()
	}
	wg.Wait()
	m.Wait()
	if len(other.Calls()) != 50 {
		t.Fatalf("other got %d calls, want 50", len(other.Calls()))
	}
}

// queuer is a Recorder that says it only queues.
type queuer struct{ servicetest.Recorder }

func (*queuer) QueuesOnly() bool { return true }

// Queuers are called in the request's goroutine, in request order.
func TestQueuersRunInline(t *testing.T) {
	q := &queuer{}
	m := New(&servicetest.Recorder{}, nil)
	m.others = append(m.others, q)
	r := idleRequest(context.Background())
	m.Authenticate(r, &mdm.Authenticate{})
	m.TokenUpdate(r, &mdm.TokenUpdate{})
	// No Wait: inline calls are done when the method returns.
	if calls := q.Calls(); len(calls) != 2 || calls[0] != "Authenticate" || calls[1] != "TokenUpdate" {
		t.Fatalf("queuer calls = %v, want both, in order", calls)
	}
}

// TestDeclinedUserAuthenticateReachesOthers: a 410 declining a user
// channel is the protocol's answer to an authenticated request, so the
// webhook hears of it (as NanoMDM's does); any other error is a refusal.
func TestDeclinedUserAuthenticateReachesOthers(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"declined", service.NewStatusError(http.StatusGone, errors.New("declined")), 1},
		{"refused", service.NewStatusError(http.StatusInternalServerError, errors.New("refused")), 0},
		{"failed", errors.New("storage down"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, other := &servicetest.Recorder{Err: tc.err}, &servicetest.Recorder{}
			m := New(first, nil)
			m.others = append(m.others, other)
			if _, err := m.UserAuthenticate(idleRequest(context.Background()), &mdm.UserAuthenticate{}); !errors.Is(err, tc.err) {
				t.Fatalf("UserAuthenticate: %v, want the first service's error", err)
			}
			m.Wait()
			if n := len(other.Calls()); n != tc.want {
				t.Fatalf("other service called %d times, want %d", n, tc.want)
			}
		})
	}
}
