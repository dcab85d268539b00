// Package inmem is an in-memory storage backend: maps behind one mutex (the
// webhook outbox and the leases behind their own). Nothing survives the
// process; it exists for tests and throw-away development servers, and as
// the simplest reading of the storage contract.
package inmem

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/memindex"
	"github.com/picomdm/picomdm/storage/internal/outboxmem"
	"github.com/picomdm/picomdm/storage/internal/pushkey"
	"github.com/picomdm/picomdm/storage/keyseal"
)

// device is what Authenticate (and the bootstrap token) store for a device
// channel.
type device struct {
	serialNumber    string
	authenticate    []byte
	certDER         []byte
	certNotAfter    time.Time
	authenticatedAt time.Time
	bootstrapToken  []byte
}

// enrollment is one channel, known from its first TokenUpdate: the shared
// index's channel and what only this backend keeps.
type enrollment struct {
	memindex.Channel
	unlockToken []byte
	tokenUpdate []byte
	enrolledAt  time.Time
	lastSeenAt  time.Time
	// pushTokenInvalidReason is set with Channel.PushTokenInvalidAt when
	// APNs refused the token, and cleared by the next TokenUpdate.
	pushTokenInvalidReason string
	// queue is the pending set, oldest first. Answered commands leave it
	// and are kept in results.
	queue   []*memindex.Pending
	results map[string]*result
}

// result is the last answer an enrollment gave to a command.
type result struct {
	status string
	raw    []byte
	at     time.Time
	notNow int
}

// command is an enqueued command, stored once for all its targets.
type command struct {
	requestType string
	raw         []byte
	enqueuedAt  time.Time
}

// pushCert is a topic's APNs certificate; keyPEM is sealed with the
// Store's KeySealer under storage.PushKeyNamePrefix+topic.
type pushCert struct {
	certPEM, keyPEM []byte
	staleToken      string
	notAfter        time.Time
}

// Store is the in-memory backend. Build it with New.
type Store struct {
	mu sync.Mutex
	// seq orders every enqueue: strict FIFO even for enqueues within
	// one clock tick.
	seq         uint64
	devices     map[string]*device
	enrollments map[string]*enrollment
	// children maps a device channel's ID to its user channels' IDs.
	children   memindex.Children
	userAuths  map[string][]byte
	commands   map[string]*command
	pushCerts  map[string]*pushCert
	hashToIDs  map[string]map[string]struct{}
	idToHashes map[string]map[string]*storage.CertHashInfo
	// pushRecords is the re-push sweep's record of each enrollment.
	pushRecords map[string]storage.PushRecord
	// scep is the SCEP CA's state (scep.go).
	scep scepState
	// sealer seals the private keys of pushCerts and of the SCEP CA.
	sealer storage.KeySealer

	*outbox
	*leases
}

var (
	_ storage.Store                  = (*Store)(nil)
	_ storage.CommandReportAndNexter = (*Store)(nil)
)

// Option configures a Store.
type Option func(*Store)

// WithKeySealer seals the private keys the store keeps (push
// certificates' and the SCEP CA's) with sealer (-storage-key); nil, the
// default, is keyseal.None: kept as given.
func WithKeySealer(sealer storage.KeySealer) Option {
	return func(s *Store) { s.sealer = keyseal.Or(sealer) }
}

// New returns an empty in-memory store.
func New(opts ...Option) *Store {
	s := &Store{
		devices:     make(map[string]*device),
		enrollments: make(map[string]*enrollment),
		children:    make(memindex.Children),
		userAuths:   make(map[string][]byte),
		commands:    make(map[string]*command),
		pushCerts:   make(map[string]*pushCert),
		hashToIDs:   make(map[string]map[string]struct{}),
		idToHashes:  make(map[string]map[string]*storage.CertHashInfo),
		pushRecords: make(map[string]storage.PushRecord),
		scep:        newSCEPState(),
		sealer:      keyseal.None,
		outbox:      outboxmem.New(nil),
		leases:      outboxmem.NewLeases(nil),
	}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// channel returns the index's channel of id, or nil if it is unknown.
// Callers hold s.mu.
func (s *Store) channel(id string) *memindex.Channel {
	if e := s.enrollments[id]; e != nil {
		return &e.Channel
	}
	return nil
}

// channelIDs returns id and, for a device channel, its user channels:
// what Authenticate and CheckOut act on. Callers hold s.mu.
func (s *Store) channelIDs(r *mdm.Request) []string {
	ids := []string{r.ID}
	if !r.Type.IsUserChannel() {
		for child := range s.children[r.ID] {
			ids = append(ids, child)
		}
	}
	return ids
}

// disable disables enrollment id. The tally restarts, as NanoMDM's does,
// so the next enrollment's first TokenUpdate is counted as 1 again.
// Callers hold s.mu.
func (s *Store) disable(id string) *enrollment {
	e := s.enrollments[id]
	if e != nil {
		e.Enabled = false
		e.Tally = 0
	}
	return e
}

// StoreAuthenticate implements storage.CheckinStore.
func (s *Store) StoreAuthenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	assoc, withCert := storage.CertAssociationFrom(r.Context)
	if withCert {
		if err := s.checkCertHashFreeLocked(r.ID, assoc.Hash); err != nil {
			return err
		}
		s.replaceCertHashesLocked(r.ID, assoc, now)
	}
	d := &device{
		serialNumber:    msg.SerialNumber,
		authenticate:    bytes.Clone(msg.RawBytes()),
		authenticatedAt: now,
	}
	if r.Certificate != nil {
		d.certDER = bytes.Clone(r.Certificate.Raw)
		d.certNotAfter = r.Certificate.NotAfter
	}
	s.devices[r.ID] = d
	for _, id := range s.channelIDs(r) {
		if e := s.disable(id); e != nil {
			e.queue = nil
			e.lastSeenAt = now
		}
	}
	return nil
}

// StoreTokenUpdate implements storage.CheckinStore.
func (s *Store) StoreTokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	e := s.enrollments[r.ID]
	if e == nil {
		e = &enrollment{
			Channel: memindex.Channel{ID: r.ID, ParentID: r.ParentID, Type: r.Type},
			results: make(map[string]*result),
		}
		s.enrollments[r.ID] = e
		s.children.Add(&e.Channel)
	}
	e.Push = mdm.Push{Token: bytes.Clone(msg.Token), PushMagic: msg.PushMagic, Topic: msg.Topic}
	e.PushTokenInvalidAt, e.pushTokenInvalidReason = time.Time{}, ""
	if len(msg.UnlockToken) > 0 {
		e.unlockToken = bytes.Clone(msg.UnlockToken)
	}
	e.tokenUpdate = bytes.Clone(msg.RawBytes())
	if !e.Enabled {
		e.enrolledAt = now
	}
	e.Enabled = true
	e.Tally++
	e.lastSeenAt = now
	return nil
}

// StoreUserAuthenticate implements storage.CheckinStore.
func (s *Store) StoreUserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.userAuths[r.ID] = bytes.Clone(msg.RawBytes())
	return nil
}

// Disable implements storage.CheckinStore.
func (s *Store) Disable(r *mdm.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.channelIDs(r) {
		s.disable(id)
	}
	return nil
}

// RetrieveTokenUpdateTally implements storage.TokenUpdateTallyStore.
func (s *Store) RetrieveTokenUpdateTally(_ context.Context, id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return memindex.TokenUpdateTally(id, s.channel(id))
}

// StoreBootstrapToken implements storage.BootstrapTokenStore. A token for
// a device that never authenticated (possible only out of order) still
// gets a device record, rather than failing the device's request.
func (s *Store) StoreBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[r.DeviceID()]
	if d == nil {
		d = &device{}
		s.devices[r.DeviceID()] = d
	}
	d.bootstrapToken = bytes.Clone(msg.BootstrapToken)
	return nil
}

// RetrieveBootstrapToken implements storage.BootstrapTokenStore.
func (s *Store) RetrieveBootstrapToken(r *mdm.Request, _ *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[r.DeviceID()]
	if d == nil || len(d.bootstrapToken) == 0 {
		return nil, nil
	}
	return &mdm.BootstrapToken{BootstrapToken: bytes.Clone(d.bootstrapToken)}, nil
}

// StoreCommandReport implements storage.CommandQueueStore.
func (s *Store) StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storeReportLocked(r, report)
	return nil
}

// RetrieveNextCommand implements storage.CommandQueueStore.
func (s *Store) RetrieveNextCommand(r *mdm.Request) (*mdm.Command, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextCommandLocked(r)
}

// StoreCommandReportAndRetrieveNext implements
// storage.CommandReportAndNexter: the two steps under one lock, so the
// in-memory reference also exercises the fast path callers take.
// A storage.PendingEvent in r's context is stored with the report, under
// the same lock.
func (s *Store) StoreCommandReportAndRetrieveNext(r *mdm.Request, report *mdm.CommandResults) (*mdm.Command, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storeReportLocked(r, report)
	if pending, ok := storage.PendingEventFrom(r.Context); ok {
		if err := s.StoreEvent(r.Context, pending.Event); err != nil {
			return nil, err
		}
		pending.MarkStored()
	}
	return s.nextCommandLocked(r)
}

// storeReportLocked is StoreCommandReport. Callers hold s.mu.
func (s *Store) storeReportLocked(r *mdm.Request, report *mdm.CommandResults) {
	now := time.Now()
	e := s.enrollments[r.ID]
	if e == nil {
		return
	}
	e.lastSeenAt = now
	if report.Status == "" || report.Status == mdm.StatusIdle {
		for _, q := range e.queue {
			q.Deferred = false
		}
		return
	}
	i := memindex.Find(e.queue, report.CommandUUID)
	if i < 0 {
		// Unknown, already final, or queued to someone else: first
		// final answer wins, so nothing to do.
		return
	}
	q := e.queue[i]
	if report.Status == mdm.StatusNotNow {
		q.CountNotNow(now)
	} else {
		e.queue = slices.Delete(e.queue, i, i+1)
	}
	e.results[report.CommandUUID] = &result{
		status: report.Status,
		raw:    bytes.Clone(report.Raw),
		at:     now,
		notNow: q.NotNow,
	}
}

// nextCommandLocked is RetrieveNextCommand. Callers hold s.mu.
func (s *Store) nextCommandLocked(r *mdm.Request) (*mdm.Command, error) {
	e := s.enrollments[r.ID]
	if e == nil {
		return nil, nil
	}
	for _, q := range e.queue {
		if q.Deferred {
			continue
		}
		c := s.commands[q.CommandUUID]
		if c == nil {
			return nil, fmt.Errorf("next command of %q: queued command %s has no body", r.ID, q.CommandUUID)
		}
		cmd := &mdm.Command{CommandUUID: q.CommandUUID, Raw: bytes.Clone(c.raw)}
		cmd.Command.RequestType = c.requestType
		return cmd, nil
	}
	return nil, nil
}

// EnqueueCommand implements storage.CommandEnqueuer. The command is stored
// only if at least one ID is queued to, so a call naming only unknown IDs
// can be retried with the same CommandUUID.
func (s *Store) EnqueueCommand(_ context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	if cmd == nil || cmd.CommandUUID == "" {
		return nil, errors.New("enqueue: command has no CommandUUID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.commands[cmd.CommandUUID] != nil {
		return nil, fmt.Errorf("enqueue %s: %w", cmd.CommandUUID, storage.ErrCommandExists)
	}
	errs := make(map[string]error)
	named := make(map[string]struct{}, len(ids))
	s.seq++
	queuedTo := 0
	for _, id := range ids {
		e := s.enrollments[id]
		if e == nil {
			errs[id] = fmt.Errorf("enqueue %s to %q: %w", cmd.CommandUUID, id, storage.ErrNotFound)
			continue
		}
		if _, dup := named[id]; dup {
			continue
		}
		named[id] = struct{}{}
		e.queue = append(e.queue, &memindex.Pending{Seq: s.seq, CommandUUID: cmd.CommandUUID})
		queuedTo++
	}
	if queuedTo > 0 {
		s.commands[cmd.CommandUUID] = &command{
			requestType: cmd.RequestType(),
			raw:         bytes.Clone(cmd.Raw),
			enqueuedAt:  time.Now(),
		}
	}
	return errs, nil
}

// RetrievePushInfo implements storage.PushStore.
func (s *Store) RetrievePushInfo(_ context.Context, ids []string) (map[string]*mdm.Push, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return memindex.PushInfos(ids, s.channel), nil
}

// StorePushCert implements storage.PushCertStore.
func (s *Store) StorePushCert(_ context.Context, pemCert, pemKey []byte) error {
	pc, sealed, err := pushkey.Seal(s.sealer, pemCert, pemKey)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushCerts[pc.Topic] = &pushCert{
		certPEM:    bytes.Clone(pemCert),
		keyPEM:     bytes.Clone(sealed),
		staleToken: pc.StaleToken,
		notAfter:   pc.NotAfter,
	}
	return nil
}

// RetrievePushCert implements storage.PushCertStore.
func (s *Store) RetrievePushCert(_ context.Context, topic string) (*tls.Certificate, string, error) {
	s.mu.Lock()
	pc := s.pushCerts[topic]
	s.mu.Unlock()
	if pc == nil {
		return nil, "", fmt.Errorf("push cert for topic %q: %w", topic, storage.ErrNotFound)
	}
	cert, err := pushkey.Open(s.sealer, topic, pc.certPEM, pc.keyPEM)
	if err != nil {
		return nil, "", err
	}
	return cert, pc.staleToken, nil
}

// IsPushCertStale implements storage.PushCertStore. An unknown topic is
// stale: whatever the caller holds for it is not current.
func (s *Store) IsPushCertStale(_ context.Context, topic, staleToken string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pc := s.pushCerts[topic]
	return pc == nil || pc.staleToken != staleToken, nil
}

// deviceKeys returns the identifying keys of a device channel, for the
// SetBootstrapToken message migration builds.
func deviceKeys(e *enrollment) mdm.Enrollment {
	if e.Type == mdm.UserEnrollmentDevice {
		return mdm.Enrollment{EnrollmentID: e.ID}
	}
	return mdm.Enrollment{UDID: e.ID}
}

// RetrieveMigrationCheckins implements storage.MigrationStore. The
// messages are built under the lock and yielded after it is released, so a
// slow consumer never blocks devices.
func (s *Store) RetrieveMigrationCheckins(ctx context.Context, yield func(raw []byte) error) error {
	msgs, err := s.migrationCheckins()
	if err != nil {
		return err
	}
	for _, raw := range msgs {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("migration: %w", err)
		}
		if err := yield(raw); err != nil {
			return fmt.Errorf("migration: %w", err)
		}
	}
	return nil
}

func (s *Store) migrationCheckins() ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var devs []*enrollment
	for _, e := range s.enrollments {
		if e.Enabled && !e.Type.IsUserChannel() {
			devs = append(devs, e)
		}
	}
	slices.SortFunc(devs, func(a, b *enrollment) int { return strings.Compare(a.ID, b.ID) })
	var out [][]byte
	for _, e := range devs {
		d := s.devices[e.ID]
		if d != nil && len(d.authenticate) > 0 {
			out = append(out, bytes.Clone(d.authenticate))
		}
		tu, err := storage.TokenUpdateWithUnlockToken(e.tokenUpdate, e.unlockToken)
		if err != nil {
			return nil, fmt.Errorf("migration of %q: %w", e.ID, err)
		}
		out = append(out, bytes.Clone(tu))
		var users []string
		for id := range s.children[e.ID] {
			if u := s.enrollments[id]; u != nil && u.Enabled {
				users = append(users, id)
			}
		}
		slices.Sort(users)
		for _, id := range users {
			u := s.enrollments[id]
			tu, err := storage.TokenUpdateWithUnlockToken(u.tokenUpdate, u.unlockToken)
			if err != nil {
				return nil, fmt.Errorf("migration of %q: %w", id, err)
			}
			out = append(out, bytes.Clone(tu))
		}
		if d != nil && len(d.bootstrapToken) > 0 {
			raw, err := storage.SetBootstrapTokenCheckin(deviceKeys(e), d.bootstrapToken)
			if err != nil {
				return nil, fmt.Errorf("migration of %q: %w", e.ID, err)
			}
			out = append(out, raw)
		}
	}
	return out, nil
}

// RetrievePushCertInfos implements storage.PushCertStore.
func (s *Store) RetrievePushCertInfos(_ context.Context) ([]storage.PushCertInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]storage.PushCertInfo, 0, len(s.pushCerts))
	for topic, pc := range s.pushCerts {
		out = append(out, storage.PushCertInfo{Topic: topic, NotAfter: pc.notAfter})
	}
	slices.SortFunc(out, func(a, b storage.PushCertInfo) int { return strings.Compare(a.Topic, b.Topic) })
	return out, nil
}
