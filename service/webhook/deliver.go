package webhook

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// job is one encoded event waiting for delivery.
type job struct {
	topic        string
	eventID      string
	enrollmentID string
	deviceID     string // the shard key: a device and its user channels stay in order
	body         []byte
	signature    string
}

// size is what j counts against the queue's byte bound: its encoded
// event, which is nearly all the memory it holds.
func (j *job) size() int64 { return int64(len(j.body)) }

// shard is one worker's FIFO of jobs. A slice rather than a channel so the
// queue bound is shared by all shards without preallocating it per shard.
type shard struct {
	mu   sync.Mutex
	jobs []*job
	wake chan struct{} // capacity 1: "there may be jobs"
}

func (s *shard) push(j *job) {
	s.mu.Lock()
	s.jobs = append(s.jobs, j)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *shard) pop() (*job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.jobs) == 0 {
		return nil, false
	}
	j := s.jobs[0]
	s.jobs[0] = nil
	s.jobs = s.jobs[1:]
	if len(s.jobs) == 0 {
		s.jobs = nil // let the backing array go
	}
	return j, true
}

// shardIndex maps a device ID to a shard, so every event of a device (and
// of its user channels) is delivered by the same worker, in order.
func shardIndex(deviceID string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(deviceID))
	return int(h.Sum32() % uint32(n))
}

// start creates the shards and their workers.
func (w *Webhook) start() {
	w.closing = make(chan struct{})
	w.done = make(chan struct{})
	w.stop, w.cancel = context.WithCancel(context.Background())
	w.shards = make([]*shard, w.workers)
	for i := range w.shards {
		s := &shard{wake: make(chan struct{}, 1)}
		w.shards[i] = s
		w.workerWG.Add(1)
		go w.work(s)
	}
	go func() {
		w.workerWG.Wait()
		close(w.done)
	}()
}

// work delivers s's jobs one at a time, in order, until Close: then it
// delivers what is left and exits.
func (w *Webhook) work(s *shard) {
	defer w.workerWG.Done()
	for {
		if j, ok := s.pop(); ok {
			w.handle(j)
			continue
		}
		select {
		case <-w.closing:
			// Close holds off new pushes before closing the channel, so
			// an empty shard now stays empty.
			if j, ok := s.pop(); ok {
				w.handle(j)
				continue
			}
			return
		case <-s.wake:
		}
	}
}

// handle delivers a job taken off a shard; its bytes count against the
// bound until it is delivered or given up, retries included, since that is
// how long it is held in memory.
func (w *Webhook) handle(j *job) {
	w.taken()
	w.deliver(j)
	w.release(j)
}

// deliver sends j, retrying failures with exponential backoff and jitter
// until retryFor has passed since the first attempt; then the event is
// dropped. Retrying keeps the rest of the shard waiting: that is what keeps
// a device's events in order.
func (w *Webhook) deliver(j *job) {
	if w.stop.Err() != nil { // Close gave up: count what is left, quietly
		w.dropped.Add(1)
		return
	}
	deadline := time.Now().Add(w.retryFor)
	wait := w.minBackoff
	for attempt := 1; ; attempt++ {
		err := w.post(j)
		if err == nil {
			w.delivered.Add(1)
			if attempt > 1 {
				w.logger.Info("webhook: event delivered after retries", "topic", j.topic, "event_id", j.eventID, "enrollment_id", j.enrollmentID, "attempts", attempt)
			}
			return
		}
		if w.stop.Err() != nil {
			w.dropped.Add(1)
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			w.dropped.Add(1)
			w.logger.Error("webhook: event dropped after retrying", "topic", j.topic, "event_id", j.eventID, "enrollment_id", j.enrollmentID, "attempts", attempt, "retry_for", w.retryFor, "err", err)
			return
		}
		level := w.logger.Debug
		if attempt == 1 {
			level = w.logger.Warn
		}
		level("webhook: delivery failed, retrying", "topic", j.topic, "event_id", j.eventID, "enrollment_id", j.enrollmentID, "attempt", attempt, "err", err)
		// Wait between half and all of the current backoff, never past
		// the deadline, so the last attempt happens right at it.
		sleep := min(wait/2+rand.N(wait/2+1), left)
		timer := time.NewTimer(sleep)
		select {
		case <-timer.C:
		case <-w.stop.Done():
			timer.Stop()
			w.dropped.Add(1)
			return
		}
		w.retries.Add(1)
		wait = min(wait*2, w.maxBackoff)
	}
}

// statusError is a receiver's non-2xx answer.
type statusError struct{ code int }

func (e *statusError) Error() string {
	return fmt.Sprintf("receiver answered %d %s", e.code, http.StatusText(e.code))
}

// post makes one delivery attempt, bounded by the per-request timeout. Any
// 2xx is success.
func (w *Webhook) post(j *job) error {
	ctx, cancel := context.WithTimeout(w.stop, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(j.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if j.signature != "" {
		req.Header.Set(SignatureHeader, j.signature)
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

// Stats are the webhook's delivery counters since New.
type Stats struct {
	// Delivered counts events a receiver accepted (any 2xx).
	Delivered uint64
	// Retries counts repeated attempts after a failed one.
	Retries uint64
	// Dropped counts events given up: queue full, retried for longer than
	// the retry window, or left over when Close's context ended.
	Dropped uint64
	// QueueLen is how many events wait for delivery now (not counting the
	// ones being sent).
	QueueLen int
	// QueueBytes is how many bytes the events waiting for delivery and
	// the ones being sent hold (their encoded JSON); it never exceeds the
	// WithQueueBytes bound.
	QueueBytes int64
}

// Stats returns the current delivery counters.
func (w *Webhook) Stats() Stats {
	w.account.Lock()
	queued, held := w.queued, w.held
	w.account.Unlock()
	return Stats{
		Delivered:  w.delivered.Load(),
		Retries:    w.retries.Load(),
		Dropped:    w.dropped.Load(),
		QueueLen:   queued,
		QueueBytes: held,
	}
}

// Close stops accepting events (the service methods then return
// ErrClosed), keeps delivering the queued ones, retries included, until
// they are all done or ctx ends, and then stops the workers. When ctx ends
// first, in-flight attempts are abandoned, what is left is dropped, and
// Close returns an error saying how many. Close returns once every worker
// has exited; calling it again only waits for that.
func (w *Webhook) Close(ctx context.Context) error {
	w.mu.Lock()
	first := !w.closed
	w.closed = true
	w.mu.Unlock()
	if first {
		close(w.closing)
	}
	before := w.dropped.Load()
	var err error
	select {
	case <-w.done:
	case <-ctx.Done():
		w.cancel()
		<-w.done
		if lost := w.dropped.Load() - before; lost > 0 {
			err = fmt.Errorf("webhook: closing: %w: %d events not delivered", ctx.Err(), lost)
			w.logger.Warn("webhook: closed before every event was delivered", "dropped", lost, "err", ctx.Err())
		}
	}
	w.cancel()
	if w.transport != nil {
		w.transport.CloseIdleConnections()
	}
	return err
}
