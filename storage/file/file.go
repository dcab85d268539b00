// Package file is PicoMDM's embedded default storage backend: one
// directory on a local file system, used by one process.
//
// # Layout
//
//	LOCK                         flock'd while a Store has the directory open
//	tmp/                         temporary files, renamed into place; emptied at start
//	commands/NAME                a command: one JSON header line, then its raw plist
//	queued/NAME                  the targets of a command some of them have not answered
//	enrollments/NAME/            one per channel (a device gets one at Authenticate)
//	    enrollment.json          the channel: push info, enabled, tally, times…
//	    device.json              the device (Authenticate, identity cert, bootstrap token)
//	    user_authenticate.plist  the channel's last UserAuthenticate
//	    seen                     its modification time is the channel's last_seen_at
//	    results/NAME             the channel's answer to one command
//	certauth/hashes/HASH/NAME    identity-certificate hash → enrollment association
//	certauth/ids/NAME/HASH       the same association, indexed by enrollment
//	pushcerts/NAME.json          a topic's push certificate and (sealed) key
//	outbox/, leases/, pushes.log: see outbox.go and pushlog.go
//	scep/: see scep.go
//
// NAME is fileName of an enrollment ID, CommandUUID or topic: IDs may hold
// any character and never escape the directory.
//
// # Durability
//
// Every file is written whole to tmp/, synced, renamed over its target,
// and the target's directory synced: after a crash each file is the old
// version or the new one. On Linux the directory syncs of concurrent
// writers are one group commit, a syncfs(2) each of them waits for (see
// groupSyncer), instead of an fsync per directory per write. The pending queue of an enrollment is not a file:
// it is a pure function of durable records — the commands in queued/
// naming it, minus those it has a final result for, minus those enqueued
// before its last Authenticate (enrollment.json cleared_seq) — kept in
// memory and rebuilt from them at start. That is what keeps the hot path
// cheap: finding the next command reads only the command's body, however
// long the enrollment's history; answering one writes only its result; and
// an enqueue to 100,000 enrollments writes two files and syncs four times,
// whatever the number of targets.
//
// An enqueue writes queued/NAME (the targets) and then commands/NAME (the
// command): the command file is the commit point. A crash before it leaves
// a targets file without a command, dropped at start, so the enqueue can be
// retried with the same CommandUUID; after it, the enqueue is complete.
package file

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/memindex"
	"github.com/picomdm/picomdm/storage/keyseal"
)

// ErrLocked is wrapped by New when another Store (in this process or
// another) has the directory open.
var ErrLocked = errors.New("file storage: directory is in use by another process")

// Option configures a Store.
type Option func(*Store)

// WithNoSync turns off every fsync. Writes stay atomic (a reader never
// sees half a file) but a power loss or kernel crash can lose recent ones.
// For tests and throw-away development servers only.
func WithNoSync() Option { return func(s *Store) { s.sync = false } }

// WithKeySealer has the store seal the private keys it writes (push
// certificates' and the SCEP CA's) with sealer, and open them with it
// (-storage-key). Without it (or with nil) keys are stored as they are,
// and sealed ones do not open (keyseal.None).
func WithKeySealer(sealer storage.KeySealer) Option {
	return func(s *Store) { s.sealer = keyseal.Or(sealer) }
}

// stripes is the number of per-device locks; see Store.stripes.
const stripes = 64

// Store is the file backend. Build it with New; Close it to release the
// directory.
type Store struct {
	dir, tmpDir string
	sync        bool
	lock        *os.File
	// sealer seals and opens the private keys stored (never nil).
	sealer storage.KeySealer
	// group, on Linux, batches the directory syncs of concurrent writers
	// into one syncfs (see groupSyncer); nil means one fsync per
	// directory.
	group *groupSyncer

	// stripes serialise the writers of one device and its user
	// channels (check-ins and reports), which read a record, decide and
	// write it back. Devices are spread over the stripes by ID hash, so
	// unrelated devices rarely wait for each other.
	stripes [stripes]sync.Mutex

	// mu guards the in-memory state below. It is never held during file
	// I/O, so a slow disk delays writers of one device, not readers.
	mu sync.RWMutex
	// seq is the last enqueue sequence number handed out. Pending
	// commands are ordered by it: strict FIFO with no ties.
	seq uint64
	// enrollments caches every known channel (one with an
	// enrollment.json), for enqueue, push info and tally lookups.
	enrollments map[string]*enrollState
	// children maps a device channel's ID to its user channels' IDs.
	children memindex.Children
	// pending is each enrollment's pending queue, ordered by seq. A
	// command's Deferred lives in memory only: after a restart NotNow'd
	// commands are eligible at once, as after an Idle.
	pending map[string][]*memindex.Pending
	// remaining counts, per CommandUUID, the enrollments it is still
	// pending for; at zero its queued/ file is removed.
	remaining map[string]int
	// enqueuing holds the CommandUUIDs of enqueues in progress, so two
	// concurrent enqueues of one CommandUUID cannot both succeed.
	enqueuing map[string]struct{}

	// certMu guards claimedHashes, the hashes of cert-auth associations
	// in progress by device ID, so two devices cannot both claim one new
	// certificate while their Authenticates are written. It is taken
	// after a device's stripe, never before one, and never held during
	// a write.
	certMu        sync.Mutex
	claimedHashes map[string]string

	// pushMu serialises RecordPushes and guards pushRecords, the
	// re-push sweep's record of each enrollment (pushes.log). It is
	// taken before mu, never after.
	pushMu      sync.Mutex
	pushRecords map[string]storage.PushRecord
	// pushLog is the push journal's append handle (opened at the first
	// RecordPushes), pushLogLines its line count; both under pushMu.
	pushLog      *os.File
	pushLogLines int

	// pushCertMu serialises the writers of pushcerts/ (StorePushCert and
	// SealPrivateKeys), held across their file I/O.
	pushCertMu sync.Mutex

	// scep is the SCEP CA's state, with locks of its own (see scep.go).
	scep scepState

	// The outbox and the leases (see outbox.go), with locks of their own.
	*outbox
	*leases
}

var _ storage.Store = (*Store)(nil)

// enrollState is the in-memory part of an enrollment record: the shared
// index's channel, with its PushTokenInvalidAt mirroring
// enrollmentRecord.PushTokenInvalidAt.
type enrollState struct {
	memindex.Channel
	clearedSeq uint64
}

// enrollmentRecord is enrollment.json: one channel, from its TokenUpdates.
type enrollmentRecord struct {
	ID               string         `json:"id"`
	Type             mdm.EnrollType `json:"type"`
	ParentID         string         `json:"parent_id,omitempty"`
	Topic            string         `json:"topic"`
	PushMagic        string         `json:"push_magic"`
	Token            []byte         `json:"token"`
	UnlockToken      []byte         `json:"unlock_token,omitempty"`
	TokenUpdate      []byte         `json:"token_update"`
	Enabled          bool           `json:"enabled"`
	TokenUpdateTally int            `json:"token_update_tally"`
	EnrolledAt       time.Time      `json:"enrolled_at"`
	TokenUpdateAt    time.Time      `json:"token_update_at"`
	DisabledAt       time.Time      `json:"disabled_at,omitzero"`
	// ClearedSeq: commands enqueued with a seq up to this one were
	// cleared by a re-enrollment (Authenticate).
	ClearedSeq uint64 `json:"cleared_seq,omitempty"`
	// PushTokenInvalidAt and PushTokenInvalidReason are set when APNs
	// refused Token (storage.PushTokenStore) and cleared by the next
	// TokenUpdate.
	PushTokenInvalidAt     time.Time `json:"push_token_invalid_at,omitzero"`
	PushTokenInvalidReason string    `json:"push_token_invalid_reason,omitempty"`
}

// deviceRecord is device.json: a device channel, from its Authenticate.
type deviceRecord struct {
	ID                   string         `json:"id"`
	Type                 mdm.EnrollType `json:"type"`
	SerialNumber         string         `json:"serial_number,omitempty"`
	Authenticate         []byte         `json:"authenticate,omitempty"`
	AuthenticatedAt      time.Time      `json:"authenticated_at,omitzero"`
	IdentityCert         []byte         `json:"identity_cert,omitempty"`
	IdentityCertNotAfter time.Time      `json:"identity_cert_not_after,omitzero"`
	BootstrapToken       []byte         `json:"bootstrap_token,omitempty"`
	BootstrapTokenAt     time.Time      `json:"bootstrap_token_at,omitzero"`
}

// resultRecord is results/NAME: an enrollment's last answer to a command.
type resultRecord struct {
	CommandUUID   string    `json:"command_uuid"`
	Status        string    `json:"status"`
	Result        []byte    `json:"result"`
	ResultAt      time.Time `json:"result_at"`
	NotNowCount   int       `json:"not_now_count,omitempty"`
	FirstNotNowAt time.Time `json:"first_not_now_at,omitzero"`
	LastNotNowAt  time.Time `json:"last_not_now_at,omitzero"`
	// Cancelled says an operator cancelled the command for the
	// enrollment before it answered finally (storage.InspectionStore):
	// it is no longer pending, and has no state.
	Cancelled bool `json:"cancelled,omitempty"`
}

// newResultRecord returns the results/ file of an answer (or a
// cancellation) with status at at, carrying p's NotNow history.
func newResultRecord(p *memindex.Pending, status string, at time.Time) *resultRecord {
	return &resultRecord{
		CommandUUID:   p.CommandUUID,
		Status:        status,
		ResultAt:      at,
		NotNowCount:   p.NotNow,
		FirstNotNowAt: p.FirstNotNow,
		LastNotNowAt:  p.LastNotNow,
	}
}

// commandHeader is the first line of a commands/ file.
type commandHeader struct {
	CommandUUID string    `json:"command_uuid"`
	RequestType string    `json:"request_type"`
	Seq         uint64    `json:"seq"`
	EnqueuedAt  time.Time `json:"enqueued_at"`
}

// targetsRecord is a queued/ file: who a command was queued to.
type targetsRecord struct {
	CommandUUID string    `json:"command_uuid"`
	Seq         uint64    `json:"seq"`
	EnqueuedAt  time.Time `json:"enqueued_at"`
	IDs         []string  `json:"ids"`
}

// New opens the store in directory dir, creating it if needed, and
// rebuilds the in-memory indexes from it. It fails with ErrLocked if the
// directory is already open.
func New(dir string, opts ...Option) (*Store, error) {
	if dir == "" {
		return nil, errors.New("file storage: empty directory name")
	}
	s := &Store{
		dir:           dir,
		tmpDir:        filepath.Join(dir, "tmp"),
		sync:          true,
		sealer:        keyseal.None,
		enrollments:   make(map[string]*enrollState),
		children:      make(memindex.Children),
		pending:       make(map[string][]*memindex.Pending),
		remaining:     make(map[string]int),
		enqueuing:     make(map[string]struct{}),
		claimedHashes: make(map[string]string),
		pushRecords:   make(map[string]storage.PushRecord),
	}
	for _, opt := range opts {
		opt(s)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("file storage: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, "LOCK"))
	if err != nil {
		return nil, fmt.Errorf("file storage: %w", err)
	}
	s.lock = lock
	if s.sync {
		if s.group, err = newGroupSyncer(dir); err != nil {
			s.Close()
			return nil, fmt.Errorf("file storage: %w", err)
		}
	}
	if err := s.open(); err != nil {
		s.Close()
		return nil, fmt.Errorf("file storage: opening %s: %w", dir, err)
	}
	return s, nil
}

// Close releases the directory. The Store must not be used afterwards.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	if s.group != nil {
		s.group.close()
		s.group = nil
	}
	logErr := s.closePushLog()
	err := errors.Join(s.lock.Close(), logErr) // closing the lock file releases the flock
	s.lock = nil
	if err != nil {
		return fmt.Errorf("file storage: closing: %w", err)
	}
	return nil
}

// Paths of the layout (see the package documentation).
func (s *Store) commandPath(uuid string) string {
	return filepath.Join(s.dir, "commands", fileName(uuid))
}
func (s *Store) queuedPath(uuid string) string {
	return filepath.Join(s.dir, "queued", fileName(uuid))
}
func (s *Store) enrollmentDir(id string) string {
	return filepath.Join(s.dir, "enrollments", fileName(id))
}
func (s *Store) resultPath(id, uuid string) string {
	return filepath.Join(s.enrollmentDir(id), "results", fileName(uuid))
}

// open creates the layout, empties tmp/ and loads the indexes: known
// enrollments, then pending queues from queued/.
func (s *Store) open() error {
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return fmt.Errorf("emptying tmp: %w", err)
	}
	for _, sub := range []string{"tmp", "commands", "queued", "enrollments", "certauth/hashes", "certauth/ids", "pushcerts", "outbox", "leases", "scep/challenges", "scep/certs"} {
		if err := os.MkdirAll(filepath.Join(s.dir, sub), 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", sub, err)
		}
	}
	if err := s.syncDir(s.dir); err != nil {
		return err
	}
	if err := s.syncDir(filepath.Join(s.dir, "certauth"), filepath.Join(s.dir, "scep")); err != nil {
		return err
	}
	if err := s.loadEnrollments(); err != nil {
		return err
	}
	if err := s.loadPushLog(); err != nil {
		return err
	}
	if err := s.loadOutbox(); err != nil {
		return err
	}
	if err := s.loadSCEP(); err != nil {
		return err
	}
	return s.loadQueued()
}

func (s *Store) loadEnrollments() error {
	entries, err := os.ReadDir(filepath.Join(s.dir, "enrollments"))
	if err != nil {
		return fmt.Errorf("listing enrollments: %w", err)
	}
	for _, entry := range entries {
		var rec enrollmentRecord
		ok, err := readJSON(filepath.Join(s.dir, "enrollments", entry.Name(), "enrollment.json"), &rec)
		if err != nil {
			return err
		}
		if !ok {
			continue // a device that authenticated but never sent a TokenUpdate
		}
		s.cacheEnrollment(&rec)
		s.seq = max(s.seq, rec.ClearedSeq)
		if err := s.loadPushRecord(rec.ID); err != nil {
			return err
		}
	}
	return nil
}

// loadQueued rebuilds the pending queues: each target of each queued
// command is pending unless it was cleared after the enqueue or has a final
// result.
func (s *Store) loadQueued() error {
	dir := filepath.Join(s.dir, "queued")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("listing queued commands: %w", err)
	}
	for _, entry := range entries {
		path := filepath.Join(dir, entry.Name())
		var rec targetsRecord
		if _, err := readJSON(path, &rec); err != nil {
			return err
		}
		committed, err := exists(s.commandPath(rec.CommandUUID))
		if err != nil {
			return err
		}
		if !committed {
			// A crash before the command file was written: the enqueue
			// never happened.
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("removing uncommitted enqueue: %w", err)
			}
			continue
		}
		s.seq = max(s.seq, rec.Seq)
		n := 0
		for _, id := range rec.IDs {
			e := s.enrollments[id]
			if e == nil || rec.Seq <= e.clearedSeq {
				continue
			}
			var res resultRecord
			answered, err := readJSON(s.resultPath(id, rec.CommandUUID), &res)
			if err != nil {
				return err
			}
			p := &memindex.Pending{Seq: rec.Seq, CommandUUID: rec.CommandUUID}
			if answered {
				if res.Cancelled || res.Status != mdm.StatusNotNow {
					continue
				}
				p.NotNow, p.FirstNotNow, p.LastNotNow = res.NotNowCount, res.FirstNotNowAt, res.LastNotNowAt
			}
			s.pending[id] = memindex.Insert(s.pending[id], p)
			n++
		}
		if n == 0 {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("removing answered command: %w", err)
			}
			continue
		}
		s.remaining[rec.CommandUUID] = n
	}
	return nil
}

// cacheEnrollment puts rec in the in-memory indexes. Callers hold s.mu for
// writing (or are loading, before the Store is shared).
func (s *Store) cacheEnrollment(rec *enrollmentRecord) {
	e := &enrollState{
		Channel: memindex.Channel{
			ID:                 rec.ID,
			ParentID:           rec.ParentID,
			Type:               rec.Type,
			Push:               mdm.Push{Token: bytes.Clone(rec.Token), PushMagic: rec.PushMagic, Topic: rec.Topic},
			Enabled:            rec.Enabled,
			Tally:              rec.TokenUpdateTally,
			PushTokenInvalidAt: rec.PushTokenInvalidAt,
		},
		clearedSeq: rec.ClearedSeq,
	}
	s.enrollments[rec.ID] = e
	s.children.Add(&e.Channel)
}

// channel returns the index's channel of id, or nil if it is unknown.
// Callers hold s.mu.
func (s *Store) channel(id string) *memindex.Channel {
	if e := s.enrollments[id]; e != nil {
		return &e.Channel
	}
	return nil
}

// deviceIDOf returns the device channel of enrollment id (the one whose
// stripe guards it); ok is false if id is unknown.
func (s *Store) deviceIDOf(id string) (deviceID string, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.enrollments[id]; e != nil {
		return e.DeviceID(), true
	}
	return "", false
}

// stripe returns the lock of the device deviceID (and its user channels).
func (s *Store) stripe(deviceID string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(deviceID))
	return &s.stripes[h.Sum32()%stripes]
}

// readJSON decodes the JSON file at path into v; ok is false (and err nil)
// if it does not exist.
func readJSON(path string, v any) (ok bool, err error) {
	data, ok, err := readFile(path)
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("decoding %s: %w", path, err)
	}
	return true, nil
}

// writeJSON writes v as JSON to path with writeFile.
func (s *Store) writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	return s.writeFile(path, data)
}

// touchSeen records a visit of enrollment id: the modification time of
// its seen file is its last_seen_at. One utimes call, no write and no sync
// on the hot path; losing the last few visits in a crash is harmless.
func (s *Store) touchSeen(id string, now time.Time) {
	_ = os.Chtimes(filepath.Join(s.enrollmentDir(id), "seen"), now, now)
}

// ensureEnrollmentDir creates enrollment id's directory (with its results
// directory and seen file) if needed, durably.
func (s *Store) ensureEnrollmentDir(id string) (string, error) {
	dir := s.enrollmentDir(id)
	if _, err := os.Stat(filepath.Join(dir, "results")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Join(dir, "results"), 0o700); err != nil {
		return "", fmt.Errorf("creating enrollment directory: %w", err)
	}
	seen, err := os.OpenFile(filepath.Join(dir, "seen"), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("creating seen file: %w", err)
	}
	seen.Close()
	return dir, s.syncDir(dir, filepath.Dir(dir))
}
