package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/memindex"
)

// The built-in SCEP CA (storage.SCEPStore) and private-key sealing
// (storage.PrivateKeySealer).
//
// Layout (beside the package documentation's):
//
//	scep/ca.json                 the CA's certificate and (sealed) key (scepCARecord)
//	scep/challenges/NAME.json    a one-time challenge (scepChallengeRecord)
//	scep/certs/NAME.json         an issued certificate (scepCertRecord)
//
// NAME is fileName of the challenge ID or serial. The challenges' hash →
// ID index, the sorted IDs and serials the listings page through, and the
// expiry of the challenges not known to be used (the purge's candidates)
// are kept in memory, rebuilt at start (challenge files are read;
// certificate serials come from the file names, which fileName encodes
// one-to-one).
//
// Every SCEP writer holds scepState.mu across its reads, decision and
// writes: SCEP requests are rare (one per enrollment), and the directory
// is used by one process (LOCK), so the lock is what makes StoreSCEPCA's
// create-exclusive and a challenge's single use atomic.
//
// # Consuming a challenge
//
// StoreSCEPCert with a challenge writes two files, the challenge and then
// the certificate, each synced before the next step. The challenge is
// written first, marked used_at with the serial of the certificate it is
// reserved for (cert_serial); the certificate record, naming the
// challenge, is written second, and is the commit point: a challenge
// counts as used only if the certificate its cert_serial names exists and
// names it back (Store.usedAt). So:
//
//   - a reader between the two writes (or after a crash between them, or
//     after a failed certificate write whose undo failed too) sees the
//     challenge unused and no certificate: nothing happened;
//   - once the certificate is written the challenge is used, and its used
//     mark was durable before, so a crash can never leave a certificate
//     whose challenge still looks usable: at most one certificate per
//     challenge.
//
// A reservation left over is harmless: the challenge reads unused and the
// next use overwrites it.

var (
	_ storage.SCEPStore        = (*Store)(nil)
	_ storage.PrivateKeySealer = (*Store)(nil)
)

// scepState is the Store's SCEP part.
type scepState struct {
	// mu serialises the SCEP writers, held across their file I/O.
	mu sync.Mutex
	// idx guards the indexes below; it is never held during file I/O
	// and is taken after mu, never before.
	idx sync.RWMutex
	// challengeByHash maps each challenge's hash to its ID.
	challengeByHash map[string]string
	// challengeIDs and certSerials are sorted.
	challengeIDs []string
	certSerials  []string
	// unusedExpiry is the ExpiresAt of every challenge not known to be
	// used, by ID: what PurgeSCEPChallenges looks through. A challenge
	// once used stays used (certificates are never deleted), so one found
	// used leaves it for good.
	unusedExpiry map[string]time.Time
}

// scepCARecord is scep/ca.json.
type scepCARecord struct {
	Cert      []byte    `json:"cert_pem"`
	Key       []byte    `json:"key_pem"` // sealed with storage.SCEPCAKeyName
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// scepChallengeRecord is a scep/challenges/ file.
type scepChallengeRecord struct {
	ID        string    `json:"id"`
	Hash      string    `json:"hash"`
	Note      string    `json:"note,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// UsedAt is the used mark, valid only when the certificate
	// CertSerial names exists and names this challenge (see the
	// comment at the top of this file). An empty CertSerial with UsedAt
	// set is a challenge created as used.
	UsedAt     time.Time `json:"used_at,omitzero"`
	CertSerial string    `json:"cert_serial,omitempty"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
}

// scepCertRecord is a scep/certs/ file.
type scepCertRecord struct {
	Serial      string    `json:"serial"`
	Subject     string    `json:"subject"`
	CertHash    string    `json:"cert_hash"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	IssuedAt    time.Time `json:"issued_at"`
	ChallengeID string    `json:"challenge_id,omitempty"`
	DER         []byte    `json:"der"`
}

func (s *Store) scepCAPath() string { return filepath.Join(s.dir, "scep", "ca.json") }
func (s *Store) scepChallengeDir() string {
	return filepath.Join(s.dir, "scep", "challenges")
}
func (s *Store) scepChallengePath(id string) string {
	return filepath.Join(s.scepChallengeDir(), fileName(id)+".json")
}
func (s *Store) scepCertDir() string { return filepath.Join(s.dir, "scep", "certs") }
func (s *Store) scepCertPath(serial string) string {
	return filepath.Join(s.scepCertDir(), fileName(serial)+".json")
}

// loadSCEP rebuilds the SCEP indexes. It runs in open, after the layout
// is created and before the Store is shared.
func (s *Store) loadSCEP() error {
	st := &s.scep
	st.challengeByHash = make(map[string]string)
	st.unusedExpiry = make(map[string]time.Time)
	entries, err := os.ReadDir(s.scepChallengeDir())
	if err != nil {
		return fmt.Errorf("listing SCEP challenges: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var rec scepChallengeRecord
		ok, err := readJSON(filepath.Join(s.scepChallengeDir(), e.Name()), &rec)
		if err != nil {
			return fmt.Errorf("loading SCEP challenges: %w", err)
		}
		if ok {
			st.challengeByHash[rec.Hash] = rec.ID
			st.challengeIDs = append(st.challengeIDs, rec.ID)
			// A used mark naming a certificate is checked when
			// purging (usedAt); created as used is used for good.
			if rec.UsedAt.IsZero() || rec.CertSerial != "" {
				st.unusedExpiry[rec.ID] = rec.ExpiresAt
			}
		}
	}
	slices.Sort(st.challengeIDs)

	entries, err = os.ReadDir(s.scepCertDir())
	if err != nil {
		return fmt.Errorf("listing SCEP certificates: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if e.IsDir() || !ok {
			continue
		}
		serial, ok := parseFileName(name)
		if !ok {
			// A hashed name: the record has the serial.
			var rec scepCertRecord
			found, err := readJSON(filepath.Join(s.scepCertDir(), e.Name()), &rec)
			if err != nil {
				return fmt.Errorf("loading SCEP certificates: %w", err)
			}
			if !found {
				continue
			}
			serial = rec.Serial
		}
		st.certSerials = append(st.certSerials, serial)
	}
	slices.Sort(st.certSerials)
	return nil
}

// parseFileName reverses fileName; ok is false for a hashed name (or one
// fileName does not make).
func parseFileName(name string) (string, bool) {
	if strings.HasPrefix(name, "~") {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '_' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(name) {
			return "", false
		}
		hi, lo := unhex(name[i+1]), unhex(name[i+2])
		if hi < 0 || lo < 0 {
			return "", false
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	return b.String(), true
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

// insertSorted adds v to the sorted ids, once.
func insertSorted(ids []string, v string) []string {
	i, found := slices.BinarySearch(ids, v)
	if found {
		return ids
	}
	return slices.Insert(ids, i, v)
}

// pageAfter returns up to limit+1 of the sorted ids after the cursor's.
func pageAfter(ids []string, after string, limit int) []string {
	i := 0
	if after != "" {
		var found bool
		i, found = slices.BinarySearch(ids, after)
		if found {
			i++
		}
	}
	end := min(len(ids), i+limit+1)
	return slices.Clone(ids[i:end])
}

// RetrieveSCEPCA implements storage.SCEPStore.
func (s *Store) RetrieveSCEPCA(_ context.Context) ([]byte, []byte, error) {
	var rec scepCARecord
	ok, err := readJSON(s.scepCAPath(), &rec)
	if err != nil {
		return nil, nil, fmt.Errorf("retrieving SCEP CA: %w", err)
	}
	if !ok {
		return nil, nil, fmt.Errorf("retrieving SCEP CA: %w", storage.ErrNotFound)
	}
	key, err := s.sealer.Open(storage.SCEPCAKeyName, rec.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("retrieving SCEP CA: opening key: %w", err)
	}
	return rec.Cert, key, nil
}

// StoreSCEPCA implements storage.SCEPStore. Without replace it creates
// ca.json exclusively: the check and the write are under scep.mu, and no
// other process has the directory.
func (s *Store) StoreSCEPCA(_ context.Context, certPEM, keyPEM []byte, replace bool) error {
	sealed, err := s.sealer.Seal(storage.SCEPCAKeyName, keyPEM)
	if err != nil {
		return fmt.Errorf("storing SCEP CA: sealing key: %w", err)
	}
	s.scep.mu.Lock()
	defer s.scep.mu.Unlock()
	var old scepCARecord
	found, err := readJSON(s.scepCAPath(), &old)
	if err != nil {
		return fmt.Errorf("storing SCEP CA: %w", err)
	}
	if found && !replace {
		return fmt.Errorf("storing SCEP CA: %w", storage.ErrExists)
	}
	now := time.Now().UTC()
	rec := &scepCARecord{Cert: certPEM, Key: sealed, CreatedAt: now, UpdatedAt: now}
	if found {
		rec.CreatedAt = old.CreatedAt
	}
	if err := s.writeJSON(s.scepCAPath(), rec); err != nil {
		return fmt.Errorf("storing SCEP CA: %w", err)
	}
	return nil
}

// CreateSCEPChallenge implements storage.SCEPStore.
func (s *Store) CreateSCEPChallenge(_ context.Context, c *storage.SCEPChallenge) error {
	st := &s.scep
	st.mu.Lock()
	defer st.mu.Unlock()
	st.idx.RLock()
	_, hashTaken := st.challengeByHash[c.Hash]
	_, idTaken := slices.BinarySearch(st.challengeIDs, c.ID)
	st.idx.RUnlock()
	if hashTaken || idTaken {
		return fmt.Errorf("creating SCEP challenge %q: %w", c.ID, storage.ErrExists)
	}
	rec := &scepChallengeRecord{
		ID:        c.ID,
		Hash:      c.Hash,
		Note:      c.Note,
		CreatedAt: c.CreatedAt.UTC(),
		ExpiresAt: c.ExpiresAt.UTC(),
		UsedAt:    c.UsedAt.UTC(),
		RevokedAt: c.RevokedAt.UTC(),
	}
	if err := s.writeJSON(s.scepChallengePath(c.ID), rec); err != nil {
		return fmt.Errorf("creating SCEP challenge %q: %w", c.ID, err)
	}
	st.idx.Lock()
	st.challengeByHash[c.Hash] = c.ID
	st.challengeIDs = insertSorted(st.challengeIDs, c.ID)
	if rec.UsedAt.IsZero() {
		st.unusedExpiry[c.ID] = rec.ExpiresAt
	}
	st.idx.Unlock()
	return nil
}

// readChallenge reads challenge id's record; ok is false if unknown.
func (s *Store) readChallenge(id string) (*scepChallengeRecord, bool, error) {
	rec := new(scepChallengeRecord)
	ok, err := readJSON(s.scepChallengePath(id), rec)
	if err != nil || !ok {
		return nil, false, err
	}
	return rec, true, nil
}

// readSCEPCert reads the certificate record of serial; ok is false if
// unknown.
func (s *Store) readSCEPCert(serial string) (*scepCertRecord, bool, error) {
	rec := new(scepCertRecord)
	ok, err := readJSON(s.scepCertPath(serial), rec)
	if err != nil || !ok {
		return nil, false, err
	}
	return rec, true, nil
}

// usedAt returns when rec was used (zero if it is not): its used mark
// counts only if the certificate it was reserved for exists and names it.
func (s *Store) usedAt(rec *scepChallengeRecord) (time.Time, error) {
	if rec.UsedAt.IsZero() || rec.CertSerial == "" {
		return rec.UsedAt, nil
	}
	cert, ok, err := s.readSCEPCert(rec.CertSerial)
	if err != nil {
		return time.Time{}, fmt.Errorf("checking use of SCEP challenge %q: %w", rec.ID, err)
	}
	if !ok || cert.ChallengeID != rec.ID || !cert.IssuedAt.Equal(rec.UsedAt) {
		return time.Time{}, nil
	}
	return rec.UsedAt, nil
}

// challengeInfo turns rec into what SCEPStore returns.
func (s *Store) challengeInfo(rec *scepChallengeRecord) (storage.SCEPChallenge, error) {
	used, err := s.usedAt(rec)
	if err != nil {
		return storage.SCEPChallenge{}, err
	}
	return storage.SCEPChallenge{
		ID:        rec.ID,
		Hash:      rec.Hash,
		Note:      rec.Note,
		CreatedAt: rec.CreatedAt,
		ExpiresAt: rec.ExpiresAt,
		UsedAt:    used,
		RevokedAt: rec.RevokedAt,
	}, nil
}

// RetrieveSCEPChallenge implements storage.SCEPStore.
func (s *Store) RetrieveSCEPChallenge(_ context.Context, id string) (*storage.SCEPChallenge, error) {
	rec, ok, err := s.readChallenge(id)
	if err != nil {
		return nil, fmt.Errorf("retrieving SCEP challenge %q: %w", id, err)
	}
	if !ok {
		return nil, fmt.Errorf("retrieving SCEP challenge %q: %w", id, storage.ErrNotFound)
	}
	c, err := s.challengeInfo(rec)
	if err != nil {
		return nil, fmt.Errorf("retrieving SCEP challenge %q: %w", id, err)
	}
	return &c, nil
}

// RevokeSCEPChallenge implements storage.SCEPStore.
func (s *Store) RevokeSCEPChallenge(_ context.Context, id string, now time.Time) error {
	s.scep.mu.Lock()
	defer s.scep.mu.Unlock()
	rec, ok, err := s.readChallenge(id)
	if err != nil {
		return fmt.Errorf("revoking SCEP challenge %q: %w", id, err)
	}
	if !ok {
		return fmt.Errorf("revoking SCEP challenge %q: %w", id, storage.ErrNotFound)
	}
	if !rec.RevokedAt.IsZero() {
		return nil
	}
	rec.RevokedAt = now.UTC()
	if err := s.writeJSON(s.scepChallengePath(id), rec); err != nil {
		return fmt.Errorf("revoking SCEP challenge %q: %w", id, err)
	}
	return nil
}

// ListSCEPChallenges implements storage.SCEPStore, paging through the
// in-memory sorted IDs and reading the page's files.
func (s *Store) ListSCEPChallenges(ctx context.Context, p storage.Page) ([]storage.SCEPChallenge, string, error) {
	after, err := storage.DecodeCursor(p.Cursor)
	if err != nil {
		return nil, "", fmt.Errorf("listing SCEP challenges: %w", err)
	}
	s.scep.idx.RLock()
	ids := pageAfter(s.scep.challengeIDs, after, p.Size())
	s.scep.idx.RUnlock()
	out, next, err := memindex.Paginate(ids, p.Size(), func(id string) (storage.SCEPChallenge, bool, error) {
		if err := ctx.Err(); err != nil {
			return storage.SCEPChallenge{}, false, err
		}
		rec, ok, err := s.readChallenge(id)
		if err != nil || !ok { // indexed only after its file is written: never !ok
			return storage.SCEPChallenge{}, false, err
		}
		c, err := s.challengeInfo(rec)
		return c, err == nil, err
	}, func(c *storage.SCEPChallenge) string { return c.ID })
	if err != nil {
		return nil, "", fmt.Errorf("listing SCEP challenges: %w", err)
	}
	return out, next, nil
}

// PurgeSCEPChallenges implements storage.SCEPStore: the candidates come
// from the in-memory expiries, soonest expired first (then by ID); each is
// read to check it is still unused (usedAt: a reservation whose
// certificate was never written counts as unused) and its file removed,
// and one directory sync at the end makes the removals durable before the
// indexes forget them. It holds scep.mu throughout, so no StoreSCEPCert
// uses a challenge it is deleting. A crash before the sync may bring some
// files back: they are purged again next time.
func (s *Store) PurgeSCEPChallenges(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	st := &s.scep
	st.mu.Lock()
	defer st.mu.Unlock()
	type candidate struct {
		id      string
		expires time.Time
	}
	var candidates []candidate
	st.idx.RLock()
	for id, expires := range st.unusedExpiry {
		if expires.Before(before) {
			candidates = append(candidates, candidate{id, expires})
		}
	}
	st.idx.RUnlock()
	slices.SortFunc(candidates, func(a, b candidate) int {
		if n := a.expires.Compare(b.expires); n != 0 {
			return n
		}
		return strings.Compare(a.id, b.id)
	})

	var removed []*scepChallengeRecord
	var used []string // found used (or gone): no longer candidates
	var err error
	for _, c := range candidates {
		if len(removed) == limit {
			break
		}
		if err = ctx.Err(); err != nil {
			break
		}
		rec, ok, rerr := s.readChallenge(c.id)
		if rerr != nil {
			err = rerr
			break
		}
		if !ok {
			used = append(used, c.id) // indexed only after its file is written: never happens
			continue
		}
		usedAt, uerr := s.usedAt(rec)
		if uerr != nil {
			err = uerr
			break
		}
		if !usedAt.IsZero() {
			used = append(used, c.id)
			continue
		}
		if rerr := os.Remove(s.scepChallengePath(c.id)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = rerr
			break
		}
		removed = append(removed, rec)
	}
	if len(removed) > 0 {
		if serr := s.syncDir(s.scepChallengeDir()); serr != nil && err == nil {
			err = serr
		}
	}

	// The files are gone whether or not the sync worked: the indexes
	// follow them.
	st.idx.Lock()
	gone := make(map[string]bool, len(removed))
	for _, rec := range removed {
		gone[rec.ID] = true
		if st.challengeByHash[rec.Hash] == rec.ID {
			delete(st.challengeByHash, rec.Hash)
		}
		delete(st.unusedExpiry, rec.ID)
	}
	for _, id := range used {
		delete(st.unusedExpiry, id)
	}
	if len(gone) > 0 {
		st.challengeIDs = slices.DeleteFunc(st.challengeIDs, func(id string) bool { return gone[id] })
	}
	st.idx.Unlock()
	if err != nil {
		return len(removed), fmt.Errorf("purging SCEP challenges: %w", err)
	}
	return len(removed), nil
}

// StoreSCEPCert implements storage.SCEPStore. With a challenge it
// reserves the challenge, then writes the certificate: see the comment
// at the top of this file for why that order is all-or-nothing.
func (s *Store) StoreSCEPCert(_ context.Context, c *storage.SCEPCert, challengeHash string) error {
	st := &s.scep
	st.mu.Lock()
	defer st.mu.Unlock()
	certExists, err := exists(s.scepCertPath(c.Serial))
	if err != nil {
		return fmt.Errorf("storing SCEP certificate %q: %w", c.Serial, err)
	}
	if certExists {
		return fmt.Errorf("storing SCEP certificate %q: %w", c.Serial, storage.ErrExists)
	}
	rec := &scepCertRecord{
		Serial:      c.Serial,
		Subject:     c.Subject,
		CertHash:    c.CertHash,
		NotBefore:   c.NotBefore.UTC(),
		NotAfter:    c.NotAfter.UTC(),
		IssuedAt:    c.IssuedAt.UTC(),
		ChallengeID: c.ChallengeID,
		DER:         c.DER,
	}
	var challenge *scepChallengeRecord
	var unreserved scepChallengeRecord
	if challengeHash != "" {
		if challenge, err = s.reserveChallenge(challengeHash, rec); err != nil {
			return fmt.Errorf("storing SCEP certificate %q: %w", c.Serial, err)
		}
		unreserved = *challenge
		rec.ChallengeID = challenge.ID
		challenge.UsedAt, challenge.CertSerial = rec.IssuedAt, rec.Serial
		if err := s.writeJSON(s.scepChallengePath(challenge.ID), challenge); err != nil {
			return fmt.Errorf("storing SCEP certificate %q: using challenge: %w", c.Serial, err)
		}
	}
	if err := s.writeJSON(s.scepCertPath(c.Serial), rec); err != nil {
		if challenge != nil {
			// Undo the reservation; should that fail too, the
			// challenge still reads unused (see usedAt).
			_ = s.writeJSON(s.scepChallengePath(challenge.ID), &unreserved)
		}
		return fmt.Errorf("storing SCEP certificate %q: %w", c.Serial, err)
	}
	st.idx.Lock()
	st.certSerials = insertSorted(st.certSerials, c.Serial)
	if challenge != nil {
		delete(st.unusedExpiry, challenge.ID)
	}
	st.idx.Unlock()
	c.ChallengeID = rec.ChallengeID
	return nil
}

// reserveChallenge returns the challenge of hash if it can issue cert,
// else an error wrapping storage.ErrChallengeUnusable. Callers hold
// scep.mu.
func (s *Store) reserveChallenge(hash string, cert *scepCertRecord) (*scepChallengeRecord, error) {
	s.scep.idx.RLock()
	id, ok := s.scep.challengeByHash[hash]
	s.scep.idx.RUnlock()
	if !ok {
		return nil, fmt.Errorf("SCEP challenge: %w", storage.ErrChallengeUnusable)
	}
	rec, ok, err := s.readChallenge(id)
	if err != nil {
		return nil, fmt.Errorf("SCEP challenge %q: %w", id, err)
	}
	if !ok {
		return nil, fmt.Errorf("SCEP challenge %q: %w", id, storage.ErrChallengeUnusable)
	}
	used, err := s.usedAt(rec)
	if err != nil {
		return nil, err
	}
	if !used.IsZero() || !rec.RevokedAt.IsZero() || !rec.ExpiresAt.After(cert.IssuedAt) {
		return nil, fmt.Errorf("SCEP challenge %q: %w", id, storage.ErrChallengeUnusable)
	}
	return rec, nil
}

// RetrieveSCEPCert implements storage.SCEPStore.
func (s *Store) RetrieveSCEPCert(_ context.Context, serial string) (*storage.SCEPCert, error) {
	rec, ok, err := s.readSCEPCert(serial)
	if err != nil {
		return nil, fmt.Errorf("retrieving SCEP certificate %q: %w", serial, err)
	}
	if !ok {
		return nil, fmt.Errorf("retrieving SCEP certificate %q: %w", serial, storage.ErrNotFound)
	}
	c := rec.info()
	return &c, nil
}

func (rec *scepCertRecord) info() storage.SCEPCert {
	return storage.SCEPCert{
		Serial:      rec.Serial,
		Subject:     rec.Subject,
		CertHash:    rec.CertHash,
		NotBefore:   rec.NotBefore,
		NotAfter:    rec.NotAfter,
		IssuedAt:    rec.IssuedAt,
		ChallengeID: rec.ChallengeID,
		DER:         rec.DER,
	}
}

// ListSCEPCerts implements storage.SCEPStore, paging through the
// in-memory sorted serials and reading the page's files.
func (s *Store) ListSCEPCerts(ctx context.Context, p storage.Page) ([]storage.SCEPCert, string, error) {
	after, err := storage.DecodeCursor(p.Cursor)
	if err != nil {
		return nil, "", fmt.Errorf("listing SCEP certificates: %w", err)
	}
	s.scep.idx.RLock()
	serials := pageAfter(s.scep.certSerials, after, p.Size())
	s.scep.idx.RUnlock()
	out, next, err := memindex.Paginate(serials, p.Size(), func(serial string) (storage.SCEPCert, bool, error) {
		if err := ctx.Err(); err != nil {
			return storage.SCEPCert{}, false, err
		}
		rec, ok, err := s.readSCEPCert(serial)
		if err != nil || !ok {
			return storage.SCEPCert{}, false, err
		}
		return rec.info(), true, nil
	}, func(c *storage.SCEPCert) string { return c.Serial })
	if err != nil {
		return nil, "", fmt.Errorf("listing SCEP certificates: %w", err)
	}
	return out, next, nil
}

// SealPrivateKeys implements storage.PrivateKeySealer: it opens every
// push certificate's key and the CA's, and only when all open rewrites
// those in plaintext, so a key that does not open changes nothing. A
// rewrite keeps everything else of the record, the push certificate's
// stale token included. It holds the writers' locks of both (pushCertMu,
// then scep.mu) throughout.
func (s *Store) SealPrivateKeys(_ context.Context) (int, error) {
	s.pushCertMu.Lock()
	defer s.pushCertMu.Unlock()
	s.scep.mu.Lock()
	defer s.scep.mu.Unlock()
	rewrites, err := s.pushKeyRewrites()
	if err != nil {
		return 0, fmt.Errorf("sealing private keys: %w", err)
	}
	var ca scepCARecord
	found, err := readJSON(s.scepCAPath(), &ca)
	if err != nil {
		return 0, fmt.Errorf("sealing private keys: SCEP CA: %w", err)
	}
	if found {
		sealed, changed, err := s.reseal(storage.SCEPCAKeyName, ca.Key)
		if err != nil {
			return 0, fmt.Errorf("sealing private keys: SCEP CA: %w", err)
		}
		if changed {
			ca.Key = sealed
			rewrites = append(rewrites, keyRewrite{path: s.scepCAPath(), rec: &ca})
		}
	}
	for i, r := range rewrites {
		if err := s.writeJSON(r.path, r.rec); err != nil {
			return i, fmt.Errorf("sealing private keys: %w", err)
		}
	}
	return len(rewrites), nil
}

// keyRewrite is a record SealPrivateKeys rewrites with its key sealed.
type keyRewrite struct {
	path string
	rec  any
}

// reseal opens stored, the key of row name, and returns it sealed if it
// is in plaintext and the sealer seals; changed says it must be
// rewritten.
func (s *Store) reseal(name string, stored []byte) (sealed []byte, changed bool, err error) {
	plain, err := s.sealer.Open(name, stored)
	if err != nil {
		return nil, false, err
	}
	if s.sealer.IsSealed(stored) {
		return nil, false, nil
	}
	sealed, err = s.sealer.Seal(name, plain)
	if err != nil {
		return nil, false, err
	}
	if !s.sealer.IsSealed(sealed) || bytes.Equal(sealed, stored) {
		return nil, false, nil // keyseal.None: nothing to seal with
	}
	return sealed, true, nil
}
