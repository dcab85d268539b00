package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// RunSCEP runs the storage.SCEPStore conformance tests against store,
// each behaviour as its own subtest. Like Run, it may run more than once
// against one store (or database): challenges and certificates get fresh
// random IDs, hashes and serials, and listings are checked for the
// suite's own rows among whatever else is stored. The CA is a singleton,
// so the CA test first stores one with replace=true; that a fresh store
// has none, and concurrent creation, are tested by RunKeySealing.
//
// Semantics it fixes, beyond the interface documentation:
//   - Times come back in UTC and equal to what was stored at millisecond
//     precision (the suite stores times with whole milliseconds, given in
//     a zone other than UTC); a time that is not set comes back zero.
//   - ListSCEPChallenges and ListSCEPCerts paginate by keyset like
//     ListEnrollments: the next cursor is storage.EncodeCursor of the last
//     ID (Serial) of a full page, and "" exactly when no further item
//     exists; a cursor the backend did not issue fails with
//     storage.ErrBadCursor. Page.Size clamps the limit.
//   - A successful StoreSCEPCert with a challenge sets the caller's
//     c.ChallengeID to the challenge's ID, and that ID is stored.
//   - A StoreSCEPCert refused for a duplicate Serial (ErrExists) does not
//     use the challenge it was given: it stays usable.
//   - RevokeSCEPChallenge changes only RevokedAt, and only the first time.
//   - PurgeSCEPChallenges deletes the unused challenges whose ExpiresAt
//     is strictly before its cut-off; a limit of 0 deletes nothing (and
//     is no error). A purged challenge's ID and Hash are free again.
func RunSCEP(t *testing.T, store storage.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store)
	}{
		{"CA", testSCEPCA},
		{"ChallengeRoundTrip", testSCEPChallengeRoundTrip},
		{"ChallengeDuplicate", testSCEPChallengeDuplicate},
		{"ChallengeRevoke", testSCEPChallengeRevoke},
		{"ChallengeList", testSCEPChallengeList},
		{"PurgeChallenges", testSCEPPurgeChallenges},
		{"CertStatic", testSCEPCertStatic},
		{"CertOneTime", testSCEPCertOneTime},
		{"CertUnusableChallenge", testSCEPCertUnusableChallenge},
		{"CertDuplicateSerial", testSCEPCertDuplicateSerial},
		{"CertChallengeRace", testSCEPCertChallengeRace},
		{"CertList", testSCEPCertList},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, store) })
	}
}

// NewSCEPCA returns a PEM self-signed CA certificate and its PEM
// (PKCS #8) private key, standing in for the built-in SCEP CA. Storage
// keeps both as bytes and never parses them; each call's pair differs.
func NewSCEPCA() (certPEM, keyPEM []byte) {
	now := time.Now().Truncate(time.Second)
	cert, key := selfSigned(&x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "PicoMDM storagetest SCEP CA " + hex.EncodeToString(RandomBytes(4))},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	})
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(fmt.Sprintf("storagetest: encoding CA key: %v", err))
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM
}

// scepZone is the zone the suite gives times in, so that a backend that
// stores wall-clock digits without converting to UTC fails.
var scepZone = time.FixedZone("UTC+05:30", 5*3600+30*60)

// scepTime returns now plus d with whole milliseconds, in scepZone.
func scepTime(d time.Duration) time.Time {
	return time.Now().Add(d).Truncate(time.Millisecond).In(scepZone)
}

// NewSCEPChallenge returns a challenge with ID id and a random Hash,
// created now and expiring in an hour, not yet used or revoked.
func NewSCEPChallenge(id string) *storage.SCEPChallenge {
	return &storage.SCEPChallenge{
		ID:        id,
		Hash:      RandomCertHash(),
		Note:      "storagetest ✓ " + id,
		CreatedAt: scepTime(0),
		ExpiresAt: scepTime(time.Hour),
	}
}

// newChallengeID returns a fresh random challenge ID.
func newChallengeID() string { return "storagetest-" + hex.EncodeToString(RandomBytes(12)) }

// newSerialPrefix returns 24 random lower-case hex digits: with 8 more
// (serialAt) a SCEPCert serial unique to one test, sorting by the suffix.
func newSerialPrefix() string { return hex.EncodeToString(RandomBytes(12)) }

// serialAt returns the i-th serial under prefix.
func serialAt(prefix string, i int) string { return fmt.Sprintf("%s%08x", prefix, i) }

// oidPadding is a private extension OID newSCEPCertDER pads certificates
// with, to reach a given DER size.
var oidPadding = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 1}

// NewSCEPCert returns the record of a real certificate (ECDSA, signed by
// a throw-away key) with the given serial (32 hex digits), issued at
// issuedAt (given with whole milliseconds), not issued for a challenge.
func NewSCEPCert(serial string, issuedAt time.Time) *storage.SCEPCert {
	return newSCEPCertPadded(serial, issuedAt, 0)
}

// newSCEPCertPadded is NewSCEPCert with padding bytes in a private
// extension, to make a large DER.
func newSCEPCertPadded(serial string, issuedAt time.Time, padding int) *storage.SCEPCert {
	n, ok := new(big.Int).SetString(serial, 16)
	if !ok || n.Sign() <= 0 {
		n = randomSerial()
	}
	notBefore := issuedAt.Add(-time.Hour).Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: n,
		Subject:      pkix.Name{CommonName: NewUUID(), Organization: []string{"PicoMDM storagetest"}},
		NotBefore:    notBefore,
		NotAfter:     notBefore.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if padding > 0 {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidPadding, Value: RandomBytes(padding)}}
	}
	cert, _ := selfSigned(tmpl)
	sum := sha256.Sum256(cert.Raw)
	return &storage.SCEPCert{
		Serial:    serial,
		Subject:   cert.Subject.String(),
		CertHash:  hex.EncodeToString(sum[:]),
		NotBefore: cert.NotBefore.In(scepZone),
		NotAfter:  cert.NotAfter.In(scepZone),
		IssuedAt:  issuedAt,
		DER:       cert.Raw,
	}
}

// newLargeSCEPCert returns a certificate record with a DER of exactly
// size bytes.
func newLargeSCEPCert(serial string, issuedAt time.Time, size int) *storage.SCEPCert {
	// The DER's length fields keep their size near size, so one
	// correction of the padding lands on it, but for the ECDSA
	// signature, whose length varies by a byte or two: retry until it
	// does.
	pad := size - 1024
	c := newSCEPCertPadded(serial, issuedAt, pad)
	for range 50 {
		if len(c.DER) == size {
			return c
		}
		pad += size - len(c.DER)
		c = newSCEPCertPadded(serial, issuedAt, pad)
	}
	panic(fmt.Sprintf("storagetest: could not make a %d-byte certificate (last %d)", size, len(c.DER)))
}

// fill returns text repeated, then padded with "x", to exactly n bytes.
func fill(text string, n int) string {
	s := strings.Repeat(text, n/len(text))
	return s + strings.Repeat("x", n-len(s))
}

// wantSCEPTime asserts got is want at millisecond precision, in UTC, or
// zero when want is.
func wantSCEPTime(t testing.TB, what string, got, want time.Time) {
	t.Helper()
	if want.IsZero() {
		if !got.IsZero() {
			t.Errorf("%s = %v, want zero (not set)", what, got)
		}
		return
	}
	if !got.Truncate(time.Millisecond).Equal(want.Truncate(time.Millisecond)) {
		t.Errorf("%s = %v, want %v", what, got, want.UTC())
	}
	if got.Location() != time.UTC {
		t.Errorf("%s = %v: location %v, want UTC", what, got, got.Location())
	}
}

// wantSCEPChallenge asserts got is want, field by field.
func wantSCEPChallenge(t testing.TB, got *storage.SCEPChallenge, want *storage.SCEPChallenge) {
	t.Helper()
	if got == nil {
		t.Fatalf("challenge %s: nil", want.ID)
	}
	if got.ID != want.ID || got.Hash != want.Hash || got.Note != want.Note {
		t.Errorf("challenge = {ID %q Hash %q Note %q}, want {ID %q Hash %q Note %q}",
			got.ID, got.Hash, got.Note, want.ID, want.Hash, want.Note)
	}
	wantSCEPTime(t, "challenge "+want.ID+" CreatedAt", got.CreatedAt, want.CreatedAt)
	wantSCEPTime(t, "challenge "+want.ID+" ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	wantSCEPTime(t, "challenge "+want.ID+" UsedAt", got.UsedAt, want.UsedAt)
	wantSCEPTime(t, "challenge "+want.ID+" RevokedAt", got.RevokedAt, want.RevokedAt)
}

// wantSCEPCert asserts got is want, field by field.
func wantSCEPCert(t testing.TB, got *storage.SCEPCert, want *storage.SCEPCert) {
	t.Helper()
	if got == nil {
		t.Fatalf("cert %s: nil", want.Serial)
	}
	if got.Serial != want.Serial || got.Subject != want.Subject || got.CertHash != want.CertHash || got.ChallengeID != want.ChallengeID {
		t.Errorf("cert = {Serial %q Subject %q CertHash %q ChallengeID %q}, want {Serial %q Subject %q CertHash %q ChallengeID %q}",
			got.Serial, got.Subject, got.CertHash, got.ChallengeID, want.Serial, want.Subject, want.CertHash, want.ChallengeID)
	}
	if !bytes.Equal(got.DER, want.DER) {
		t.Errorf("cert %s: DER of %d bytes differs from the %d stored", want.Serial, len(got.DER), len(want.DER))
	}
	wantSCEPTime(t, "cert "+want.Serial+" NotBefore", got.NotBefore, want.NotBefore)
	wantSCEPTime(t, "cert "+want.Serial+" NotAfter", got.NotAfter, want.NotAfter)
	wantSCEPTime(t, "cert "+want.Serial+" IssuedAt", got.IssuedAt, want.IssuedAt)
}

func createChallenge(t testing.TB, s storage.Store, c *storage.SCEPChallenge) {
	t.Helper()
	if err := s.CreateSCEPChallenge(context.Background(), c); err != nil {
		t.Fatalf("CreateSCEPChallenge(%s): %v", c.ID, err)
	}
}

func retrieveChallenge(t testing.TB, s storage.Store, id string) *storage.SCEPChallenge {
	t.Helper()
	c, err := s.RetrieveSCEPChallenge(context.Background(), id)
	if err != nil {
		t.Fatalf("RetrieveSCEPChallenge(%s): %v", id, err)
	}
	return c
}

func retrieveSCEPCert(t testing.TB, s storage.Store, serial string) *storage.SCEPCert {
	t.Helper()
	c, err := s.RetrieveSCEPCert(context.Background(), serial)
	if err != nil {
		t.Fatalf("RetrieveSCEPCert(%s): %v", serial, err)
	}
	return c
}

// wantNoSCEPCert asserts no certificate of serial is stored.
func wantNoSCEPCert(t testing.TB, s storage.Store, serial string) {
	t.Helper()
	if c, err := s.RetrieveSCEPCert(context.Background(), serial); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveSCEPCert(%s) = %+v, %v; want ErrNotFound (nothing stored)", serial, c, err)
	}
}

// wantCA asserts the stored CA is certPEM and keyPEM, byte for byte.
func wantCA(t testing.TB, s storage.Store, certPEM, keyPEM []byte) {
	t.Helper()
	gotCert, gotKey, err := s.RetrieveSCEPCA(context.Background())
	if err != nil {
		t.Fatalf("RetrieveSCEPCA: %v", err)
	}
	if !bytes.Equal(gotCert, certPEM) {
		t.Errorf("RetrieveSCEPCA: certificate differs from the one stored:\n%s\nwant\n%s", gotCert, certPEM)
	}
	if !bytes.Equal(gotKey, keyPEM) {
		t.Errorf("RetrieveSCEPCA: key (%d bytes) differs from the one stored (%d bytes)", len(gotKey), len(keyPEM))
	}
}

// testSCEPCA: the CA comes back byte for byte; replace=false never
// overwrites, replace=true does.
func testSCEPCA(t *testing.T, s storage.Store) {
	ctx := context.Background()
	cert1, key1 := NewSCEPCA()
	if err := s.StoreSCEPCA(ctx, cert1, key1, true); err != nil {
		t.Fatalf("StoreSCEPCA(replace): %v", err)
	}
	wantCA(t, s, cert1, key1)

	cert2, key2 := NewSCEPCA()
	if err := s.StoreSCEPCA(ctx, cert2, key2, false); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("StoreSCEPCA(no replace) over a stored CA: %v, want ErrExists", err)
	}
	wantCA(t, s, cert1, key1)
	// Storing the very same CA again without replace is still refused:
	// the caller reads the stored one instead.
	if err := s.StoreSCEPCA(ctx, cert1, key1, false); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("StoreSCEPCA(no replace) of the stored CA: %v, want ErrExists", err)
	}

	if err := s.StoreSCEPCA(ctx, cert2, key2, true); err != nil {
		t.Fatalf("StoreSCEPCA(replace) over a stored CA: %v", err)
	}
	wantCA(t, s, cert2, key2)
	if err := s.StoreSCEPCA(ctx, cert2, key2, true); err != nil {
		t.Fatalf("StoreSCEPCA(replace) with the stored CA: %v", err)
	}
	wantCA(t, s, cert2, key2)
}

// testSCEPChallengeRoundTrip: every field comes back; unknown IDs are
// ErrNotFound; the Note's 255-byte edge fits.
func testSCEPChallengeRoundTrip(t *testing.T, s storage.Store) {
	ctx := context.Background()
	c := NewSCEPChallenge(newChallengeID())
	createChallenge(t, s, c)
	wantSCEPChallenge(t, retrieveChallenge(t, s, c.ID), c)

	if got, err := s.RetrieveSCEPChallenge(ctx, newChallengeID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RetrieveSCEPChallenge(unknown) = %+v, %v; want ErrNotFound", got, err)
	}

	// A 64-byte ID (the column's size), a 255-byte Note of multi-byte
	// text, and an empty Note.
	long := NewSCEPChallenge(strings.Repeat("x", 64-len(newChallengeID())) + newChallengeID())
	long.Note = fill("Grüße ✓ ", 255)
	if len(long.ID) != 64 || len(long.Note) != 255 {
		t.Fatalf("test bug: ID %d bytes, Note %d bytes", len(long.ID), len(long.Note))
	}
	createChallenge(t, s, long)
	wantSCEPChallenge(t, retrieveChallenge(t, s, long.ID), long)

	empty := NewSCEPChallenge(newChallengeID())
	empty.Note = ""
	createChallenge(t, s, empty)
	wantSCEPChallenge(t, retrieveChallenge(t, s, empty.ID), empty)
}

// testSCEPChallengeDuplicate: a taken ID or Hash is ErrExists and leaves
// the stored challenge, and nothing else, behind.
func testSCEPChallengeDuplicate(t *testing.T, s storage.Store) {
	ctx := context.Background()
	c := NewSCEPChallenge(newChallengeID())
	createChallenge(t, s, c)

	sameID := NewSCEPChallenge(c.ID)
	if err := s.CreateSCEPChallenge(ctx, sameID); !errors.Is(err, storage.ErrExists) {
		t.Errorf("CreateSCEPChallenge(taken ID): %v, want ErrExists", err)
	}
	sameHash := NewSCEPChallenge(newChallengeID())
	sameHash.Hash = c.Hash
	if err := s.CreateSCEPChallenge(ctx, sameHash); !errors.Is(err, storage.ErrExists) {
		t.Errorf("CreateSCEPChallenge(taken Hash): %v, want ErrExists", err)
	}
	if got, err := s.RetrieveSCEPChallenge(ctx, sameHash.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("challenge refused for its hash was stored: %+v, %v", got, err)
	}
	wantSCEPChallenge(t, retrieveChallenge(t, s, c.ID), c)
	// The refused one's own hash is still free.
	sameID.ID = newChallengeID()
	createChallenge(t, s, sameID)
}

// testSCEPChallengeRevoke: revoking sets RevokedAt once; unknown IDs are
// ErrNotFound.
func testSCEPChallengeRevoke(t *testing.T, s storage.Store) {
	ctx := context.Background()
	c := NewSCEPChallenge(newChallengeID())
	other := NewSCEPChallenge(newChallengeID())
	createChallenge(t, s, c)
	createChallenge(t, s, other)

	first := scepTime(time.Minute)
	if err := s.RevokeSCEPChallenge(ctx, c.ID, first); err != nil {
		t.Fatalf("RevokeSCEPChallenge: %v", err)
	}
	c.RevokedAt = first
	wantSCEPChallenge(t, retrieveChallenge(t, s, c.ID), c)
	if err := s.RevokeSCEPChallenge(ctx, c.ID, scepTime(2*time.Minute)); err != nil {
		t.Fatalf("RevokeSCEPChallenge again: %v", err)
	}
	wantSCEPChallenge(t, retrieveChallenge(t, s, c.ID), c)
	wantSCEPChallenge(t, retrieveChallenge(t, s, other.ID), other)

	if err := s.RevokeSCEPChallenge(ctx, newChallengeID(), first); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RevokeSCEPChallenge(unknown): %v, want ErrNotFound", err)
	}
}

// listPages walks a listing from cursor with limit to its end, checking
// the pagination contract, and returns every item. key is an item's
// ID or Serial.
func listPages[T any](t testing.TB, what string, list func(storage.Page) ([]T, string, error), key func(T) string, cursor string, limit int) []T {
	t.Helper()
	var all []T
	last := ""
	if cursor != "" {
		var err error
		if last, err = storage.DecodeCursor(cursor); err != nil {
			t.Fatalf("test bug: cursor %q: %v", cursor, err)
		}
	}
	for pages := 1; ; pages++ {
		p := storage.Page{Cursor: cursor, Limit: limit}
		items, next, err := list(p)
		if err != nil {
			t.Fatalf("%s(cursor %q, limit %d): %v", what, cursor, limit, err)
		}
		if len(items) > p.Size() {
			t.Fatalf("%s: %d items, limit %d", what, len(items), p.Size())
		}
		if cursor != "" && len(items) == 0 {
			t.Fatalf("%s: cursor %q led to an empty page", what, cursor)
		}
		for _, it := range items {
			if k := key(it); k <= last {
				t.Fatalf("%s: %q listed after %q: not in strictly increasing order", what, k, last)
			} else {
				last = k
			}
		}
		all = append(all, items...)
		if next == "" {
			return all
		}
		if len(items) < p.Size() {
			t.Fatalf("%s: page of %d (limit %d) with next cursor %q", what, len(items), p.Size(), next)
		}
		if want := storage.EncodeCursor(last); next != want {
			t.Fatalf("%s: next cursor %q, want %q (storage.EncodeCursor of the page's last, %q)", what, next, want, last)
		}
		if pages > 10000 {
			t.Fatalf("%s: more than 10000 pages", what)
		}
		cursor = next
	}
}

// wantOwnPages checks a listing's pagination on the suite's own items:
// keys share a prefix no other row has and sort in the order given;
// pages of 2 from storage.EncodeCursor(prefix) list them in order, and
// the same cursor gives the same page again. It returns what it listed,
// in order.
func wantOwnPages[T any](t testing.TB, what string, list func(storage.Page) ([]T, string, error), key func(T) string, prefix string, keys []string) []T {
	t.Helper()
	var got []T
	cursor := storage.EncodeCursor(prefix)
	for len(got) < len(keys) {
		p := storage.Page{Cursor: cursor, Limit: 2}
		items, next, err := list(p)
		if err != nil {
			t.Fatalf("%s(cursor %q, limit 2): %v", what, cursor, err)
		}
		again, nextAgain, err := list(p)
		if err != nil {
			t.Fatalf("%s(cursor %q, limit 2) again: %v", what, cursor, err)
		}
		if next != nextAgain || len(again) != len(items) {
			t.Fatalf("%s: the same page twice: %d items then %d, next %q then %q", what, len(items), len(again), next, nextAgain)
		}
		for i := range items {
			if key(items[i]) != key(again[i]) {
				t.Fatalf("%s: the same page twice: item %d %q then %q", what, i, key(items[i]), key(again[i]))
			}
		}
		want := keys[len(got):min(len(got)+2, len(keys))]
		if len(items) < len(want) {
			t.Fatalf("%s(cursor %q, limit 2): %d items, want at least %d (%v)", what, cursor, len(items), len(want), want)
		}
		for i, k := range want {
			if key(items[i]) != k {
				t.Fatalf("%s(cursor %q, limit 2): item %d is %q, want %q", what, cursor, i, key(items[i]), k)
			}
			got = append(got, items[i])
		}
		if len(got) < len(keys) {
			if wantNext := storage.EncodeCursor(want[len(want)-1]); next != wantNext {
				t.Fatalf("%s(cursor %q, limit 2): next cursor %q, want %q", what, cursor, next, wantNext)
			}
		}
		cursor = next
	}
	return got
}

// wantLastPageFull asserts that the page after cursor of exactly the
// len(rest) items listed after it is rest and carries no next cursor.
func wantLastPageFull[T any](t testing.TB, what string, list func(storage.Page) ([]T, string, error), key func(T) string, cursor string, rest []T) {
	t.Helper()
	if len(rest) > storage.MaxPageLimit {
		return
	}
	items, next, err := list(storage.Page{Cursor: cursor, Limit: len(rest)})
	if err != nil {
		t.Fatalf("%s(cursor %q, limit %d): %v", what, cursor, len(rest), err)
	}
	if len(items) != len(rest) || key(items[len(items)-1]) != key(rest[len(rest)-1]) {
		t.Fatalf("%s(cursor %q, limit %d): %d items, want the %d listed before", what, cursor, len(rest), len(items), len(rest))
	}
	if next != "" {
		t.Errorf("%s: a full page that ends the listing has next cursor %q, want \"\"", what, next)
	}
}

// wantListing checks a listing on the suite's own five items, whose keys
// share prefix and sort in the order given: in the largest pages they
// appear together and in order; in pages of 2 from just before them (see
// wantOwnPages); from the middle of them to the end of the listing, with a
// last page exactly full; and a malformed cursor is ErrBadCursor. check
// compares the i-th of them as listed with what the test stored.
func wantListing[T any](t testing.TB, what string, list func(storage.Page) ([]T, string, error), key func(T) string, prefix string, keys []string, check func(i int, got *T)) {
	t.Helper()
	all := listPages(t, what, list, key, "", 0)
	at := slices.IndexFunc(all, func(it T) bool { return key(it) == keys[0] })
	if at < 0 || at+len(keys) > len(all) {
		t.Fatalf("%s: %s not listed among %d", what, keys[0], len(all))
	}
	for i := range keys {
		check(i, &all[at+i])
	}
	for i, got := range wantOwnPages(t, what, list, key, prefix, keys) {
		check(i, &got)
	}
	rest := listPages(t, what, list, key, storage.EncodeCursor(keys[2]), 3)
	if len(rest) < 2 || key(rest[0]) != keys[3] || key(rest[1]) != keys[4] {
		t.Fatalf("%s after %s: does not start with %s, %s", what, keys[2], keys[3], keys[4])
	}
	wantLastPageFull(t, what, list, key, storage.EncodeCursor(keys[2]), rest)
	if _, _, err := list(storage.Page{Cursor: "!!not a cursor!!", Limit: 2}); !errors.Is(err, storage.ErrBadCursor) {
		t.Errorf("%s(bad cursor): %v, want ErrBadCursor", what, err)
	}
}

// testSCEPChallengeList: challenges list in ID order, page by page.
func testSCEPChallengeList(t *testing.T, s storage.Store) {
	ctx := context.Background()
	prefix := newChallengeID() + "-"
	var want []*storage.SCEPChallenge
	var ids []string
	for i := range 5 {
		c := NewSCEPChallenge(fmt.Sprintf("%s%02d", prefix, i))
		c.CreatedAt = scepTime(time.Duration(i) * time.Millisecond)
		createChallenge(t, s, c)
		want = append(want, c)
		ids = append(ids, c.ID)
	}
	// One revoked and one used, so listed states are checked too.
	if err := s.RevokeSCEPChallenge(ctx, want[1].ID, want[1].CreatedAt); err != nil {
		t.Fatalf("RevokeSCEPChallenge: %v", err)
	}
	want[1].RevokedAt = want[1].CreatedAt
	cert := NewSCEPCert(serialAt(newSerialPrefix(), 0), scepTime(time.Second))
	if err := s.StoreSCEPCert(ctx, cert, want[3].Hash); err != nil {
		t.Fatalf("StoreSCEPCert(challenge %s): %v", want[3].ID, err)
	}
	want[3].UsedAt = cert.IssuedAt

	wantListing(t, "ListSCEPChallenges",
		func(p storage.Page) ([]storage.SCEPChallenge, string, error) { return s.ListSCEPChallenges(ctx, p) },
		func(c storage.SCEPChallenge) string { return c.ID },
		prefix, ids, func(i int, got *storage.SCEPChallenge) { wantSCEPChallenge(t, got, want[i]) })
}

// testSCEPPurgeChallenges: a purge deletes the unused challenges that
// expired before its cut-off, revoked or not, at most limit of them; the
// used ones (by a certificate, or created used), the one expiring exactly
// at the cut-off and the live one stay. The store is shared, so this
// test's expired challenges are from 2001, a cut-off then touches no other
// test's rows (those expire around now; a run of this test before purged
// its own), and only its own rows are checked by ID.
func testSCEPPurgeChallenges(t *testing.T, s storage.Store) {
	ctx := context.Background()
	in2001 := func(month time.Month, day int) time.Time {
		return time.Date(2001, month, day, 12, 0, 0, 0, scepZone)
	}
	cutoff := in2001(6, 1)
	prefix := newChallengeID() + "-"
	challenge := func(name string, expires time.Time) *storage.SCEPChallenge {
		c := NewSCEPChallenge(prefix + name)
		c.CreatedAt = in2001(1, 1)
		c.ExpiresAt = expires
		return c
	}
	expired := []*storage.SCEPChallenge{
		challenge("expired-1", in2001(1, 10)),
		challenge("expired-2", in2001(2, 10)),
		challenge("expired-3", in2001(3, 10)),
		challenge("expired-revoked", in2001(2, 20)),
	}
	usedByCert := challenge("used-by-cert", in2001(3, 1))
	createdUsed := challenge("used-at-creation", in2001(1, 3))
	createdUsed.UsedAt = in2001(1, 2)
	atCutoff := challenge("expiring-at-cutoff", cutoff)
	live := NewSCEPChallenge(prefix + "live")
	kept := []*storage.SCEPChallenge{usedByCert, createdUsed, atCutoff, live}
	for _, c := range append(slices.Clone(expired), kept...) {
		createChallenge(t, s, c)
	}
	revoked := expired[3]
	if err := s.RevokeSCEPChallenge(ctx, revoked.ID, in2001(1, 5)); err != nil {
		t.Fatalf("RevokeSCEPChallenge: %v", err)
	}
	revoked.RevokedAt = in2001(1, 5)
	cert := NewSCEPCert(serialAt(newSerialPrefix(), 0), in2001(1, 15))
	if err := s.StoreSCEPCert(ctx, cert, usedByCert.Hash); err != nil {
		t.Fatalf("StoreSCEPCert(challenge %s, issued in 2001): %v", usedByCert.ID, err)
	}
	usedByCert.UsedAt = cert.IssuedAt

	// gone counts the expired unused ones purged, checking the others are
	// as they were.
	gone := func(when string) int {
		t.Helper()
		n := 0
		for _, c := range expired {
			got, err := s.RetrieveSCEPChallenge(ctx, c.ID)
			switch {
			case errors.Is(err, storage.ErrNotFound):
				n++
			case err != nil:
				t.Fatalf("%s: RetrieveSCEPChallenge(%s): %v", when, c.ID, err)
			default:
				wantSCEPChallenge(t, got, c)
			}
		}
		for _, c := range kept {
			got, err := s.RetrieveSCEPChallenge(ctx, c.ID)
			if err != nil {
				t.Fatalf("%s: RetrieveSCEPChallenge(%s), a challenge to keep: %v", when, c.ID, err)
			}
			wantSCEPChallenge(t, got, c)
		}
		return n
	}
	purge := func(limit int) int {
		t.Helper()
		n, err := s.PurgeSCEPChallenges(ctx, cutoff, limit)
		if err != nil {
			t.Fatalf("PurgeSCEPChallenges(%v, %d): %v", cutoff, limit, err)
		}
		if n < 0 || n > limit {
			t.Fatalf("PurgeSCEPChallenges(%v, %d) = %d, want 0 to %d", cutoff, limit, n, limit)
		}
		return n
	}

	if n := purge(0); n != 0 {
		t.Errorf("PurgeSCEPChallenges(limit 0) = %d, want 0", n)
	}
	if n := gone("after a purge of limit 0"); n != 0 {
		t.Errorf("a purge of limit 0 deleted %d challenges", n)
	}

	// Ours are at least 4 to purge, so a limit of 1 deletes exactly one
	// (ours, unless another run's leftover expired earlier).
	if n := purge(1); n != 1 {
		t.Errorf("PurgeSCEPChallenges(limit 1) with %d to purge = %d, want 1", len(expired), n)
	}
	if n := gone("after a purge of limit 1"); n > 1 {
		t.Errorf("a purge of limit 1 deleted %d of ours", n)
	}

	before := gone("before the full purge")
	const limit = 1000
	if n := purge(limit); n < len(expired)-before {
		t.Errorf("PurgeSCEPChallenges(limit %d) = %d, want at least the %d of ours left", limit, n, len(expired)-before)
	}
	if n := gone("after the full purge"); n != len(expired) {
		t.Errorf("after a purge of limit %d: %d of the %d expired unused challenges deleted", limit, n, len(expired))
	}

	// Nothing else goes however often it runs, and the listing no longer
	// has the purged ones.
	purge(limit)
	gone("after a second full purge")
	keptIDs := make([]string, 0, len(kept))
	for _, c := range kept {
		keptIDs = append(keptIDs, c.ID)
	}
	slices.Sort(keptIDs)
	list := func(p storage.Page) ([]storage.SCEPChallenge, string, error) { return s.ListSCEPChallenges(ctx, p) }
	wantOwnPages(t, "ListSCEPChallenges", list, func(c storage.SCEPChallenge) string { return c.ID }, prefix, keptIDs)
	wantSCEPCert(t, retrieveSCEPCert(t, s, cert.Serial), cert)

	// A purged challenge issues nothing, and its ID and hash are free:
	// created again (live now), it is a challenge like any other.
	again := expired[0]
	if err := s.StoreSCEPCert(ctx, NewSCEPCert(serialAt(newSerialPrefix(), 0), in2001(1, 5)), again.Hash); !errors.Is(err, storage.ErrChallengeUnusable) {
		t.Errorf("StoreSCEPCert(purged challenge): %v, want ErrChallengeUnusable", err)
	}
	again.CreatedAt, again.ExpiresAt, again.RevokedAt = scepTime(0), scepTime(time.Hour), time.Time{}
	createChallenge(t, s, again)
	wantSCEPChallenge(t, retrieveChallenge(t, s, again.ID), again)
}

// testSCEPCertStatic: a certificate issued for the static challenge is
// stored with every field, at the size limits too; unknown serials are
// ErrNotFound.
func testSCEPCertStatic(t *testing.T, s storage.Store) {
	ctx := context.Background()
	prefix := newSerialPrefix()
	c := NewSCEPCert(serialAt(prefix, 1), scepTime(0))
	if err := s.StoreSCEPCert(ctx, c, ""); err != nil {
		t.Fatalf("StoreSCEPCert(static): %v", err)
	}
	if c.ChallengeID != "" {
		t.Errorf("StoreSCEPCert(static) set ChallengeID %q", c.ChallengeID)
	}
	wantSCEPCert(t, retrieveSCEPCert(t, s, c.Serial), c)
	wantNoSCEPCert(t, s, serialAt(prefix, 2))

	// A 16 KiB DER and a 1024-byte multi-byte Subject.
	large := newLargeSCEPCert(serialAt(prefix, 3), scepTime(time.Millisecond), 16<<10)
	large.Subject = "CN=" + fill("Grüße ✓ ", 1024-len("CN="))
	if len(large.Subject) != 1024 || len(large.DER) != 16<<10 {
		t.Fatalf("test bug: Subject %d bytes, DER %d bytes", len(large.Subject), len(large.DER))
	}
	if err := s.StoreSCEPCert(ctx, large, ""); err != nil {
		t.Fatalf("StoreSCEPCert(16 KiB DER, 1024-byte Subject): %v", err)
	}
	wantSCEPCert(t, retrieveSCEPCert(t, s, large.Serial), large)
}

// testSCEPCertOneTime: a one-time challenge issues one certificate, is
// then used at its IssuedAt, and issues no other.
func testSCEPCertOneTime(t *testing.T, s storage.Store) {
	ctx := context.Background()
	ch := NewSCEPChallenge(newChallengeID())
	createChallenge(t, s, ch)
	prefix := newSerialPrefix()

	c := NewSCEPCert(serialAt(prefix, 1), scepTime(time.Second))
	if err := s.StoreSCEPCert(ctx, c, ch.Hash); err != nil {
		t.Fatalf("StoreSCEPCert(challenge): %v", err)
	}
	if c.ChallengeID != ch.ID {
		t.Errorf("StoreSCEPCert(challenge): c.ChallengeID = %q, want %q", c.ChallengeID, ch.ID)
	}
	want := *c
	want.ChallengeID = ch.ID
	wantSCEPCert(t, retrieveSCEPCert(t, s, c.Serial), &want)
	ch.UsedAt = c.IssuedAt
	wantSCEPChallenge(t, retrieveChallenge(t, s, ch.ID), ch)

	second := NewSCEPCert(serialAt(prefix, 2), scepTime(2*time.Second))
	if err := s.StoreSCEPCert(ctx, second, ch.Hash); !errors.Is(err, storage.ErrChallengeUnusable) {
		t.Fatalf("StoreSCEPCert(used challenge): %v, want ErrChallengeUnusable", err)
	}
	wantNoSCEPCert(t, s, second.Serial)
	wantSCEPChallenge(t, retrieveChallenge(t, s, ch.ID), ch)
	wantSCEPCert(t, retrieveSCEPCert(t, s, c.Serial), &want)
}

// testSCEPCertUnusableChallenge: expired, revoked and unknown challenges
// issue nothing and are left as they were.
func testSCEPCertUnusableChallenge(t *testing.T, s storage.Store) {
	ctx := context.Background()
	prefix := newSerialPrefix()
	issuedAt := scepTime(time.Minute)

	expired := NewSCEPChallenge(newChallengeID())
	expired.ExpiresAt = issuedAt // not after IssuedAt: expired
	earlier := NewSCEPChallenge(newChallengeID())
	earlier.ExpiresAt = issuedAt.Add(-time.Second)
	revoked := NewSCEPChallenge(newChallengeID())
	edge := NewSCEPChallenge(newChallengeID())
	edge.ExpiresAt = issuedAt.Add(time.Millisecond) // the last usable moment
	for _, c := range []*storage.SCEPChallenge{expired, earlier, revoked, edge} {
		createChallenge(t, s, c)
	}
	revokedAt := scepTime(0)
	if err := s.RevokeSCEPChallenge(ctx, revoked.ID, revokedAt); err != nil {
		t.Fatalf("RevokeSCEPChallenge: %v", err)
	}
	revoked.RevokedAt = revokedAt

	for i, tc := range []struct {
		name string
		hash string
		ch   *storage.SCEPChallenge
	}{
		{"expiring at IssuedAt", expired.Hash, expired},
		{"expired before IssuedAt", earlier.Hash, earlier},
		{"revoked", revoked.Hash, revoked},
		{"unknown", RandomCertHash(), nil},
	} {
		c := NewSCEPCert(serialAt(prefix, i), issuedAt)
		if err := s.StoreSCEPCert(ctx, c, tc.hash); !errors.Is(err, storage.ErrChallengeUnusable) {
			t.Errorf("StoreSCEPCert(%s challenge): %v, want ErrChallengeUnusable", tc.name, err)
		}
		wantNoSCEPCert(t, s, c.Serial)
		if tc.ch != nil {
			wantSCEPChallenge(t, retrieveChallenge(t, s, tc.ch.ID), tc.ch)
		}
	}

	c := NewSCEPCert(serialAt(prefix, 10), issuedAt)
	if err := s.StoreSCEPCert(ctx, c, edge.Hash); err != nil {
		t.Fatalf("StoreSCEPCert(challenge expiring 1 ms after IssuedAt): %v", err)
	}
	edge.UsedAt = issuedAt
	wantSCEPChallenge(t, retrieveChallenge(t, s, edge.ID), edge)
}

// testSCEPCertDuplicateSerial: a taken serial is ErrExists, keeps the
// stored certificate, and leaves the challenge it was given usable.
func testSCEPCertDuplicateSerial(t *testing.T, s storage.Store) {
	ctx := context.Background()
	serial := serialAt(newSerialPrefix(), 0)
	c := NewSCEPCert(serial, scepTime(0))
	if err := s.StoreSCEPCert(ctx, c, ""); err != nil {
		t.Fatalf("StoreSCEPCert: %v", err)
	}
	if err := s.StoreSCEPCert(ctx, NewSCEPCert(serial, scepTime(time.Second)), ""); !errors.Is(err, storage.ErrExists) {
		t.Errorf("StoreSCEPCert(taken serial, static): %v, want ErrExists", err)
	}
	wantSCEPCert(t, retrieveSCEPCert(t, s, serial), c)

	ch := NewSCEPChallenge(newChallengeID())
	createChallenge(t, s, ch)
	if err := s.StoreSCEPCert(ctx, NewSCEPCert(serial, scepTime(time.Second)), ch.Hash); !errors.Is(err, storage.ErrExists) {
		t.Errorf("StoreSCEPCert(taken serial, challenge): %v, want ErrExists", err)
	}
	wantSCEPCert(t, retrieveSCEPCert(t, s, serial), c)
	wantSCEPChallenge(t, retrieveChallenge(t, s, ch.ID), ch)

	fresh := NewSCEPCert(serialAt(newSerialPrefix(), 0), scepTime(2*time.Second))
	if err := s.StoreSCEPCert(ctx, fresh, ch.Hash); err != nil {
		t.Fatalf("StoreSCEPCert(challenge left usable by a refused store): %v", err)
	}
}

// testSCEPCertChallengeRace: of 8 concurrent uses of one challenge
// exactly one issues a certificate.
func testSCEPCertChallengeRace(t *testing.T, s storage.Store) {
	ctx := context.Background()
	ch := NewSCEPChallenge(newChallengeID())
	createChallenge(t, s, ch)
	prefix := newSerialPrefix()

	const n = 8
	certs := make([]*storage.SCEPCert, n)
	for i := range certs {
		certs[i] = NewSCEPCert(serialAt(prefix, i), scepTime(time.Duration(i)*time.Millisecond))
	}
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range certs {
		wg.Go(func() {
			<-start
			errs[i] = s.StoreSCEPCert(ctx, certs[i], ch.Hash)
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("StoreSCEPCert %d and %d both used challenge %s", winner, i, ch.ID)
		case err == nil:
			winner = i
		case !errors.Is(err, storage.ErrChallengeUnusable):
			t.Errorf("StoreSCEPCert %d: %v, want nil or ErrChallengeUnusable", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no StoreSCEPCert of %d used challenge %s: %v", n, ch.ID, errs)
	}
	for i, c := range certs {
		if i != winner {
			wantNoSCEPCert(t, s, c.Serial)
			continue
		}
		want := *c
		want.ChallengeID = ch.ID
		wantSCEPCert(t, retrieveSCEPCert(t, s, c.Serial), &want)
	}
	ch.UsedAt = certs[winner].IssuedAt
	wantSCEPChallenge(t, retrieveChallenge(t, s, ch.ID), ch)
}

// testSCEPCertList: certificates list in serial order, page by page.
func testSCEPCertList(t *testing.T, s storage.Store) {
	ctx := context.Background()
	prefix := newSerialPrefix()
	ch := NewSCEPChallenge(newChallengeID())
	createChallenge(t, s, ch)
	var want []*storage.SCEPCert
	var serials []string
	// Stored out of serial order: the listing sorts.
	for _, i := range []int{3, 0, 4, 1, 2} {
		c := NewSCEPCert(serialAt(prefix, i), scepTime(time.Duration(i)*time.Millisecond))
		hash := ""
		if i == 2 {
			hash = ch.Hash
		}
		if err := s.StoreSCEPCert(ctx, c, hash); err != nil {
			t.Fatalf("StoreSCEPCert(%s): %v", c.Serial, err)
		}
	}
	for i := range 5 {
		c := retrieveSCEPCert(t, s, serialAt(prefix, i))
		want = append(want, c)
		serials = append(serials, c.Serial)
	}
	if want[2].ChallengeID != ch.ID {
		t.Fatalf("cert %s: ChallengeID %q, want %q", want[2].Serial, want[2].ChallengeID, ch.ID)
	}

	wantListing(t, "ListSCEPCerts",
		func(p storage.Page) ([]storage.SCEPCert, string, error) { return s.ListSCEPCerts(ctx, p) },
		func(c storage.SCEPCert) string { return c.Serial },
		prefix, serials, func(i int, got *storage.SCEPCert) { wantSCEPCert(t, got, want[i]) })
}
