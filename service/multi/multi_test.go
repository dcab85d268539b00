package multi

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
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

func TestOthersRunEvenWhenFirstFails(t *testing.T) {
	first := &servicetest.Recorder{Err: errors.New("declined")}
	other := &servicetest.Recorder{}
	m := New(first, nil)
	m.others = append(m.others, other)
	if _, err := m.UserAuthenticate(idleRequest(context.Background()), &mdm.UserAuthenticate{}); err == nil {
		t.Fatal("first service's error must reach the device")
	}
	m.Wait()
	if calls := other.Calls(); len(calls) != 1 {
		t.Fatalf("other service calls = %v, want the event delivered once", calls)
	}
}

func TestEveryMethodFansOut(t *testing.T) {
	first, a, b := &servicetest.Recorder{}, &servicetest.Recorder{}, &servicetest.Recorder{}
	m := New(first, nil, WithTimeout(time.Second))
	m.others = append(m.others, a, b)
	r := idleRequest(context.Background())
	m.Authenticate(r, &mdm.Authenticate{})
	m.TokenUpdate(r, &mdm.TokenUpdate{})
	m.CheckOut(r, &mdm.CheckOut{})
	m.UserAuthenticate(r, &mdm.UserAuthenticate{})
	m.SetBootstrapToken(r, &mdm.SetBootstrapToken{})
	m.GetBootstrapToken(r, &mdm.GetBootstrapToken{})
	m.DeclarativeManagement(r, &mdm.DeclarativeManagement{})
	m.GetToken(r, &mdm.GetToken{})
	m.CommandAndReportResults(r, &mdm.CommandResults{Status: "Idle"})
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
