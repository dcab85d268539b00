package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// start runs the claimer.
func (w *Webhook) start() {
	w.wake = make(chan struct{}, 1)
	w.closing = make(chan struct{})
	w.claimer = make(chan struct{})
	w.done = make(chan struct{})
	w.stop, w.cancel = context.WithCancel(context.Background())
	go w.claim()
}

// lease is how long a claim lasts: an attempt takes at most the timeout,
// and recording its outcome a little more.
func (w *Webhook) lease() time.Duration { return 2 * w.timeout }

// claim is the claimer loop: whenever workers are free it claims up to
// that many events (the heads of as many enrollments) and hands each to a
// delivery goroutine. It claims again at once when a claim filled every
// free worker (there may be more), when woken (an event stored here, a
// delivery finished), and at every poll interval (events stored by other
// replicas, retries coming due); it stops at Close.
func (w *Webhook) claim() {
	defer close(w.claimer)
	// sem holds a token per delivery running; only this loop adds
	// tokens, so the free count it reads can only grow meanwhile.
	sem := make(chan struct{}, w.workers)
	tick := time.NewTicker(w.pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-w.closing:
			return
		default:
		}
		if free := cap(sem) - len(sem); free > 0 {
			now := w.now()
			events, err := w.outbox.ClaimEvents(w.stop, w.owner, now, now.Add(w.lease()), free)
			if err != nil && w.stop.Err() == nil {
				w.logger.Warn("webhook: claiming events from the outbox", "err", err)
			}
			for _, ev := range events {
				sem <- struct{}{}
				w.inflight.Add(1)
				go func() {
					defer func() {
						<-sem
						w.inflight.Done()
						w.poke() // the enrollment's next event is now its head
					}()
					w.deliver(ev)
				}()
			}
			if err == nil && len(events) == free {
				continue
			}
		}
		select {
		case <-w.closing:
			return
		case <-w.wake:
		case <-tick.C:
		}
	}
}

// outcome classifies one attempt.
type outcome int

const (
	accepted    outcome = iota // any 2xx
	unreachable                // connection error, timeout, 429, 502, 503, 504
	refused                    // any other non-2xx
)

// classify says what err, the result of post, means for the event.
func classify(err error) outcome {
	if err == nil {
		return accepted
	}
	var se *statusError
	if errors.As(err, &se) {
		switch se.code {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return unreachable
		}
		return refused
	}
	return unreachable
}

// refusedPrefix starts the LastError of a refused attempt, followed by
// how many refusals in a row the event has had: the count survives a
// hand-over to another replica with the event itself.
const refusedPrefix = "refused "

// refusals returns how many refusals in a row lastErr records.
func refusals(lastErr string) int {
	rest, ok := strings.CutPrefix(lastErr, refusedPrefix)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(rest[:strings.IndexByte(rest+":", ':')])
	if err != nil {
		return 0
	}
	return n
}

// backoff is the wait after the attempts-th failed attempt of an
// unreachable receiver: the minimum doubled per attempt up to the
// maximum, of which a random half to all.
func (w *Webhook) backoff(attempts int) time.Duration {
	wait := w.minBackoff
	for i := 1; i < attempts && wait < w.maxBackoff; i++ {
		wait *= 2
	}
	wait = min(wait, w.maxBackoff)
	return wait/2 + rand.N(wait/2+1)
}

// deliver makes one attempt at ev, claimed by this process, and records
// its outcome in the outbox.
func (w *Webhook) deliver(ev storage.OutboxEvent) {
	err := w.post(ev.Body)
	if w.stop.Err() != nil {
		// Close gave up on the attempt: it is not the receiver's doing,
		// so nothing is recorded; Close releases the claim.
		return
	}
	attempts := ev.Attempts + 1
	now := w.now()
	log := w.logger.With("topic", ev.Topic, "event_id", ev.ID, "enrollment_id", ev.EnrollmentID, "attempt", attempts)
	ctx, cancel := context.WithTimeout(w.stop, w.timeout)
	defer cancel()
	var storeErr error
	switch classify(err) {
	case accepted:
		storeErr = w.outbox.CompleteEvent(ctx, ev.ID, w.owner)
		if storeErr == nil {
			w.delivered.Add(1)
			if attempts > 1 {
				log.Info("webhook: event delivered after retries")
			}
		}
	case unreachable:
		deadline := ev.CreatedAt.Add(w.retryFor)
		if !now.Before(deadline) {
			storeErr = w.outbox.SetAsideEvent(ctx, ev.ID, w.owner, attempts, err.Error())
			if storeErr == nil {
				w.setAside.Add(1)
				log.Error("webhook: event set aside: receiver unreachable for longer than the retry window", "retry_for", w.retryFor, "err", err)
			}
			break
		}
		// Never past the deadline, so the last attempt happens at it.
		next := now.Add(w.backoff(attempts))
		if next.After(deadline) {
			next = deadline
		}
		storeErr = w.outbox.RetryEvent(ctx, ev.ID, w.owner, attempts, next, err.Error())
		if storeErr == nil {
			w.retries.Add(1)
			level := log.Debug
			if attempts == 1 {
				level = log.Warn
			}
			level("webhook: receiver unreachable, retrying", "next_attempt_at", next, "err", err)
		}
	case refused:
		n := refusals(ev.LastError) + 1
		lastErr := fmt.Sprintf("%s%d: %v", refusedPrefix, n, err)
		if n >= w.refusedAttempts || !now.Before(ev.CreatedAt.Add(w.retryFor)) {
			storeErr = w.outbox.SetAsideEvent(ctx, ev.ID, w.owner, attempts, lastErr)
			if storeErr == nil {
				w.setAside.Add(1)
				log.Error("webhook: event set aside: the receiver refused it", "refusals", n, "err", err)
			}
			break
		}
		wait := w.refusedWaits[min(n-1, len(w.refusedWaits)-1)]
		storeErr = w.outbox.RetryEvent(ctx, ev.ID, w.owner, attempts, now.Add(wait), lastErr)
		if storeErr == nil {
			w.retries.Add(1)
			log.Warn("webhook: receiver refused the event, retrying", "refusals", n, "wait", wait, "err", err)
		}
	}
	switch {
	case storeErr == nil:
	case errors.Is(storeErr, storage.ErrLeaseLost):
		// The claim expired and another replica took the event (or it
		// was dropped): its outcome is that replica's to record.
		w.leaseLost.Add(1)
		log.Debug("webhook: claim lost before the outcome was recorded", "err", storeErr)
	default:
		// The claim expires and the event is delivered again: at least
		// once, with the same event_id.
		log.Warn("webhook: recording the delivery outcome in the outbox", "err", storeErr)
	}
}

// statusError is a receiver's non-2xx answer.
type statusError struct{ code int }

func (e *statusError) Error() string {
	return fmt.Sprintf("receiver answered %d %s", e.code, http.StatusText(e.code))
}

// post makes one delivery attempt, bounded by the per-request timeout,
// signing the body when there is an HMAC key. Any 2xx is success.
func (w *Webhook) post(body []byte) error {
	ctx, cancel := context.WithTimeout(w.stop, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if len(w.hmacKey) > 0 {
		req.Header.Set(SignatureHeader, sign(w.hmacKey, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	// Read a little of the body so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &statusError{code: resp.StatusCode}
	}
	return nil
}

// Trim enforces the outbox's bounds (WithOutboxMaxEvents,
// WithFailedRetention): set-aside events older than the retention go,
// then, while more than the bound remain, the oldest set-aside events and
// then the oldest pending ones. What it deletes is counted and logged.
// It is a runner job: one replica at a time.
func (w *Webhook) Trim(ctx context.Context, now time.Time) error {
	var failedBefore time.Time
	if w.failedRetention > 0 {
		failedBefore = now.Add(-w.failedRetention)
	}
	n, err := w.outbox.TrimOutbox(ctx, w.maxEvents, failedBefore)
	if n > 0 {
		w.trimmed.Add(uint64(n))
		w.logger.Warn("webhook: outbox trimmed", "deleted", n, "max_events", w.maxEvents, "failed_retention", w.failedRetention)
	}
	if err != nil {
		return fmt.Errorf("webhook: trimming the outbox: %w", err)
	}
	return nil
}

// Stats are the webhook's counters since New, for this process.
type Stats struct {
	// Delivered counts events a receiver accepted (any 2xx).
	Delivered uint64
	// Retries counts failed attempts scheduled to be made again.
	Retries uint64
	// SetAside counts events set aside (refused, or unreachable for
	// longer than the retry window).
	SetAside uint64
	// StoreFailed counts events that could not be stored in the outbox
	// (lost).
	StoreFailed uint64
	// LeaseLost counts outcomes not recorded because the claim had
	// expired.
	LeaseLost uint64
	// Trimmed counts events Trim deleted.
	Trimmed uint64
}

// Stats returns the current counters.
func (w *Webhook) Stats() Stats {
	return Stats{
		Delivered:   w.delivered.Load(),
		Retries:     w.retries.Load(),
		SetAside:    w.setAside.Load(),
		StoreFailed: w.storeFailed.Load(),
		LeaseLost:   w.leaseLost.Load(),
		Trimmed:     w.trimmed.Load(),
	}
}

// Close stops claiming events, lets the deliveries in flight finish until
// ctx ends (then abandons them, recording nothing), and releases this
// process's claims so that other replicas take those events at once.
// Events still pending stay in the outbox for any replica. It returns an
// error when ctx ended with deliveries in flight. Calling it again only
// waits for the first call and returns its result.
func (w *Webhook) Close(ctx context.Context) error {
	w.closeOnce.Do(func() {
		defer close(w.done)
		close(w.closing)
		<-w.claimer // no claim is in progress any more
		finished := make(chan struct{})
		go func() {
			w.inflight.Wait()
			close(finished)
		}()
		select {
		case <-finished:
		case <-ctx.Done():
			w.cancel()
			<-finished
			w.closeErr = fmt.Errorf("webhook: closing: %w: deliveries in flight abandoned (their events stay pending)", ctx.Err())
		}
		w.cancel()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := w.outbox.ReleaseEvents(rctx, w.owner); err != nil {
			w.closeErr = errors.Join(w.closeErr, fmt.Errorf("webhook: releasing claims: %w", err))
		}
		if w.transport != nil {
			w.transport.CloseIdleConnections()
		}
		if w.closeErr != nil {
			w.logger.Warn("webhook: closed", "err", w.closeErr)
		}
	})
	<-w.done
	return w.closeErr
}
