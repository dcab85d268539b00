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
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/service/core"
	"github.com/picomdm/picomdm/service/multi"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/test/logtest"
)

func TestHeadersAndHMAC(t *testing.T) {
	rc := newReceiver(t)
	key := []byte("webhook secret")
	w := newTestWebhook(t, rc.URL(), nil, WithHMACKey(key))
	send(t, w, nil, report(deviceUDID, "Idle", ""))
	d := rc.waitDeliveries(t, 1)[0]
	if d.method != "POST" {
		t.Errorf("method %s, want POST", d.method)
	}
	if ct := d.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(d.body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if got := d.header.Get("X-Hmac-Signature"); got != want {
		t.Errorf("X-Hmac-Signature %q, want %q (HMAC-SHA256 of the body)", got, want)
	}

	// Without a key, no signature header.
	rc2 := newReceiver(t)
	w2 := newTestWebhook(t, rc2.URL(), nil)
	send(t, w2, nil, report(deviceUDID, "Idle", ""))
	if h := rc2.waitDeliveries(t, 1)[0].header; h.Get("X-Hmac-Signature") != "" {
		t.Error("X-Hmac-Signature sent without a key")
	}
}

// TestTokenUpdateTallyAfterCore runs the webhook where it lives, behind
// multi after the core service, so the tally it reads is the one the core
// just stored: 1 on the first TokenUpdate, then 2.
func TestTokenUpdateTallyAfterCore(t *testing.T) {
	rc := newReceiver(t)
	store := inmem.New()
	w := newTestWebhookOn(t, store, rc.URL(), store)
	m := multi.New(core.New(store), []service.CheckinAndCommandService{w})
	auth := map[string]any{"MessageType": "Authenticate", "UDID": deviceUDID, "Topic": "com.apple.mgmt.test", "SerialNumber": "S1"}
	token := map[string]any{"MessageType": "TokenUpdate", "UDID": deviceUDID, "Topic": "com.apple.mgmt.test", "PushMagic": "M", "Token": []byte("t")}
	for _, msg := range []map[string]any{auth, token, token} {
		send(t, m, nil, msg)
		m.Wait()
	}
	var tallies []int
	for _, d := range rc.waitDeliveries(t, 3) {
		ev := d.event(t)
		if ev.Topic == TopicTokenUpdate {
			if ev.CheckinEvent.TokenUpdateTally == nil {
				t.Fatal("TokenUpdate event without token_update_tally")
			}
			tallies = append(tallies, *ev.CheckinEvent.TokenUpdateTally)
		}
	}
	if fmt.Sprint(tallies) != "[1 2]" {
		t.Fatalf("token_update_tally = %v, want [1 2]", tallies)
	}
}

func TestTallyErrorOmitsTally(t *testing.T) {
	rc := newReceiver(t)
	var logs logtest.Buffer
	w := newTestWebhook(t, rc.URL(), &tallies{err: errNoTally}, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	send(t, w, nil, map[string]any{"MessageType": "TokenUpdate", "UDID": deviceUDID, "Topic": "t", "PushMagic": "M", "Token": []byte("t")})
	d := rc.waitDeliveries(t, 1)[0]
	if strings.Contains(string(d.body), "token_update_tally") {
		t.Errorf("token_update_tally present although the store failed: %s", d.body)
	}
	if !strings.Contains(logs.String(), errNoTally.Error()) {
		t.Errorf("tally failure not logged: %s", logs.String())
	}
}

// wantEachOnceInOrder checks what rc received: total distinct
// acknowledgement events, none twice, each enrollment's in CommandUUID
// order, each with exactly one successful attempt (after any failed
// ones). It returns how many took more than one attempt.
func wantEachOnceInOrder(t *testing.T, rc *receiver, tries *attempts, total int) (retried int) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]string{}
	for _, d := range rc.deliveries() {
		ev := d.event(t)
		if seen[ev.EventID] {
			t.Errorf("event %s arrived twice", ev.EventID)
		}
		seen[ev.EventID] = true
		ack := ev.AcknowledgeEvent
		if ack.CommandUUID <= last[ack.IDs.ID] {
			t.Errorf("%s: %s delivered after %s", ack.IDs.ID, ack.CommandUUID, last[ack.IDs.ID])
		}
		last[ack.IDs.ID] = ack.CommandUUID
		if all, failed := tries.of(ev.EventID); all != failed+1 {
			t.Errorf("event %s: %d attempts with %d failures, want exactly one that succeeded", ev.EventID, all, failed)
		} else if all > 1 {
			retried++
		}
	}
	if len(seen) != total {
		t.Fatalf("%d distinct events arrived, want %d", len(seen), total)
	}
	return retried
}

// TestReceiverDown takes the receiver away while several devices report,
// waits until the outage has made the webhook retry, brings the receiver
// back, and checks every event arrives exactly once, in order per
// enrollment.
func TestReceiverDown(t *testing.T) {
	for _, mode := range []string{"503", "listener closed"} {
		t.Run(mode, func(t *testing.T) {
			rc := newReceiver(t)
			tries, client := newAttempts(t)
			w := newTestWebhook(t, rc.URL(), nil, WithWorkers(3), WithClient(client), WithBackoff(2*time.Millisecond, 30*time.Millisecond))
			if mode == "503" {
				rc.fail.Store(true)
			} else {
				rc.down()
			}
			const devices, perDevice = 7, 15
			for n := range perDevice {
				for d := range devices {
					udid := fmt.Sprintf("DEVICE-%d", d)
					send(t, w, nil, report(udid, "Acknowledged", fmt.Sprintf("%s/%03d", udid, n)))
					if d%3 == 0 { // a user channel shares its device's order
						send(t, w, nil, map[string]any{"UDID": udid, "UserID": "U", "Status": "Acknowledged", "CommandUUID": fmt.Sprintf("%s:U/%03d", udid, n)})
					}
				}
			}
			// The outage lasts until some event has failed twice: the
			// webhook has retried, not merely tried once.
			waitFor(t, "an event retried during the outage", func() bool { return tries.mostFailed() >= 2 })
			if mode == "503" {
				rc.fail.Store(false)
			} else {
				rc.up()
			}
			total := perDevice * (devices + 3)
			waitFor(t, "every event delivered", func() bool { return w.Stats().Delivered == uint64(total) })
			if retried := wantEachOnceInOrder(t, rc, tries, total); retried == 0 {
				t.Error("no delivered event was ever retried")
			}
			st := w.Stats()
			if st.Retries == 0 || st.SetAside != 0 || st.LeaseLost != 0 {
				t.Errorf("stats %+v: want retries, nothing set aside", st)
			}
			waitFor(t, "an empty outbox", func() bool {
				os, err := w.outbox.OutboxStats(context.Background())
				return err == nil && os.Pending == 0 && os.Failed == 0
			})
		})
	}
}

// TestRetriedUntilAccepted: a receiver that refuses the first attempts
// gets the event again until it accepts it, and then only once.
func TestRetriedUntilAccepted(t *testing.T) {
	const refusals = 3
	rc := newReceiver(t)
	rc.failNext.Store(refusals)
	tries, client := newAttempts(t)
	w := newTestWebhook(t, rc.URL(), nil, WithClient(client))
	send(t, w, nil, report(deviceUDID, "Idle", ""))
	waitFor(t, "the event delivered", func() bool { return w.Stats().Delivered == 1 })
	got := rc.deliveries()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(got))
	}
	all, failed := tries.of(got[0].event(t).EventID)
	if all != refusals+1 || failed != refusals || rc.attempts.Load() != refusals+1 {
		t.Fatalf("%d attempts (%d failed, %d reached the receiver), want %d with %d refused", all, failed, rc.attempts.Load(), refusals+1, refusals)
	}
	if st := w.Stats(); st.Retries != refusals || st.SetAside != 0 {
		t.Fatalf("stats %+v, want %d retries and nothing set aside", st, refusals)
	}
}

// TestRefusedRequestEmitsNoEvent runs the webhook behind multi after the
// core service: a request the core refuses produces no event. A successful
// request of the same device follows each refused one; its events are
// delivered in order by one worker, so once its event has arrived, an
// event of the refused request would have arrived before it.
func TestRefusedRequestEmitsNoEvent(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  map[string]any
	}{
		{"Authenticate on a user channel", map[string]any{"MessageType": "Authenticate", "UDID": deviceUDID, "UserID": "U", "Topic": "t"}},
		{"DeclarativeManagement not configured", map[string]any{"MessageType": "DeclarativeManagement", "UDID": deviceUDID, "Endpoint": "tokens"}},
		{"GetToken without a handler", map[string]any{"MessageType": "GetToken", "UDID": deviceUDID, "TokenServiceType": "com.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t)
			store := inmem.New()
			w := newTestWebhook(t, rc.URL(), store)
			m := multi.New(core.New(store), []service.CheckinAndCommandService{w})
			if _, err := dispatch(m, nil, encode(t, tc.msg), tc.msg); err == nil {
				t.Fatal("the core service accepted the request")
			}
			m.Wait()
			send(t, m, nil, map[string]any{"MessageType": "Authenticate", "UDID": deviceUDID, "Topic": "t", "SerialNumber": "S1"})
			m.Wait()
			got := rc.waitDeliveries(t, 1)
			if len(got) != 1 || got[0].event(t).Topic != TopicAuthenticate {
				var topics []string
				for _, d := range got {
					topics = append(topics, d.event(t).Topic)
				}
				t.Fatalf("events %v, want only the successful Authenticate's", topics)
			}
			if st := w.Stats(); st.Delivered != 1 {
				t.Fatalf("stats %+v, want one event", st)
			}
		})
	}
}

// TestSlowReceiverRetried: an attempt that outlives the per-request timeout
// is abandoned and retried.
func TestSlowReceiverRetried(t *testing.T) {
	rc := newReceiver(t)
	rc.hang.Store(1)
	w := newTestWebhook(t, rc.URL(), nil, WithTimeout(50*time.Millisecond))
	send(t, w, nil, report(deviceUDID, "Idle", ""))
	rc.waitDeliveries(t, 1)
	waitFor(t, "delivered count", func() bool { return w.Stats().Delivered == 1 })
	if st := w.Stats(); st.Retries < 1 || rc.attempts.Load() < 2 {
		t.Fatalf("stats %+v after %d attempts: want the timed-out attempt retried", st, rc.attempts.Load())
	}
}

// TestRefusedEventSetAside: a receiver that answers 500 forever to one
// topic gets each event of it the quick retries (3 attempts in all), then
// the event is set aside (kept, state failed, with its last error) and the
// enrollment's later events go on; other topics and enrollments flow.
func TestRefusedEventSetAside(t *testing.T) {
	rc := newReceiver(t)
	rc.refuseTopic(TopicSetBootstrapToken, http.StatusInternalServerError)
	store := inmem.New()
	w := newTestWebhookOn(t, store, rc.URL(), nil)
	send(t, w, nil, map[string]any{"MessageType": "Authenticate", "UDID": deviceUDID, "Topic": "t"})
	send(t, w, nil, map[string]any{"MessageType": "SetBootstrapToken", "UDID": deviceUDID, "BootstrapToken": []byte("b")})
	send(t, w, nil, report(deviceUDID, "Acknowledged", "AFTER"))
	send(t, w, nil, report("OTHER-DEVICE", "Idle", ""))
	got := rc.waitDeliveries(t, 3)
	waitFor(t, "the refused event set aside", func() bool { return w.Stats().SetAside == 1 })
	if n := rc.topicAttempts(TopicSetBootstrapToken); n != DefaultRefusedAttempts {
		t.Errorf("the refused event had %d attempts, want %d", n, DefaultRefusedAttempts)
	}
	var order []string
	for _, d := range got {
		ev := d.event(t)
		order = append(order, ev.Topic)
		if ev.Topic == TopicSetBootstrapToken {
			t.Error("the refused event counted as delivered")
		}
	}
	if len(got) != 3 {
		t.Fatalf("delivered %v, want the 3 accepted events", order)
	}
	failed := events(t, store, storage.OutboxFailed)
	if len(failed) != 1 {
		t.Fatalf("%d failed events, want 1", len(failed))
	}
	f := failed[0]
	if f.Topic != TopicSetBootstrapToken || f.EnrollmentID != deviceUDID || f.State != storage.OutboxFailed ||
		f.Attempts != DefaultRefusedAttempts || !strings.Contains(f.LastError, "500") {
		t.Errorf("set-aside event %+v", f)
	}
	var body Event
	if err := json.Unmarshal(f.Body, &body); err != nil || body.EventID != f.ID || body.Topic != f.Topic {
		t.Errorf("set-aside body %s does not carry its event_id %s (%v)", f.Body, f.ID, err)
	}
	// The receiver has answered the last delivery; its worker deletes the
	// event right after.
	waitFor(t, "every delivered event deleted", func() bool { return len(events(t, store, storage.OutboxPending)) == 0 })
}

// TestRefusedEventBlocksOnlyItsEnrollment: while one enrollment's refused
// event waits for its next quick retry, other enrollments' events go on;
// only that enrollment's later events wait behind it (order per
// enrollment).
func TestRefusedEventBlocksOnlyItsEnrollment(t *testing.T) {
	rc := newReceiver(t)
	rc.refuseTopic(TopicSetBootstrapToken, http.StatusInternalServerError)
	w := newTestWebhook(t, rc.URL(), nil, WithRefusedRetries(3, time.Hour), WithWorkers(2))
	send(t, w, nil, map[string]any{"MessageType": "SetBootstrapToken", "UDID": deviceUDID, "BootstrapToken": []byte("b")})
	send(t, w, nil, report(deviceUDID, "Acknowledged", "BEHIND"))
	waitFor(t, "the first refusal", func() bool { return rc.topicAttempts(TopicSetBootstrapToken) == 1 })
	const others = 20
	for i := range others {
		send(t, w, nil, report(fmt.Sprintf("OTHER-%02d", i), "Idle", ""))
	}
	got := rc.waitDeliveries(t, others)
	for _, d := range got {
		if d.event(t).AcknowledgeEvent.IDs.ID == deviceUDID {
			t.Error("an event of the refused enrollment overtook its refused event")
		}
	}
	if n := rc.topicAttempts(TopicSetBootstrapToken); n != 1 {
		t.Errorf("%d attempts of the refused event, want 1 (the next is an hour away)", n)
	}
}

// TestRefusalsCountedSeparately: attempts the receiver was unreachable for
// do not use up the quick retries of a refusal: an event first met with
// 503s still gets its 3 refused attempts.
func TestRefusalsCountedSeparately(t *testing.T) {
	rc := newReceiver(t)
	store := inmem.New()
	w := newTestWebhookOn(t, store, rc.URL(), nil)
	rc.down()
	send(t, w, nil, report(deviceUDID, "Idle", ""))
	waitFor(t, "retries while unreachable", func() bool { return w.Stats().Retries >= 3 })
	rc.refuseTopic(TopicConnect, http.StatusBadRequest)
	rc.up()
	waitFor(t, "the event set aside", func() bool { return w.Stats().SetAside == 1 })
	if n := rc.topicAttempts(TopicConnect); n != DefaultRefusedAttempts {
		t.Errorf("%d refused attempts, want %d", n, DefaultRefusedAttempts)
	}
	f := events(t, store, storage.OutboxFailed)
	if len(f) != 1 || f[0].Attempts < DefaultRefusedAttempts+3 {
		t.Fatalf("failed events %+v: want one with every attempt counted", f)
	}
}

// TestSetAsideAfterRetryFor: an event the receiver stays unreachable for
// is retried until -webhook-retry-for has passed since it was stored, then
// set aside; the enrollment's next event goes out.
func TestSetAsideAfterRetryFor(t *testing.T) {
	rc := newReceiver(t)
	rc.fail.Store(true)
	var logs logtest.Buffer
	store := inmem.New()
	w := newTestWebhookOn(t, store, rc.URL(), nil, WithRetryFor(100*time.Millisecond), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	send(t, w, nil, report(deviceUDID, "Idle", ""))
	waitFor(t, "the event set aside", func() bool { return w.Stats().SetAside == 1 })
	if st := w.Stats(); st.Delivered != 0 || st.Retries == 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "set aside") || !strings.Contains(logs.String(), "503") {
		t.Errorf("set-aside not logged with its cause: %s", logs.String())
	}
	if f := events(t, store, storage.OutboxFailed); len(f) != 1 || !strings.Contains(f[0].LastError, "503") {
		t.Fatalf("failed events %+v", f)
	}
	rc.fail.Store(false)
	send(t, w, nil, report(deviceUDID, "Idle", ""))
	waitFor(t, "the next event delivered", func() bool { return w.Stats().Delivered == 1 })
}

// TestTwoReplicas: two Webhooks on one outbox, each storing the events of
// the requests it serves, with a receiver that fails now and then: every
// event arrives exactly once, in order per enrollment, whichever replica
// stored or delivered it.
func TestTwoReplicas(t *testing.T) {
	rc := newReceiver(t)
	tries, client := newAttempts(t)
	store := inmem.New()
	a := newTestWebhookOn(t, store, rc.URL(), nil, WithClient(client), WithWorkers(3), WithOwner("replica-a"))
	b := newTestWebhookOn(t, store, rc.URL(), nil, WithClient(client), WithWorkers(3), WithOwner("replica-b"))
	rc.failNext.Store(10)
	const devices, perDevice = 6, 20
	for n := range perDevice {
		for d := range devices {
			replica := a
			if (n+d)%2 == 1 {
				replica = b
			}
			udid := fmt.Sprintf("DEVICE-%d", d)
			send(t, replica, nil, report(udid, "Acknowledged", fmt.Sprintf("%s/%03d", udid, n)))
		}
	}
	total := devices * perDevice
	waitFor(t, "every event delivered", func() bool { return a.Stats().Delivered+b.Stats().Delivered == uint64(total) })
	wantEachOnceInOrder(t, rc, tries, total)
	if a.Stats().Delivered == 0 || b.Stats().Delivered == 0 {
		t.Errorf("one replica delivered everything (a %d, b %d): both should claim", a.Stats().Delivered, b.Stats().Delivered)
	}
}

// TestCloseReleasesClaims: Close abandons a delivery still in flight at its
// deadline, records nothing for it, and releases the claim, so another
// replica delivers the event at once rather than after the lease (here
// 20 s) runs out.
func TestCloseReleasesClaims(t *testing.T) {
	rc := newReceiver(t)
	rc.block = make(chan struct{})
	store := inmem.New()
	a := newTestWebhookOn(t, store, rc.URL(), nil, WithOwner("replica-a"))
	send(t, a, nil, report(deviceUDID, "Idle", ""))
	waitFor(t, "the delivery in flight", func() bool { return rc.attempts.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want the deadline", err)
	}
	if st := a.Stats(); st.Retries != 0 || st.Delivered != 0 {
		t.Errorf("stats %+v: the abandoned attempt must record nothing", st)
	}
	pending := events(t, store, storage.OutboxPending)
	if len(pending) != 1 || pending[0].Attempts != 0 {
		t.Fatalf("pending %+v: want the event, with no attempt recorded", pending)
	}
	close(rc.block)
	start := time.Now()
	b := newTestWebhookOn(t, store, rc.URL(), nil, WithOwner("replica-b"))
	waitFor(t, "the other replica to deliver", func() bool { return b.Stats().Delivered == 1 })
	if took := time.Since(start); took > 2*DefaultTimeout {
		t.Errorf("took %v: the claim was not released", took)
	}
	// Closing again is harmless and returns the first result.
	if err := a.Close(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Close: %v", err)
	}
}

// TestCloseWaitsForDeliveries: Close lets a delivery in flight finish
// (and records it) when it does so before Close's deadline.
func TestCloseWaitsForDeliveries(t *testing.T) {
	rc := newReceiver(t)
	rc.block = make(chan struct{})
	store := inmem.New()
	w := newTestWebhookOn(t, store, rc.URL(), nil)
	send(t, w, nil, report(deviceUDID, "Idle", ""))
	waitFor(t, "the delivery in flight", func() bool { return rc.attempts.Load() == 1 })
	closed := make(chan error, 1)
	go func() { closed <- w.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with a delivery in flight", err)
	default:
	}
	close(rc.block)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := w.Stats(); st.Delivered != 1 {
		t.Fatalf("stats %+v after Close, want the delivery recorded", st)
	}
	if os, err := store.OutboxStats(context.Background()); err != nil || os.Pending != 0 {
		t.Fatalf("outbox %+v, %v: want it empty", os, err)
	}
	// After Close, events are still stored (any replica delivers them).
	send(t, w, nil, report(deviceUDID, "Idle", ""))
	if p := events(t, store, storage.OutboxPending); len(p) != 1 {
		t.Fatalf("%d pending after Close, want the new event stored", len(p))
	}
}

// failingOutbox is an outbox whose StoreEvent fails.
type failingOutbox struct{ *inmem.Store }

var errOutboxDown = errors.New("outbox down")

func (failingOutbox) StoreEvent(context.Context, *storage.OutboxEvent) error { return errOutboxDown }

// TestStoreFailureCounted: an event that cannot be stored is logged and
// counted, and the device's request does not fail for it.
func TestStoreFailureCounted(t *testing.T) {
	rc := newReceiver(t)
	var logs logtest.Buffer
	w := newTestWebhookOn(t, failingOutbox{inmem.New()}, rc.URL(), nil, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	send(t, w, nil, report(deviceUDID, "Idle", "")) // fails the test on an error
	if st := w.Stats(); st.StoreFailed != 1 {
		t.Fatalf("stats %+v, want one store failure", st)
	}
	if !strings.Contains(logs.String(), errOutboxDown.Error()) {
		t.Errorf("store failure not logged: %s", logs.String())
	}
}

// TestTrim: Trim keeps the outbox within its bound, counting and logging
// what it deletes.
func TestTrim(t *testing.T) {
	rc := newReceiver(t)
	rc.fail.Store(true)
	store := inmem.New()
	var logs logtest.Buffer
	w := newTestWebhookOn(t, store, rc.URL(), nil, WithOutboxMaxEvents(2), WithBackoff(time.Hour, time.Hour),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	for i := range 5 {
		send(t, w, nil, report(fmt.Sprintf("DEVICE-%d", i), "Idle", ""))
	}
	if err := w.Trim(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Trimmed != 3 {
		t.Fatalf("stats %+v, want 3 trimmed", st)
	}
	if os, err := store.OutboxStats(context.Background()); err != nil || os.Pending != 2 {
		t.Fatalf("outbox %+v, %v: want 2 left", os, err)
	}
	if !strings.Contains(logs.String(), "outbox trimmed") {
		t.Errorf("trim not logged: %s", logs.String())
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want outcome
	}{
		{nil, accepted},
		{errors.New("dial tcp: connection refused"), unreachable},
		{context.DeadlineExceeded, unreachable},
		{&statusError{429}, unreachable},
		{&statusError{502}, unreachable},
		{&statusError{503}, unreachable},
		{&statusError{504}, unreachable},
		{&statusError{500}, refused},
		{&statusError{400}, refused},
		{&statusError{404}, refused},
		{&statusError{301}, refused},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if n := refusals("refused 2: receiver answered 500"); n != 2 {
		t.Errorf("refusals = %d, want 2", n)
	}
	if n := refusals("receiver answered 503"); n != 0 {
		t.Errorf("refusals of an unreachable error = %d", n)
	}
}

func TestNewRefusesWiringMistakes(t *testing.T) {
	for name, f := range map[string]func(){
		"empty URL":  func() { New("", new(tallies), inmem.New()) },
		"no scheme":  func() { New("example.com/hook", new(tallies), inmem.New()) },
		"nil tally":  func() { New("http://example.com/hook", nil, inmem.New()) },
		"nil outbox": func() { New("http://example.com/hook", new(tallies), nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f()
		})
	}
}

// countingOutbox counts the StoreEvent calls that reach the store
// through it (not those the store makes itself with a report).
type countingOutbox struct {
	*inmem.Store
	stores atomic.Int64
}

func (c *countingOutbox) StoreEvent(ctx context.Context, ev *storage.OutboxEvent) error {
	c.stores.Add(1)
	return c.Store.StoreEvent(ctx, ev)
}

// TestReportEventRidesWithReport: a command report's event is handed to
// the store with the report (PrepareReport) and stored by it, not by a
// StoreEvent call of its own; a check-in's event is stored by the
// webhook. Each arrives once.
func TestReportEventRidesWithReport(t *testing.T) {
	rc := newReceiver(t)
	store := &countingOutbox{Store: inmem.New()}
	w := newTestWebhookOn(t, store, rc.URL(), store)
	m := multi.New(core.New(store.Store), []service.CheckinAndCommandService{w})
	send(t, m, nil, map[string]any{"MessageType": "Authenticate", "UDID": deviceUDID, "Topic": "t", "SerialNumber": "S1"})
	if n := store.stores.Load(); n != 1 {
		t.Fatalf("the Authenticate's event: %d StoreEvent calls, want 1", n)
	}
	send(t, m, nil, report(deviceUDID, "Idle", ""))
	if n := store.stores.Load(); n != 1 {
		t.Fatalf("the report's event: %d more StoreEvent calls, want 0 (it rides with the report)", n-1)
	}
	got := rc.waitDeliveries(t, 2)
	if len(got) != 2 || got[0].event(t).Topic != TopicAuthenticate || got[1].event(t).Topic != TopicConnect {
		t.Fatalf("deliveries %d, want the Authenticate then the Connect", len(got))
	}
}
