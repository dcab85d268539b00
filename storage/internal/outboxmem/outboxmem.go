// Package outboxmem is the in-memory heart of the inmem and file
// backends' storage.OutboxStore and storage.LeaseStore: the events and
// leases in maps behind a mutex, with a hook through which the file
// backend makes each change durable before it is applied.
package outboxmem

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// Entry is one stored event with its place in store order.
type Entry struct {
	// Seq orders events: store order, kept across redeliveries.
	Seq uint64
	// Event is the event as stored.
	Event storage.OutboxEvent

	// owner and leaseUntil are the claim, in memory only: claims are for
	// the replicas of one process's lifetime, so a restart releases them.
	owner      string
	leaseUntil time.Time
}

// Persister makes outbox changes durable. Put stores e (new or changed),
// Delete removes it; the change is applied in memory only after they
// succeed. Claims are never persisted.
type Persister interface {
	Put(e *Entry) error
	Delete(e *Entry) error
}

// BodyLoader is implemented by a Persister that keeps event bodies so
// that the outbox need not: the outbox then holds only the events'
// metadata in memory, and LoadBody reads an event's body back when a
// claim or a listing hands the event out. So a receiver that is down for
// long costs disk, not memory.
type BodyLoader interface {
	LoadBody(e *Entry) ([]byte, error)
}

// Outbox implements storage.OutboxStore in memory. Build it with New; the
// zero value is not usable.
type Outbox struct {
	mu      sync.Mutex
	persist Persister // nil: memory only
	seq     uint64
	byID    map[string]*Entry
	// pending is each enrollment's pending events in seq order: its head
	// is the only one ClaimEvents may hand out.
	pending map[string][]*Entry
	// storing holds the IDs of events being written by StoreEvent.
	storing map[string]struct{}
}

var _ storage.OutboxStore = (*Outbox)(nil)

// New returns an empty outbox writing through p (nil: memory only).
func New(p Persister) *Outbox {
	return &Outbox{
		persist: p,
		byID:    make(map[string]*Entry),
		pending: make(map[string][]*Entry),
		storing: make(map[string]struct{}),
	}
}

// Load adds an event read back at start, with its Seq. It is for building
// the outbox before it is shared; nothing is persisted.
func (o *Outbox) Load(e *Entry) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq = max(o.seq, e.Seq)
	o.byID[e.Event.ID] = e
	if e.Event.State == storage.OutboxPending {
		o.insertPending(e)
	}
}

func (o *Outbox) insertPending(e *Entry) {
	q := o.pending[e.Event.EnrollmentID]
	i, _ := slices.BinarySearchFunc(q, e.Seq, func(c *Entry, seq uint64) int { return cmp.Compare(c.Seq, seq) })
	o.pending[e.Event.EnrollmentID] = slices.Insert(q, i, e)
}

func (o *Outbox) removePending(e *Entry) {
	id := e.Event.EnrollmentID
	q := slices.DeleteFunc(o.pending[id], func(c *Entry) bool { return c == e })
	if len(q) == 0 {
		delete(o.pending, id)
		return
	}
	o.pending[id] = q
}

func (o *Outbox) put(e *Entry) error {
	if o.persist == nil {
		return nil
	}
	return o.persist.Put(e)
}

func (o *Outbox) remove(e *Entry) error {
	if o.persist != nil {
		if err := o.persist.Delete(e); err != nil {
			return err
		}
	}
	if e.Event.State == storage.OutboxPending {
		o.removePending(e)
	}
	delete(o.byID, e.Event.ID)
	return nil
}

func clone(ev storage.OutboxEvent) storage.OutboxEvent {
	ev.Body = bytes.Clone(ev.Body)
	return ev
}

// StoreEvent implements storage.OutboxStore. The event's Seq is taken
// first and the write made without holding the outbox, so that devices
// storing events at once share the file backend's group commit; the event
// becomes visible once written.
func (o *Outbox) StoreEvent(_ context.Context, ev *storage.OutboxEvent) error {
	o.mu.Lock()
	_, dup := o.byID[ev.ID]
	_, inFlight := o.storing[ev.ID]
	if dup || inFlight {
		o.mu.Unlock()
		return fmt.Errorf("storing event %s: already stored", ev.ID)
	}
	o.seq++
	e := &Entry{Seq: o.seq, Event: clone(*ev)}
	e.Event.State = storage.OutboxPending
	o.storing[ev.ID] = struct{}{}
	o.mu.Unlock()

	err := o.put(e)
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.storing, ev.ID)
	if err != nil {
		return fmt.Errorf("storing event %s: %w", ev.ID, err)
	}
	if o.bodiesOnDisk() {
		e.Event.Body = nil
	}
	o.byID[ev.ID] = e
	o.insertPending(e)
	return nil
}

// bodiesOnDisk reports whether the persister keeps the bodies.
func (o *Outbox) bodiesOnDisk() bool {
	_, ok := o.persist.(BodyLoader)
	return ok
}

// handOut returns a copy of e's event with its body, read back from the
// persister when it keeps the bodies.
func (o *Outbox) handOut(e *Entry) (storage.OutboxEvent, error) {
	ev := clone(e.Event)
	if l, ok := o.persist.(BodyLoader); ok {
		body, err := l.LoadBody(e)
		if err != nil {
			return ev, fmt.Errorf("reading event %s: %w", e.Event.ID, err)
		}
		ev.Body = body
	}
	return ev, nil
}

// ClaimEvents implements storage.OutboxStore: it looks at the head of
// every enrollment's pending events.
func (o *Outbox) ClaimEvents(_ context.Context, owner string, now, leaseUntil time.Time, limit int) ([]storage.OutboxEvent, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var heads []*Entry
	for _, q := range o.pending {
		e := q[0]
		if e.Event.NextAttemptAt.After(now) || (e.owner != "" && e.leaseUntil.After(now)) {
			continue
		}
		heads = append(heads, e)
	}
	slices.SortFunc(heads, func(a, b *Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	if len(heads) > limit {
		heads = heads[:max(limit, 0)]
	}
	evs := make([]storage.OutboxEvent, 0, len(heads))
	for _, e := range heads {
		ev, err := o.handOut(e)
		if err != nil {
			return nil, err
		}
		e.owner, e.leaseUntil = owner, leaseUntil
		evs = append(evs, ev)
	}
	return evs, nil
}

// held returns event id if owner holds its claim.
func (o *Outbox) held(id, owner string) (*Entry, error) {
	e := o.byID[id]
	if e == nil || e.Event.State != storage.OutboxPending || e.owner != owner {
		return nil, fmt.Errorf("event %s: %w", id, storage.ErrLeaseLost)
	}
	return e, nil
}

// CompleteEvent implements storage.OutboxStore.
func (o *Outbox) CompleteEvent(_ context.Context, id, owner string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	e, err := o.held(id, owner)
	if err != nil {
		return err
	}
	if err := o.remove(e); err != nil {
		return fmt.Errorf("completing event %s: %w", id, err)
	}
	return nil
}

// update persists changed, a copy of e's event, then applies it to e.
func (o *Outbox) update(e *Entry, changed storage.OutboxEvent) error {
	next := &Entry{Seq: e.Seq, Event: changed}
	if l, ok := o.persist.(BodyLoader); ok {
		// The persister rewrites the whole event: give it the body back.
		body, err := l.LoadBody(e)
		if err != nil {
			return err
		}
		next.Event.Body = body
		changed.Body = nil
	}
	if err := o.put(next); err != nil {
		return err
	}
	wasPending := e.Event.State == storage.OutboxPending
	e.Event = changed
	e.owner, e.leaseUntil = "", time.Time{}
	switch isPending := changed.State == storage.OutboxPending; {
	case wasPending && !isPending:
		o.removePending(e)
	case !wasPending && isPending:
		o.insertPending(e)
	}
	return nil
}

// RetryEvent implements storage.OutboxStore.
func (o *Outbox) RetryEvent(_ context.Context, id, owner string, attempts int, next time.Time, lastErr string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	e, err := o.held(id, owner)
	if err != nil {
		return err
	}
	ev := e.Event
	ev.Attempts, ev.NextAttemptAt, ev.LastError = attempts, next, lastErr
	if err := o.update(e, ev); err != nil {
		return fmt.Errorf("recording a retry of event %s: %w", id, err)
	}
	return nil
}

// SetAsideEvent implements storage.OutboxStore.
func (o *Outbox) SetAsideEvent(_ context.Context, id, owner string, attempts int, lastErr string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	e, err := o.held(id, owner)
	if err != nil {
		return err
	}
	ev := e.Event
	ev.State, ev.Attempts, ev.LastError, ev.NextAttemptAt = storage.OutboxFailed, attempts, lastErr, time.Time{}
	if err := o.update(e, ev); err != nil {
		return fmt.Errorf("setting event %s aside: %w", id, err)
	}
	return nil
}

// ReleaseEvents implements storage.OutboxStore.
func (o *Outbox) ReleaseEvents(_ context.Context, owner string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, q := range o.pending {
		for _, e := range q {
			if e.owner == owner {
				e.owner, e.leaseUntil = "", time.Time{}
			}
		}
	}
	return nil
}

// ListEvents implements storage.OutboxStore. The cursor is the Seq of a
// page's last event.
func (o *Outbox) ListEvents(_ context.Context, state string, p storage.Page) ([]storage.OutboxEvent, string, error) {
	after, err := decodeCursor(p.Cursor)
	if err != nil {
		return nil, "", fmt.Errorf("listing %s events: %w", state, err)
	}
	limit := p.Size()
	o.mu.Lock()
	defer o.mu.Unlock()
	var match []*Entry
	for _, e := range o.byID {
		if e.Event.State == state && e.Seq > after {
			match = append(match, e)
		}
	}
	slices.SortFunc(match, func(a, b *Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	next := ""
	if len(match) > limit {
		match = match[:limit]
		next = storage.EncodeCursor(strconv.FormatUint(match[limit-1].Seq, 10))
	}
	evs := make([]storage.OutboxEvent, len(match))
	for i, e := range match {
		if evs[i], err = o.handOut(e); err != nil {
			return nil, "", err
		}
	}
	return evs, next, nil
}

func decodeCursor(cursor string) (uint64, error) {
	s, err := storage.DecodeCursor(cursor)
	if err != nil || s == "" {
		return 0, err
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cursor %q: %w", cursor, storage.ErrBadCursor)
	}
	return seq, nil
}

// RedeliverEvent implements storage.OutboxStore: the event keeps its Seq,
// so it takes its original place.
func (o *Outbox) RedeliverEvent(_ context.Context, id string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.byID[id]
	if e == nil || e.Event.State != storage.OutboxFailed {
		return fmt.Errorf("redelivering event %s: %w", id, storage.ErrNotFound)
	}
	ev := e.Event
	ev.State, ev.Attempts, ev.NextAttemptAt = storage.OutboxPending, 0, time.Time{}
	if err := o.update(e, ev); err != nil {
		return fmt.Errorf("redelivering event %s: %w", id, err)
	}
	return nil
}

// DropEvent implements storage.OutboxStore.
func (o *Outbox) DropEvent(_ context.Context, id string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.byID[id]
	if e == nil {
		return fmt.Errorf("dropping event %s: %w", id, storage.ErrNotFound)
	}
	if err := o.remove(e); err != nil {
		return fmt.Errorf("dropping event %s: %w", id, err)
	}
	return nil
}

// OutboxStats implements storage.OutboxStore.
func (o *Outbox) OutboxStats(context.Context) (storage.OutboxStats, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var st storage.OutboxStats
	for _, q := range o.pending {
		st.Pending += len(q)
		// An enrollment's oldest event is its first in store order.
		if c := q[0].Event.CreatedAt; st.OldestPending.IsZero() || c.Before(st.OldestPending) {
			st.OldestPending = c
		}
	}
	st.Failed = len(o.byID) - st.Pending
	return st, nil
}

// TrimOutbox implements storage.OutboxStore; "oldest" is store order.
func (o *Outbox) TrimOutbox(_ context.Context, maxEvents int, failedBefore time.Time) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var failed, pending []*Entry
	for _, e := range o.byID {
		if e.Event.State == storage.OutboxFailed {
			failed = append(failed, e)
		} else {
			pending = append(pending, e)
		}
	}
	bySeq := func(a, b *Entry) int { return cmp.Compare(a.Seq, b.Seq) }
	slices.SortFunc(failed, bySeq)
	slices.SortFunc(pending, bySeq)
	var victims []*Entry
	kept := failed[:0:0]
	for _, e := range failed {
		if e.Event.CreatedAt.Before(failedBefore) {
			victims = append(victims, e)
		} else {
			kept = append(kept, e)
		}
	}
	if maxEvents > 0 {
		over := len(kept) + len(pending) - maxEvents
		for _, list := range [][]*Entry{kept, pending} {
			n := min(max(over, 0), len(list))
			victims = append(victims, list[:n]...)
			over -= n
		}
	}
	for i, e := range victims {
		if err := o.remove(e); err != nil {
			return i, fmt.Errorf("trimming the outbox: %w", err)
		}
	}
	return len(victims), nil
}

// Lease is one named lease as Leases keeps it.
type Lease struct {
	Name, Owner string
	Until       time.Time
}

// Leases implements storage.LeaseStore in memory, writing each change
// through persist (nil: memory only) before applying it. Build it with
// NewLeases.
type Leases struct {
	mu      sync.Mutex
	persist func(l Lease, release bool) error
	leases  map[string]Lease
}

var _ storage.LeaseStore = (*Leases)(nil)

// NewLeases returns Leases holding loaded (read back at start), writing
// through persist: called with the new lease, or with release true for
// a lease given up.
func NewLeases(persist func(l Lease, release bool) error, loaded ...Lease) *Leases {
	ls := &Leases{persist: persist, leases: make(map[string]Lease)}
	for _, l := range loaded {
		ls.leases[l.Name] = l
	}
	return ls
}

// AcquireLease implements storage.LeaseStore.
func (ls *Leases) AcquireLease(_ context.Context, name, owner string, now, until time.Time) (bool, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l, ok := ls.leases[name]; ok && l.Owner != owner && l.Until.After(now) {
		return false, nil
	}
	l := Lease{Name: name, Owner: owner, Until: until}
	if ls.persist != nil {
		if err := ls.persist(l, false); err != nil {
			return false, fmt.Errorf("acquiring lease %s: %w", name, err)
		}
	}
	ls.leases[name] = l
	return true, nil
}

// ReleaseLease implements storage.LeaseStore.
func (ls *Leases) ReleaseLease(_ context.Context, name, owner string) error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l, ok := ls.leases[name]
	if !ok || l.Owner != owner {
		return nil
	}
	if ls.persist != nil {
		if err := ls.persist(l, true); err != nil {
			return fmt.Errorf("releasing lease %s: %w", name, err)
		}
	}
	delete(ls.leases, name)
	return nil
}
