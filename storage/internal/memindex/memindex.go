// Package memindex is the in-memory index the inmem and file backends
// share: each enrollment channel's push info, state and pending commands,
// the reads answered from them alone (push info, the push-token mark, the
// token-update tally, the enrollment filters), and keyset pages over
// sorted IDs. It has no lock of its own: the backend's lock guards it.
package memindex

import (
	"bytes"
	"cmp"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// Channel is one enrollment (a device or user channel), known from its
// first TokenUpdate. A backend's record of a channel embeds it.
type Channel struct {
	ID string
	// ParentID is the device channel of a user channel ("" for a device
	// channel).
	ParentID string
	Type     mdm.EnrollType
	// Push is the push info of the last TokenUpdate.
	Push    mdm.Push
	Enabled bool
	// Tally counts the TokenUpdates since the channel was last enabled.
	Tally int
	// PushTokenInvalidAt is when APNs refused Push.Token
	// (storage.PushTokenStore); zero while it is valid. The next
	// TokenUpdate clears it.
	PushTokenInvalidAt time.Time
}

// DeviceID returns the device channel of c: its parent, or itself.
func (c *Channel) DeviceID() string {
	if c.ParentID != "" {
		return c.ParentID
	}
	return c.ID
}

// PushTokenValid reports whether APNs has not refused c's push token.
func (c *Channel) PushTokenValid() bool { return c.PushTokenInvalidAt.IsZero() }

// PushInfo returns a copy of c's push info, or nil if there is nothing to
// push to: c is disabled or has no token.
func (c *Channel) PushInfo() *mdm.Push {
	if !c.Enabled || len(c.Push.Token) == 0 {
		return nil
	}
	return &mdm.Push{Token: bytes.Clone(c.Push.Token), PushMagic: c.Push.PushMagic, Topic: c.Push.Topic}
}

// Matches reports whether c passes the filters of f the index answers
// (type, enabled, topic, device); MatchesInfo applies the others.
func (c *Channel) Matches(f *storage.EnrollmentFilter) bool {
	return (f.Type == "" || c.Type == f.Type) &&
		(f.Enabled == nil || c.Enabled == *f.Enabled) &&
		(f.Topic == "" || c.Push.Topic == f.Topic) &&
		(f.DeviceID == "" || c.ID == f.DeviceID || c.ParentID == f.DeviceID)
}

// MatchesInfo reports whether i passes the filters of f the index does not
// answer: serial number and last seen.
func MatchesInfo(i *storage.EnrollmentInfo, f *storage.EnrollmentFilter) bool {
	return (f.Serial == "" || i.SerialNumber == f.Serial) &&
		(f.SeenBefore.IsZero() || i.LastSeenAt.Before(f.SeenBefore)) &&
		(f.SeenAfter.IsZero() || i.LastSeenAt.After(f.SeenAfter))
}

// Info returns c's EnrollmentInfo as far as the index knows it; the
// backend adds the device's serial number and identity certificate, the
// times and the pending commands.
func (c *Channel) Info() storage.EnrollmentInfo {
	return storage.EnrollmentInfo{
		ID:               c.ID,
		Type:             c.Type,
		ParentID:         c.ParentID,
		Topic:            c.Push.Topic,
		Enabled:          c.Enabled,
		TokenUpdateTally: c.Tally,
		PushTokenValid:   c.PushTokenValid(),
	}
}

// Lookup returns the channel of an ID, or nil if it is unknown. Backends
// pass their own to the functions below.
type Lookup func(id string) *Channel

// PushInfos answers storage.PushStore.RetrievePushInfo: the push info of
// the ids that have one to push to. Callers hold the lock lookup needs.
func PushInfos(ids []string, lookup Lookup) map[string]*mdm.Push {
	out := make(map[string]*mdm.Push)
	for _, id := range ids {
		if c := lookup(id); c != nil {
			if p := c.PushInfo(); p != nil {
				out[id] = p
			}
		}
	}
	return out
}

// PushTokenValid answers storage.PushTokenStore.PushTokenValid for
// channel c of id (nil: unknown, an error wrapping storage.ErrNotFound).
func PushTokenValid(id string, c *Channel) (bool, error) {
	if c == nil {
		return false, fmt.Errorf("push token of %q: %w", id, storage.ErrNotFound)
	}
	return c.PushTokenValid(), nil
}

// TokenUpdateTally answers storage.TokenUpdateTallyStore for channel c of
// id (nil: unknown, an error wrapping storage.ErrNotFound).
func TokenUpdateTally(id string, c *Channel) (int, error) {
	if c == nil {
		return 0, fmt.Errorf("token update tally of %q: %w", id, storage.ErrNotFound)
	}
	return c.Tally, nil
}

// Children maps a device channel's ID to its user channels' IDs.
type Children map[string]map[string]struct{}

// Add records c under its device channel if it is a user channel.
func (ch Children) Add(c *Channel) {
	if c.ParentID == "" {
		return
	}
	if ch[c.ParentID] == nil {
		ch[c.ParentID] = make(map[string]struct{})
	}
	ch[c.ParentID][c.ID] = struct{}{}
}

// Candidates returns the IDs a ListEnrollments for f considers, in no
// order: f.DeviceID and its user channels if f names a device, else every
// key of all.
func Candidates[E any](all map[string]E, children Children, f *storage.EnrollmentFilter) iter.Seq[string] {
	return func(yield func(string) bool) {
		if f.DeviceID == "" {
			for id := range all {
				if !yield(id) {
					return
				}
			}
			return
		}
		if !yield(f.DeviceID) {
			return
		}
		for id := range children[f.DeviceID] {
			if !yield(id) {
				return
			}
		}
	}
}

// SortedAfter returns, in order, the IDs of ids after the cursor's ID
// after ("" for all) that keep accepts (nil keeps every one).
func SortedAfter(ids iter.Seq[string], after string, keep func(id string) bool) []string {
	var out []string
	for id := range ids {
		if (after == "" || id > after) && (keep == nil || keep(id)) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Paginate builds one keyset page from candidates in ID order: the first
// limit results of build (ok false leaves a candidate out), and the cursor
// of the next page, "" after the last. It builds one result past the page
// at most, to know there is a next one. The page is never nil.
func Paginate[C, R any](cands []C, limit int, build func(C) (r R, ok bool, err error), id func(*R) string) ([]R, string, error) {
	out := []R{}
	for _, c := range cands {
		r, ok, err := build(c)
		if err != nil {
			return nil, "", err
		}
		if !ok {
			continue
		}
		if len(out) == limit {
			return out, storage.EncodeCursor(id(&out[len(out)-1])), nil
		}
		out = append(out, r)
	}
	return out, "", nil
}

// Pending is one command pending for one enrollment.
type Pending struct {
	// Seq orders the enrollment's queue: enqueue order, strict FIFO.
	Seq         uint64
	CommandUUID string
	NotNow      int
	FirstNotNow time.Time
	LastNotNow  time.Time
	// Deferred is set by a NotNow and cleared by the next Idle: until
	// then the command is skipped.
	Deferred bool
}

// CountNotNow records a NotNow answer at now: the command stays pending,
// deferred until the next Idle.
func (p *Pending) CountNotNow(now time.Time) {
	p.NotNow++
	if p.FirstNotNow.IsZero() {
		p.FirstNotNow = now
	}
	p.LastNotNow = now
	p.Deferred = true
}

// Queued returns p as RetrieveQueue lists it, with the command's request
// type and enqueue time.
func (p *Pending) Queued(requestType string, enqueuedAt time.Time) storage.QueuedCommand {
	qc := storage.QueuedCommand{
		CommandUUID:  p.CommandUUID,
		RequestType:  requestType,
		EnqueuedAt:   enqueuedAt,
		NotNowCount:  p.NotNow,
		LastNotNowAt: p.LastNotNow,
	}
	if p.NotNow > 0 {
		qc.Status = mdm.StatusNotNow
	}
	return qc
}

// State returns enrollment id's state for p's command (enqueued at
// enqueuedAt): "pending", or NotNow after one.
func (p *Pending) State(id string, enqueuedAt time.Time) storage.CommandState {
	st := storage.CommandState{EnrollmentID: id, State: "pending", NotNowCount: p.NotNow, EnqueuedAt: enqueuedAt}
	if p.NotNow > 0 {
		st.State = mdm.StatusNotNow
	}
	return st
}

// Find returns the index of commandUUID in queue q, or -1.
func Find(q []*Pending, commandUUID string) int {
	return slices.IndexFunc(q, func(p *Pending) bool { return p.CommandUUID == commandUUID })
}

// Insert returns q with p added in Seq order. Enqueues usually finish in
// Seq order, so this is an append; concurrent ones may not.
func Insert(q []*Pending, p *Pending) []*Pending {
	i, _ := slices.BinarySearchFunc(q, p.Seq, func(c *Pending, seq uint64) int { return cmp.Compare(c.Seq, seq) })
	return slices.Insert(q, i, p)
}

// SortDue orders re-push candidates as storage.RepushStore.DueForRepush
// returns them: the longest overdue first, ties by ID.
func SortDue(records []storage.PushRecord) {
	slices.SortFunc(records, func(a, b storage.PushRecord) int {
		return cmp.Or(a.NextRepushAt.Compare(b.NextRepushAt), cmp.Compare(a.ID, b.ID))
	})
}
