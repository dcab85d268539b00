package file

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/memindex"
)

// channelIDs returns r's ID and, for a device channel, its known user
// channels: what Authenticate and CheckOut act on.
func (s *Store) channelIDs(r *mdm.Request) []string {
	ids := []string{r.ID}
	if r.Type.IsUserChannel() {
		return ids
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for child := range s.children[r.ID] {
		ids = append(ids, child)
	}
	return ids
}

// readEnrollment reads enrollment.json of id; ok is false if the channel
// never sent a TokenUpdate.
func (s *Store) readEnrollment(id string) (rec *enrollmentRecord, ok bool, err error) {
	rec = new(enrollmentRecord)
	ok, err = readJSON(filepath.Join(s.enrollmentDir(id), "enrollment.json"), rec)
	return rec, ok, err
}

// readDevice reads device.json of device channel id; ok is false if none
// was stored.
func (s *Store) readDevice(id string) (rec *deviceRecord, ok bool, err error) {
	rec = new(deviceRecord)
	ok, err = readJSON(filepath.Join(s.enrollmentDir(id), "device.json"), rec)
	return rec, ok, err
}

// disableChannels disables the known channels among ids and restarts their
// token-update tally (as NanoMDM does, so the next enrollment's first
// TokenUpdate counts as 1 again). With clear, their pending queues are
// emptied too: every command enqueued so far (seq up to the current one)
// is recorded as cleared. Callers hold the device's stripe.
func (s *Store) disableChannels(ids []string, clear bool, now time.Time) error {
	s.mu.RLock()
	clearedSeq := s.seq
	s.mu.RUnlock()
	for _, id := range ids {
		rec, ok, err := s.readEnrollment(id)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if rec.Enabled {
			rec.DisabledAt = now
		}
		rec.Enabled = false
		rec.TokenUpdateTally = 0
		if clear {
			rec.ClearedSeq = max(rec.ClearedSeq, clearedSeq)
		}
		if err := s.writeJSON(filepath.Join(s.enrollmentDir(id), "enrollment.json"), rec); err != nil {
			return fmt.Errorf("disabling %q: %w", id, err)
		}
		var done []string
		s.mu.Lock()
		if e := s.enrollments[id]; e != nil {
			e.Enabled = false
			e.Tally = 0
			e.clearedSeq = rec.ClearedSeq
			if clear {
				done = s.dropPendingLocked(id, rec.ClearedSeq)
			}
		}
		s.mu.Unlock()
		s.removeQueued(done)
	}
	return nil
}

// StoreAuthenticate implements storage.CheckinStore. The channels are
// disabled and their queues cleared before the device record is replaced;
// a crash in between leaves a device that has to authenticate again, which
// it does when its enrollment fails. A cert-auth association is decided
// (and the hash claimed) before anything is written and written last, so
// a refused Authenticate writes nothing and a failed one leaves the device
// without a certificate (refused until it authenticates again), never one
// associated with a device whose Authenticate was not stored.
func (s *Store) StoreAuthenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	mu := s.stripe(r.DeviceID())
	mu.Lock()
	defer mu.Unlock()
	now := time.Now()
	assoc, withCert := storage.CertAssociationFrom(r.Context)
	if withCert {
		release, err := s.claimCertHash(r.ID, assoc.Hash)
		if err != nil {
			return fmt.Errorf("storing authenticate: %w", err)
		}
		defer release()
	}
	if err := s.disableChannels(s.channelIDs(r), true, now); err != nil {
		return fmt.Errorf("storing authenticate: %w", err)
	}
	dir, err := s.ensureEnrollmentDir(r.ID)
	if err != nil {
		return fmt.Errorf("storing authenticate: %w", err)
	}
	rec := &deviceRecord{
		ID:              r.ID,
		Type:            r.Type,
		SerialNumber:    msg.SerialNumber,
		Authenticate:    msg.RawBytes(),
		AuthenticatedAt: now,
	}
	if r.Certificate != nil {
		rec.IdentityCert = r.Certificate.Raw
		rec.IdentityCertNotAfter = r.Certificate.NotAfter
	}
	if err := s.writeJSON(filepath.Join(dir, "device.json"), rec); err != nil {
		return fmt.Errorf("storing authenticate: %w", err)
	}
	if withCert {
		if err := s.replaceCertHashes(r.ID, assoc, now); err != nil {
			return fmt.Errorf("storing authenticate: associating cert hash: %w", err)
		}
	}
	s.touchSeen(r.ID, now)
	return nil
}

// StoreTokenUpdate implements storage.CheckinStore.
func (s *Store) StoreTokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	mu := s.stripe(r.DeviceID())
	mu.Lock()
	defer mu.Unlock()
	now := time.Now()
	dir, err := s.ensureEnrollmentDir(r.ID)
	if err != nil {
		return fmt.Errorf("storing token update: %w", err)
	}
	rec, known, err := s.readEnrollment(r.ID)
	if err != nil {
		return fmt.Errorf("storing token update: %w", err)
	}
	if !known {
		// An existing enrollment's type and parent never change.
		rec.ID, rec.Type, rec.ParentID = r.ID, r.Type, r.ParentID
	}
	rec.Topic, rec.PushMagic, rec.Token = msg.Topic, msg.PushMagic, msg.Token
	rec.PushTokenInvalidAt, rec.PushTokenInvalidReason = time.Time{}, ""
	if len(msg.UnlockToken) > 0 {
		// Devices send it in their first TokenUpdate only; keep it.
		rec.UnlockToken = msg.UnlockToken
	}
	rec.TokenUpdate = msg.RawBytes()
	if !rec.Enabled {
		rec.EnrolledAt = now
		rec.DisabledAt = time.Time{}
	}
	rec.Enabled = true
	rec.TokenUpdateTally++
	rec.TokenUpdateAt = now
	if err := s.writeJSON(filepath.Join(dir, "enrollment.json"), rec); err != nil {
		return fmt.Errorf("storing token update: %w", err)
	}
	s.mu.Lock()
	s.cacheEnrollment(rec)
	s.mu.Unlock()
	s.touchSeen(r.ID, now)
	return nil
}

// StoreUserAuthenticate implements storage.CheckinStore. The last message
// of the exchange is kept.
func (s *Store) StoreUserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) error {
	mu := s.stripe(r.DeviceID())
	mu.Lock()
	defer mu.Unlock()
	dir, err := s.ensureEnrollmentDir(r.ID)
	if err != nil {
		return fmt.Errorf("storing user authenticate: %w", err)
	}
	if err := s.writeFile(filepath.Join(dir, "user_authenticate.plist"), msg.RawBytes()); err != nil {
		return fmt.Errorf("storing user authenticate: %w", err)
	}
	s.touchSeen(r.ID, time.Now())
	return nil
}

// Disable implements storage.CheckinStore. The queues are kept: a device
// that checks out and enrolls again authenticates first, which clears
// them.
func (s *Store) Disable(r *mdm.Request) error {
	mu := s.stripe(r.DeviceID())
	mu.Lock()
	defer mu.Unlock()
	now := time.Now()
	if err := s.disableChannels(s.channelIDs(r), false, now); err != nil {
		return fmt.Errorf("disabling enrollment: %w", err)
	}
	s.touchSeen(r.ID, now)
	return nil
}

// RetrieveTokenUpdateTally implements storage.TokenUpdateTallyStore.
func (s *Store) RetrieveTokenUpdateTally(_ context.Context, id string) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return memindex.TokenUpdateTally(id, s.channel(id))
}

// StoreBootstrapToken implements storage.BootstrapTokenStore. The token
// belongs to the device channel, whichever channel sends it. A device that
// never authenticated (only possible out of order) gets a device record
// rather than a failed request.
func (s *Store) StoreBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	id := r.DeviceID()
	mu := s.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	dir, err := s.ensureEnrollmentDir(id)
	if err != nil {
		return fmt.Errorf("storing bootstrap token: %w", err)
	}
	rec, ok, err := s.readDevice(id)
	if err != nil {
		return fmt.Errorf("storing bootstrap token: %w", err)
	}
	if !ok {
		rec.ID, rec.Type = id, mdm.Device
		if r.Type == mdm.UserEnrollment || r.Type == mdm.UserEnrollmentDevice {
			rec.Type = mdm.UserEnrollmentDevice
		}
	}
	now := time.Now()
	rec.BootstrapToken = bytes.Clone(msg.BootstrapToken)
	rec.BootstrapTokenAt = now
	if err := s.writeJSON(filepath.Join(dir, "device.json"), rec); err != nil {
		return fmt.Errorf("storing bootstrap token: %w", err)
	}
	s.touchSeen(r.ID, now)
	return nil
}

// RetrieveBootstrapToken implements storage.BootstrapTokenStore. It reads
// without the device's lock: device.json is replaced atomically.
func (s *Store) RetrieveBootstrapToken(r *mdm.Request, _ *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	rec, ok, err := s.readDevice(r.DeviceID())
	if err != nil {
		return nil, fmt.Errorf("retrieving bootstrap token: %w", err)
	}
	s.touchSeen(r.ID, time.Now())
	if !ok || len(rec.BootstrapToken) == 0 {
		return nil, nil
	}
	return &mdm.BootstrapToken{BootstrapToken: rec.BootstrapToken}, nil
}

// removeQueued removes the queued/ files of commands no enrollment is
// waiting for any more. Failures are harmless: the next start finds every
// target answered and removes the file then.
func (s *Store) removeQueued(uuids []string) {
	for _, uuid := range uuids {
		_ = os.Remove(s.queuedPath(uuid))
	}
}
