package certauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/test/servicetest"
)

// memStore is a minimal CertAuthStore for these tests.
type memStore struct {
	mu    sync.Mutex
	pairs map[[2]string]bool // {id, hash}
}

func newMemStore() *memStore { return &memStore{pairs: map[[2]string]bool{}} }

func (s *memStore) HasCertHash(_ context.Context, hash string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.pairs {
		if k[1] == hash {
			return true, nil
		}
	}
	return false, nil
}

func (s *memStore) EnrollmentHasCertHash(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.pairs {
		if k[0] == id {
			return true, nil
		}
	}
	return false, nil
}

func (s *memStore) IsCertHashAssociated(_ context.Context, id, hash string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pairs[[2]string{id, hash}], nil
}

func (s *memStore) AssociateCertHash(_ context.Context, id, hash string, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pairs[[2]string{id, hash}] = true
	return nil
}

func newCert(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "device"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func request(cert *x509.Certificate, keys mdm.Enrollment) *mdm.Request {
	r := mdm.NewRequest(context.Background(), cert)
	id, err := keys.Resolve()
	if err != nil {
		panic(err)
	}
	r.EnrollID = id
	return r
}

func TestCertAuth(t *testing.T) {
	certA, certB := newCert(t), newCert(t)
	devA := mdm.Enrollment{UDID: "A"}
	devB := mdm.Enrollment{UDID: "B"}
	userA := mdm.Enrollment{UDID: "A", UserID: "U1"}

	store := newMemStore()
	next := &servicetest.Recorder{}
	c := New(next, store)

	if err := c.Authenticate(request(certA, devA), &mdm.Authenticate{}); err != nil {
		t.Fatalf("first Authenticate: %v", err)
	}
	if err := c.TokenUpdate(request(certA, devA), &mdm.TokenUpdate{}); err != nil {
		t.Fatalf("TokenUpdate with associated cert: %v", err)
	}
	// A user channel shares its device's identity certificate.
	if _, err := c.CommandAndReportResults(request(certA, userA), &mdm.CommandResults{Status: "Idle"}); err != nil {
		t.Fatalf("user channel with device's cert: %v", err)
	}
	// Device B presenting A's certificate is refused at Authenticate...
	if err := c.Authenticate(request(certA, devB), &mdm.Authenticate{}); !errors.Is(err, ErrHashInUse) {
		t.Fatalf("Authenticate reusing another device's cert: got %v, want ErrHashInUse", err)
	}
	// ...and on any later message.
	if _, err := c.CommandAndReportResults(request(certA, devB), &mdm.CommandResults{Status: "Idle"}); !errors.Is(err, ErrNotAssociated) {
		t.Fatalf("report with another device's cert: got %v, want ErrNotAssociated", err)
	}
	// Device A speaking with an unassociated certificate is refused.
	if err := c.TokenUpdate(request(certB, devA), &mdm.TokenUpdate{}); !errors.Is(err, ErrNotAssociated) {
		t.Fatalf("TokenUpdate with unassociated cert: got %v, want ErrNotAssociated", err)
	}
	// Re-enrolling with a new certificate associates it too.
	if err := c.Authenticate(request(certB, devA), &mdm.Authenticate{}); err != nil {
		t.Fatalf("re-enroll with new cert: %v", err)
	}
	if err := c.TokenUpdate(request(certB, devA), &mdm.TokenUpdate{}); err != nil {
		t.Fatalf("TokenUpdate after re-enroll: %v", err)
	}
	// No certificate at all is refused.
	if err := c.CheckOut(request(nil, devA), &mdm.CheckOut{}); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("no certificate: got %v", err)
	}
	want := []string{"Authenticate", "TokenUpdate", "CommandAndReportResults", "Authenticate", "TokenUpdate"}
	if len(next.Calls()) != len(want) {
		t.Fatalf("next service calls = %v, want %v (refused requests must not reach it)", next.Calls(), want)
	}
	for i := range want {
		if next.Calls()[i] != want[i] {
			t.Fatalf("next service calls = %v, want %v", next.Calls(), want)
		}
	}
}

func TestCertAuthRetroactive(t *testing.T) {
	migrated := mdm.Enrollment{UDID: "M"}
	other := mdm.Enrollment{UDID: "O"}
	certM, certO := newCert(t), newCert(t)

	t.Run("off", func(t *testing.T) {
		c := New(&servicetest.Recorder{}, newMemStore())
		if err := c.TokenUpdate(request(certM, migrated), &mdm.TokenUpdate{}); !errors.Is(err, ErrNotAssociated) {
			t.Fatalf("without -retro an unassociated enrollment is refused, got %v", err)
		}
	})
	t.Run("on", func(t *testing.T) {
		store := newMemStore()
		c := New(&servicetest.Recorder{}, store, WithRetroactive())
		if err := c.Authenticate(request(certO, other), &mdm.Authenticate{}); err != nil {
			t.Fatal(err)
		}
		// A hash already used by another enrollment can't be taken over.
		if err := c.TokenUpdate(request(certO, migrated), &mdm.TokenUpdate{}); !errors.Is(err, ErrNotAssociated) {
			t.Fatalf("retro with another enrollment's hash: got %v", err)
		}
		// A never-seen hash for an enrollment without any is associated.
		if err := c.TokenUpdate(request(certM, migrated), &mdm.TokenUpdate{}); err != nil {
			t.Fatalf("retro association: %v", err)
		}
		if ok, _ := store.IsCertHashAssociated(context.Background(), "M", HashCert(certM)); !ok {
			t.Fatal("retroactive association not stored")
		}
		// Once associated, a different new hash is refused.
		if err := c.TokenUpdate(request(newCert(t), migrated), &mdm.TokenUpdate{}); !errors.Is(err, ErrNotAssociated) {
			t.Fatalf("second new hash after retro association: got %v", err)
		}
	})
}

func TestHashCert(t *testing.T) {
	cert := newCert(t)
	h := HashCert(cert)
	if len(h) != 64 {
		t.Fatalf("hash %q: want 64 hex chars", h)
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			t.Fatalf("hash %q is not lower-case hex", h)
		}
	}
}
