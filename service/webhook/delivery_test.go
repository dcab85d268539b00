package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/picomdm/picomdm/test/logtest"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/service/core"
	"github.com/picomdm/picomdm/service/multi"
	"github.com/picomdm/picomdm/storage/inmem"
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
	w := newTestWebhook(t, rc.URL(), store)
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
			seen := map[string]bool{}
			last := map[string]string{}
			retried := 0
			for _, d := range rc.deliveries() {
				ev := d.event(t)
				if seen[ev.EventID] {
					t.Errorf("event %s arrived twice", ev.EventID)
				}
				seen[ev.EventID] = true
				a := ev.AcknowledgeEvent
				if a.CommandUUID <= last[a.IDs.ID] {
					t.Errorf("%s: %s delivered after %s", a.IDs.ID, a.CommandUUID, last[a.IDs.ID])
				}
				last[a.IDs.ID] = a.CommandUUID
				if all, failed := tries.of(ev.EventID); all != failed+1 {
					t.Errorf("event %s: %d attempts with %d failures, want exactly one that succeeded", ev.EventID, all, failed)
				} else if all > 1 {
					retried++
				}
			}
			if len(seen) != total {
				t.Fatalf("%d distinct events arrived, want %d", len(seen), total)
			}
			if retried == 0 {
				t.Error("no delivered event was ever retried")
			}
			st := w.Stats()
			if st.Retries == 0 || st.Dropped != 0 || st.QueueLen != 0 || st.QueueBytes != 0 {
				t.Errorf("stats %+v: want retries, nothing dropped, empty queue", st)
			}
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
	if st := w.Stats(); st.Retries != refusals || st.Dropped != 0 {
		t.Fatalf("stats %+v, want %d retries and nothing dropped", st, refusals)
	}
}

// TestQueueBytesBound: with the receiver down, events beyond the byte
// bound are dropped and counted, never blocking the caller, and the bytes
// held never pass the bound; once the receiver is back the admitted
// events arrive.
func TestQueueBytesBound(t *testing.T) {
	const bound = 64 << 10
	rc := newReceiver(t)
	rc.fail.Store(true)
	var logs logtest.Buffer
	w := newTestWebhook(t, rc.URL(), nil, WithQueueBytes(bound), WithWorkers(1), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))

	// A watcher samples the bytes held while events pour in.
	stop := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		var most int64
		for {
			most = max(most, w.Stats().QueueBytes)
			select {
			case <-stop:
				peak <- max(most, w.Stats().QueueBytes)
				return
			default:
				runtime.Gosched()
			}
		}
	}()

	// One event larger than the whole bound never fits.
	huge := report(deviceUDID, "Acknowledged", "HUGE")
	huge["Blob"] = bytes.Repeat([]byte{'h'}, bound)
	send(t, w, nil, huge)
	if st := w.Stats(); st.Dropped != 1 || st.QueueBytes != 0 {
		t.Fatalf("after an event larger than the bound: %+v, want it dropped", st)
	}

	// 10 KiB reports, 40 of them: about 400 KiB, six times the bound.
	const sent = 40
	start := time.Now()
	for i := range sent {
		msg := report(deviceUDID, "Acknowledged", fmt.Sprintf("C-%03d", i))
		msg["Blob"] = bytes.Repeat([]byte{'x'}, 10<<10)
		send(t, w, nil, msg)
		if held := w.Stats().QueueBytes; held > bound {
			t.Fatalf("after event %d the queue holds %d bytes, over its bound of %d", i, held, bound)
		}
	}
	if time.Since(start) > 5*time.Second {
		t.Error("a full queue blocked the caller")
	}
	close(stop)
	if most := <-peak; most > bound {
		t.Fatalf("the queue held %d bytes at its peak, over its bound of %d", most, bound)
	}
	st := w.Stats()
	dropped := int(st.Dropped) - 1 // the huge one
	admitted := sent - dropped
	if dropped == 0 || admitted == 0 || st.Delivered != 0 {
		t.Fatalf("stats %+v: want some events admitted, the rest dropped, none delivered yet", st)
	}
	if event := int64(10<<10) * 4 / 3; st.QueueBytes+event <= bound {
		t.Errorf("only %d of %d bytes held, yet events were dropped", st.QueueBytes, bound)
	}
	if !strings.Contains(logs.String(), "queue full") {
		t.Errorf("drops not logged: %s", logs.String())
	}

	rc.fail.Store(false)
	waitFor(t, "the admitted events delivered", func() bool { return w.Stats().Delivered == uint64(admitted) })
	got := rc.deliveries()
	if len(got) != admitted {
		t.Fatalf("%d events arrived, want the %d admitted", len(got), admitted)
	}
	for i, d := range got {
		if uuid, want := d.event(t).AcknowledgeEvent.CommandUUID, fmt.Sprintf("C-%03d", i); uuid != want {
			t.Errorf("event %d is %s, want %s (the first ones, in order)", i, uuid, want)
		}
	}
	if st := w.Stats(); st.QueueBytes != 0 || st.QueueLen != 0 {
		t.Fatalf("stats %+v after delivery, want an empty queue", st)
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
			if st := w.Stats(); st.Delivered != 1 || st.QueueLen != 0 {
				t.Fatalf("stats %+v, want one event, nothing queued", st)
			}
		})
	}
}

func TestQueueFullDrops(t *testing.T) {
	rc := newReceiver(t)
	rc.block = make(chan struct{})
	var logs logtest.Buffer
	w := newTestWebhook(t, rc.URL(), nil, WithQueueSize(3), WithWorkers(1), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	send(t, w, nil, report(deviceUDID, "Idle", ""))
	waitFor(t, "the first event in flight", func() bool { return rc.attempts.Load() == 1 })
	start := time.Now()
	for range 5 { // 3 fit in the queue, 2 do not
		send(t, w, nil, report(deviceUDID, "Idle", ""))
	}
	if time.Since(start) > time.Second {
		t.Error("a full queue blocked the caller")
	}
	if st := w.Stats(); st.Dropped != 2 || st.QueueLen != 3 {
		t.Fatalf("stats %+v, want 2 dropped and 3 queued", st)
	}
	if !strings.Contains(logs.String(), "queue full") {
		t.Errorf("drop not logged: %s", logs.String())
	}
	close(rc.block)
	waitFor(t, "the queued events delivered", func() bool { return w.Stats().Delivered == 4 })
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

func TestGivesUpAfterRetryFor(t *testing.T) {
	rc := newReceiver(t)
	rc.fail.Store(true)
	var logs logtest.Buffer
	w := newTestWebhook(t, rc.URL(), nil, WithRetryFor(100*time.Millisecond), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	send(t, w, nil, report(deviceUDID, "Idle", ""))
	waitFor(t, "the event dropped", func() bool { return w.Stats().Dropped == 1 })
	if st := w.Stats(); st.Delivered != 0 || st.Retries == 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "dropped after retrying") || !strings.Contains(logs.String(), "503") {
		t.Errorf("drop not logged with its cause: %s", logs.String())
	}
	// The shard is free again: the next event goes out.
	rc.fail.Store(false)
	send(t, w, nil, report(deviceUDID, "Idle", ""))
	waitFor(t, "the next event delivered", func() bool { return w.Stats().Delivered == 1 })
}

func TestCloseDrains(t *testing.T) {
	rc := newReceiver(t)
	rc.fail.Store(true)
	w := newTestWebhook(t, rc.URL(), nil)
	for i := range 10 {
		send(t, w, nil, report(fmt.Sprintf("DEVICE-%d", i), "Idle", ""))
	}
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		closed <- w.Close(ctx)
	}()
	waitFor(t, "Close to stop accepting", func() bool {
		w.mu.RLock()
		defer w.mu.RUnlock()
		return w.closed
	})
	r := mdm.NewRequest(context.Background(), nil)
	r.EnrollID = &mdm.EnrollID{Type: mdm.Device, ID: deviceUDID}
	if _, err := w.CommandAndReportResults(r, &mdm.CommandResults{Status: "Idle"}); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
	rc.fail.Store(false) // the receiver comes back while Close waits
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := w.Stats(); st.Delivered != 10 || st.QueueLen != 0 {
		t.Fatalf("stats %+v after Close, want all 10 delivered", st)
	}
	select {
	case <-w.done:
	default:
		t.Fatal("workers still running after Close")
	}
}

func TestCloseGivesUpAtDeadline(t *testing.T) {
	rc := newReceiver(t)
	rc.fail.Store(true)
	w := newTestWebhook(t, rc.URL(), nil, WithWorkers(2))
	for i := range 20 {
		send(t, w, nil, report(fmt.Sprintf("DEVICE-%d", i), "Idle", ""))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := w.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want the deadline", err)
	}
	select {
	case <-w.done:
	default:
		t.Fatal("workers still running after Close returned")
	}
	if st := w.Stats(); st.Dropped != 20 || st.QueueLen != 0 {
		t.Fatalf("stats %+v, want every undelivered event counted as dropped", st)
	}
	// Closing again is harmless.
	if err := w.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNewRefusesWiringMistakes(t *testing.T) {
	for name, f := range map[string]func(){
		"empty URL": func() { New("", new(tallies)) },
		"no scheme": func() { New("example.com/hook", new(tallies)) },
		"nil tally": func() { New("http://example.com/hook", nil) },
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
