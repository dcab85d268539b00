package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/picomdm/picomdm/storage"
)

// The built-in SCEP CA's storage (storage.SCEPStore) both SQL backends
// share: the scep_ca row, the scep_challenges and scep_certs tables'
// columns, and their keyset listings (KeysetPage, by primary key).

// SCEPCAName is the name (primary key) of the one scep_ca row.
const SCEPCAName = "default"

// RetrieveSCEPCA implements storage.SCEPStore.RetrieveSCEPCA: row is the
// CA's cert_pem, key_pem. A key that does not open with sealer is an
// error (wrapping keyseal.ErrNoKey or keyseal.ErrWrongKey).
func RetrieveSCEPCA(row RowScanner, sealer storage.KeySealer) (certPEM, keyPEM []byte, err error) {
	if err := row.Scan(&certPEM, &keyPEM); err != nil {
		return nil, nil, notFound(err, "retrieving SCEP CA")
	}
	keyPEM, err = sealer.Open(storage.SCEPCAKeyName, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("retrieving SCEP CA: opening its key: %w", err)
	}
	return certPEM, keyPEM, nil
}

// SCEPChallengeColumns are the scep_challenges columns scanSCEPChallenge
// reads, in order.
const SCEPChallengeColumns = `id, hash, note, created_at, expires_at, used_at, revoked_at`

// scanSCEPChallenge reads one row of SCEPChallengeColumns.
func scanSCEPChallenge(sc RowScanner) (storage.SCEPChallenge, error) {
	var c storage.SCEPChallenge
	var used, revoked sql.NullTime
	if err := sc.Scan(&c.ID, &c.Hash, &c.Note, &c.CreatedAt, &c.ExpiresAt, &used, &revoked); err != nil {
		return c, err
	}
	c.CreatedAt, c.ExpiresAt = c.CreatedAt.UTC(), c.ExpiresAt.UTC()
	c.UsedAt, c.RevokedAt = UTC(used), UTC(revoked)
	return c, nil
}

// RetrieveSCEPChallenge implements storage.SCEPStore.RetrieveSCEPChallenge:
// row is challenge id's SCEPChallengeColumns.
func RetrieveSCEPChallenge(row RowScanner, id string) (*storage.SCEPChallenge, error) {
	return retrieve(row, scanSCEPChallenge, fmt.Sprintf("retrieving SCEP challenge %q", id))
}

// ListSCEPChallenges implements storage.SCEPStore.ListSCEPChallenges for
// the cursor's ID after: query selects SCEPChallengeColumns in ID order
// after its first argument, its second the row limit.
func ListSCEPChallenges(ctx context.Context, db Querier, query, after string, limit int) ([]storage.SCEPChallenge, string, error) {
	return KeysetPage(ctx, db, "listing SCEP challenges", limit, scanSCEPChallenge,
		func(c *storage.SCEPChallenge) string { return c.ID }, query, after, limit+1)
}

// SCEPCertColumns are the scep_certs columns scanSCEPCert reads, in
// order.
const SCEPCertColumns = `serial, subject, cert_hash, not_before, not_after, issued_at, challenge_id, der`

// scanSCEPCert reads one row of SCEPCertColumns.
func scanSCEPCert(sc RowScanner) (storage.SCEPCert, error) {
	var c storage.SCEPCert
	var challengeID sql.NullString
	if err := sc.Scan(&c.Serial, &c.Subject, &c.CertHash, &c.NotBefore, &c.NotAfter, &c.IssuedAt, &challengeID, &c.DER); err != nil {
		return c, err
	}
	c.NotBefore, c.NotAfter, c.IssuedAt = c.NotBefore.UTC(), c.NotAfter.UTC(), c.IssuedAt.UTC()
	c.ChallengeID = challengeID.String
	return c, nil
}

// RetrieveSCEPCert implements storage.SCEPStore.RetrieveSCEPCert: row is
// certificate serial's SCEPCertColumns.
func RetrieveSCEPCert(row RowScanner, serial string) (*storage.SCEPCert, error) {
	return retrieve(row, scanSCEPCert, fmt.Sprintf("retrieving SCEP cert %q", serial))
}

// ListSCEPCerts implements storage.SCEPStore.ListSCEPCerts for the
// cursor's serial after: query selects SCEPCertColumns in serial order
// after its first argument, its second the row limit.
func ListSCEPCerts(ctx context.Context, db Querier, query, after string, limit int) ([]storage.SCEPCert, string, error) {
	return KeysetPage(ctx, db, "listing SCEP certs", limit, scanSCEPCert,
		func(c *storage.SCEPCert) string { return c.Serial }, query, after, limit+1)
}
