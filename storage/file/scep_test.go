package file

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// newChallenge returns a fresh challenge valid for an hour from now.
func newChallenge(id string, now time.Time) *storage.SCEPChallenge {
	sum := sha256.Sum256(storagetest.RandomBytes(16))
	return &storage.SCEPChallenge{
		ID:        id,
		Hash:      hex.EncodeToString(sum[:]),
		Note:      "test " + id,
		CreatedAt: now,
		ExpiresAt: now.Add(time.Hour),
	}
}

// newSCEPCert returns a certificate record issued at now.
func newSCEPCert(serial string, now time.Time) *storage.SCEPCert {
	return &storage.SCEPCert{
		Serial:    serial,
		Subject:   "CN=" + serial,
		CertHash:  storagetest.RandomCertHash(),
		NotBefore: now.Add(-time.Minute),
		NotAfter:  now.Add(24 * time.Hour),
		IssuedAt:  now,
		DER:       storagetest.RandomBytes(300),
	}
}

// TestSCEPChallengeCrashBetweenWrites: a challenge reserved for a
// certificate that was never written (a crash between StoreSCEPCert's two
// writes) reads unused, before and after a restart, and still issues one
// certificate — and only one.
func TestSCEPChallengeCrashBetweenWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Now().UTC().Truncate(time.Millisecond)
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := newChallenge("01-crash", now)
	if err := s.CreateSCEPChallenge(ctx, c); err != nil {
		t.Fatal(err)
	}
	// What StoreSCEPCert's first write leaves behind.
	rec, ok, err := s.readChallenge(c.ID)
	if err != nil || !ok {
		t.Fatalf("reading challenge: %v %v", ok, err)
	}
	rec.UsedAt, rec.CertSerial = now, "00000000000000000000000000000001"
	if err := s.writeJSON(s.scepChallengePath(c.ID), rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.RetrieveSCEPChallenge(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.UsedAt.IsZero() {
		t.Fatalf("reserved challenge without its certificate: UsedAt %v, want zero", got.UsedAt)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	got, err = s.RetrieveSCEPChallenge(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.UsedAt.IsZero() {
		t.Fatalf("after restart: UsedAt %v, want zero", got.UsedAt)
	}
	// The reserved serial is stored without the challenge: it does not
	// use it.
	other := newSCEPCert(rec.CertSerial, now)
	if err := s.StoreSCEPCert(ctx, other, ""); err != nil {
		t.Fatal(err)
	}
	if got, err = s.RetrieveSCEPChallenge(ctx, c.ID); err != nil || !got.UsedAt.IsZero() {
		t.Fatalf("challenge after its reserved serial was stored without it: %+v, %v", got, err)
	}
	cert := newSCEPCert("00000000000000000000000000000002", now)
	if err := s.StoreSCEPCert(ctx, cert, c.Hash); err != nil {
		t.Fatalf("using the challenge: %v", err)
	}
	if cert.ChallengeID != c.ID {
		t.Errorf("ChallengeID = %q, want %q", cert.ChallengeID, c.ID)
	}
	if got, err = s.RetrieveSCEPChallenge(ctx, c.ID); err != nil || !got.UsedAt.Equal(now) {
		t.Fatalf("used challenge: %+v, %v; want UsedAt %v", got, err, now)
	}
	again := newSCEPCert("00000000000000000000000000000003", now)
	if err := s.StoreSCEPCert(ctx, again, c.Hash); !errors.Is(err, storage.ErrChallengeUnusable) {
		t.Fatalf("second use: %v, want ErrChallengeUnusable", err)
	}
	if _, err := s.RetrieveSCEPCert(ctx, again.Serial); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("refused certificate: %v, want ErrNotFound", err)
	}
}

// TestSCEPReopen: the SCEP indexes are rebuilt at start — challenges by
// hash and in ID order, certificates in serial order, serials whose file
// names are escaped or hashed included.
func TestSCEPReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Now().UTC().Truncate(time.Millisecond)
	s, err := New(dir, WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	var challenges []*storage.SCEPChallenge
	for i := range 5 {
		c := newChallenge(fmt.Sprintf("%02d-ch", i), now)
		if err := s.CreateSCEPChallenge(ctx, c); err != nil {
			t.Fatal(err)
		}
		challenges = append(challenges, c)
	}
	serials := []string{"0a", "0b/../X", strings.Repeat("f", 300)}
	for _, serial := range serials {
		if err := s.StoreSCEPCert(ctx, newSCEPCert(serial, now), ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.StoreSCEPCert(ctx, newSCEPCert("0c", now), challenges[1].Hash); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	if err := s.CreateSCEPChallenge(ctx, newChallenge("99-other", now)); err != nil {
		t.Fatal(err)
	}
	dup := newChallenge("98-dup", now)
	dup.Hash = challenges[0].Hash
	if err := s.CreateSCEPChallenge(ctx, dup); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("challenge with a taken hash after restart: %v, want ErrExists", err)
	}
	if err := s.CreateSCEPChallenge(ctx, newChallenge(challenges[2].ID, now)); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("challenge with a taken ID after restart: %v, want ErrExists", err)
	}
	var ids []string
	cursor := ""
	for {
		page, next, err := s.ListSCEPChallenges(ctx, storage.Page{Cursor: cursor, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page {
			ids = append(ids, c.ID)
			if used := !c.UsedAt.IsZero(); used != (c.ID == challenges[1].ID) {
				t.Errorf("challenge %s used = %v", c.ID, used)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if want := "00-ch 01-ch 02-ch 03-ch 04-ch 99-other"; strings.Join(ids, " ") != want {
		t.Errorf("challenges after restart: %v, want %s", ids, want)
	}
	if err := s.StoreSCEPCert(ctx, newSCEPCert("0d", now), challenges[1].Hash); !errors.Is(err, storage.ErrChallengeUnusable) {
		t.Fatalf("challenge used before restart: %v, want ErrChallengeUnusable", err)
	}
	if err := s.StoreSCEPCert(ctx, newSCEPCert("0d", now), challenges[3].Hash); err != nil {
		t.Fatalf("unused challenge after restart: %v", err)
	}
	page, next, err := s.ListSCEPCerts(ctx, storage.Page{})
	if err != nil || next != "" {
		t.Fatalf("listing certificates: next %q, %v", next, err)
	}
	var got []string
	for _, c := range page {
		got = append(got, c.Serial)
	}
	want := []string{"0a", "0b/../X", "0c", "0d", serials[2]}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("certificates after restart: %v, want %v", got, want)
	}
	if err := s.StoreSCEPCert(ctx, newSCEPCert(serials[2], now), ""); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("stored serial again: %v, want ErrExists", err)
	}
}

func TestParseFileName(t *testing.T) {
	for _, s := range []string{"a", "0123abcdef", "A:b/../c", "ünï", "_x", strings.Repeat("z", maxNameLen)} {
		got, ok := parseFileName(fileName(s))
		if !ok || got != s {
			t.Errorf("parseFileName(fileName(%q)) = %q, %v", s, got, ok)
		}
	}
	for _, name := range []string{fileName(""), fileName(strings.Repeat("Z", 100)), "_", "_4", "_zz"} {
		if got, ok := parseFileName(name); ok {
			t.Errorf("parseFileName(%q) = %q, true; want not ok", name, got)
		}
	}
}

// TestSCEPFiles: the layout is the documented one.
func TestSCEPFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	now := time.Now().UTC()
	c := newChallenge("id-1", now)
	if err := s.CreateSCEPChallenge(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreSCEPCert(ctx, newSCEPCert("0e", now), c.Hash); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"scep/challenges/id-1.json", "scep/certs/0e.json"} {
		if ok, err := exists(filepath.Join(dir, path)); err != nil || !ok {
			t.Errorf("%s: exists %v, %v", path, ok, err)
		}
	}
}
