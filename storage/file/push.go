package file

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/memindex"
	"github.com/picomdm/picomdm/storage/internal/pushkey"
)

// RetrievePushInfo implements storage.PushStore from the in-memory index:
// no file is read, however many IDs are asked for.
func (s *Store) RetrievePushInfo(_ context.Context, ids []string) (map[string]*mdm.Push, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return memindex.PushInfos(ids, s.channel), nil
}

// pushCertRecord is a pushcerts/ file.
type pushCertRecord struct {
	Topic      string    `json:"topic"`
	Cert       []byte    `json:"cert_pem"`
	Key        []byte    `json:"key_pem"` // sealed with storage.PushKeyNamePrefix+Topic
	StaleToken string    `json:"stale_token"`
	NotAfter   time.Time `json:"not_after"`
	StoredAt   time.Time `json:"stored_at"`
}

func (s *Store) pushCertPath(topic string) string {
	return filepath.Join(s.dir, "pushcerts", fileName(topic)+".json")
}

// StorePushCert implements storage.PushCertStore. The stale token is
// derived from the certificate and plaintext key, so storing the same pair
// again does not make every cached copy reload, a new pair always changes
// it, and sealing the key does not. The key is written sealed.
func (s *Store) StorePushCert(_ context.Context, pemCert, pemKey []byte) error {
	pc, sealed, err := pushkey.Seal(s.sealer, pemCert, pemKey)
	if err != nil {
		return err
	}
	topic := pc.Topic
	rec := &pushCertRecord{
		Topic:      topic,
		Cert:       pemCert,
		Key:        sealed,
		StaleToken: pc.StaleToken,
		NotAfter:   pc.NotAfter,
		StoredAt:   time.Now(),
	}
	s.pushCertMu.Lock()
	defer s.pushCertMu.Unlock()
	if err := s.writeJSON(s.pushCertPath(topic), rec); err != nil {
		return fmt.Errorf("storing push cert for %q: %w", topic, err)
	}
	return nil
}

func (s *Store) readPushCert(topic string) (*pushCertRecord, error) {
	rec := new(pushCertRecord)
	ok, err := readJSON(s.pushCertPath(topic), rec)
	if err != nil {
		return nil, fmt.Errorf("push cert for topic %q: %w", topic, err)
	}
	if !ok {
		return nil, fmt.Errorf("push cert for topic %q: %w", topic, storage.ErrNotFound)
	}
	return rec, nil
}

// RetrievePushCert implements storage.PushCertStore.
func (s *Store) RetrievePushCert(_ context.Context, topic string) (*tls.Certificate, string, error) {
	rec, err := s.readPushCert(topic)
	if err != nil {
		return nil, "", err
	}
	cert, err := pushkey.Open(s.sealer, topic, rec.Cert, rec.Key)
	if err != nil {
		return nil, "", err
	}
	return cert, rec.StaleToken, nil
}

// IsPushCertStale implements storage.PushCertStore. An unknown topic is
// stale: whatever the caller holds for it is not current.
func (s *Store) IsPushCertStale(_ context.Context, topic, staleToken string) (bool, error) {
	rec, err := s.readPushCert(topic)
	if errors.Is(err, storage.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return rec.StaleToken != staleToken, nil
}

// RetrievePushCertInfos implements storage.PushCertStore: one read per
// stored topic (there are few).
func (s *Store) RetrievePushCertInfos(_ context.Context) ([]storage.PushCertInfo, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, "pushcerts"))
	if err != nil {
		return nil, fmt.Errorf("listing push certs: %w", err)
	}
	var out []storage.PushCertInfo
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		rec := new(pushCertRecord)
		ok, err := readJSON(filepath.Join(s.dir, "pushcerts", e.Name()), rec)
		if err != nil {
			return nil, fmt.Errorf("listing push certs: %w", err)
		}
		if ok {
			out = append(out, storage.PushCertInfo{Topic: rec.Topic, NotAfter: rec.NotAfter})
		}
	}
	slices.SortFunc(out, func(a, b storage.PushCertInfo) int { return strings.Compare(a.Topic, b.Topic) })
	return out, nil
}

// pushKeyRewrites is SealPrivateKeys' part for push certificates: it
// opens every stored key and returns the records of those in plaintext
// with their keys sealed. Callers hold pushCertMu until they are written,
// so a concurrent StorePushCert is not overwritten with the old pair.
func (s *Store) pushKeyRewrites() ([]keyRewrite, error) {
	dir := filepath.Join(s.dir, "pushcerts")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing push certs: %w", err)
	}
	var out []keyRewrite
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		rec := new(pushCertRecord)
		ok, err := readJSON(path, rec)
		if err != nil {
			return nil, fmt.Errorf("push cert: %w", err)
		}
		if !ok {
			continue
		}
		sealed, changed, err := s.reseal(storage.PushKeyNamePrefix+rec.Topic, rec.Key)
		if err != nil {
			return nil, fmt.Errorf("push cert for topic %q: %w", rec.Topic, err)
		}
		if changed {
			rec.Key = sealed
			out = append(out, keyRewrite{path: path, rec: rec})
		}
	}
	return out, nil
}
