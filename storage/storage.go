// Package storage defines the small interfaces PicoMDM keeps its state
// behind, and the sentinel errors every backend returns. Each backend lives
// in its own sub-package (file, inmem, mysql, pgsql) and passes the shared
// conformance suite in storage/storagetest.
//
// Every replica of the server is stateless: whatever one replica writes
// through these interfaces, every other replica reads.
package storage

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/picomdm/picomdm/mdm"
)

// Sentinel errors backends wrap; callers branch on them with errors.Is.
var (
	// ErrNotFound says the thing asked for does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrCommandExists says a command with that CommandUUID was already
	// enqueued.
	ErrCommandExists = errors.New("storage: command UUID already exists")
	// ErrCertHashInUse says an identity certificate is already associated
	// with another enrollment, so an Authenticate carrying it is refused.
	ErrCertHashInUse = errors.New("storage: certificate is associated with another enrollment")
)

// CheckinStore stores the enrollment life cycle driven by check-in messages.
type CheckinStore interface {
	// StoreAuthenticate stores the device (identity certificate from
	// r.Certificate, serial number, raw message) and resets it for a fresh
	// enrollment, atomically: its bootstrap token is cleared, the pending
	// queues of its device and user channels are cleared, and those
	// enrollments are disabled until their next TokenUpdate.
	//
	// When r.Context carries a CertAssociation (WithCertAssociation), the
	// same atomic operation makes it: if another enrollment has the hash
	// it fails with an error wrapping ErrCertHashInUse and stores nothing;
	// otherwise the hash becomes the device's one associated certificate
	// (a re-enrollment retires the earlier ones).
	StoreAuthenticate(r *mdm.Request, msg *mdm.Authenticate) error
	// StoreTokenUpdate stores the channel's push token, push magic, topic
	// and (if present) unlock token, creates or re-enables the enrollment,
	// and increments its token-update tally (1 on the first TokenUpdate
	// after the enrollment was created, re-enrolled or checked out, as in
	// NanoMDM, so webhook consumers can tell a fresh enrollment).
	// An existing enrollment's type and parent never change.
	StoreTokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error
	// StoreUserAuthenticate stores a UserAuthenticate message (both the
	// first and the DigestResponse one).
	StoreUserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) error
	// Disable disables r's enrollment and resets its token-update tally;
	// for a device channel, its user channels too. Used for CheckOut.
	Disable(r *mdm.Request) error
}

// TokenUpdateTallyStore reads the token-update tally of an enrollment.
type TokenUpdateTallyStore interface {
	// RetrieveTokenUpdateTally returns how many TokenUpdates enrollment id
	// has sent since it was created, re-enrolled or checked out;
	// ErrNotFound for an unknown id.
	RetrieveTokenUpdateTally(ctx context.Context, id string) (int, error)
}

// BootstrapTokenStore keeps a device's escrowed bootstrap token.
type BootstrapTokenStore interface {
	// StoreBootstrapToken stores the token of r's device channel.
	StoreBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error
	// RetrieveBootstrapToken returns the token of r's device channel, or
	// nil (and no error) if none is stored.
	RetrieveBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error)
}

// CommandQueueStore is the per-enrollment command queue a device drains.
type CommandQueueStore interface {
	// StoreCommandReport records a device's answer. Idle records no
	// result, but ends the NotNow deferral: commands the enrollment
	// answered NotNow become eligible again. NotNow keeps the command
	// pending (counting the NotNow) but deferred until the next Idle. Any
	// other non-empty Status is final and takes the command out of the
	// pending set. A report for an unknown or already-final command is a
	// no-op, not an error (the first final answer wins).
	StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error
	// RetrieveNextCommand returns the oldest pending command of r's
	// enrollment (strict enqueue order) that is not deferred by a NotNow
	// since the enrollment's last Idle; nil (and no error) when there is
	// none. So right after a NotNow the NotNow'd commands are skipped for
	// the rest of that exchange, and the next Idle makes them eligible.
	RetrieveNextCommand(r *mdm.Request) (*mdm.Command, error)
}

// CommandReportAndNexter is an optional CommandQueueStore extension for
// backends that can do a device request's whole queue work — store the
// report, find the next command — in fewer storage round trips than the
// two calls take (PostgreSQL in one statement, MySQL in one multi-statement
// request). Callers use it through StoreReportAndRetrieveNext.
type CommandReportAndNexter interface {
	// StoreCommandReportAndRetrieveNext has exactly the outcome of
	// StoreCommandReport(r, report) followed by RetrieveNextCommand(r):
	// the same NotNow deferral, FIFO order and at-least-once redelivery;
	// a report for an unknown or already-final command is harmless; an
	// Idle stores no result. The report is durably stored before the
	// next command is returned, and an error means no command is handed
	// out (though the report may have been stored, as with an error from
	// RetrieveNextCommand after StoreCommandReport).
	//
	// When r.Context carries a PendingEvent (the report's webhook event),
	// a store that can writes it in the same operation as the report and
	// marks it stored; one that cannot leaves it unmarked.
	StoreCommandReportAndRetrieveNext(r *mdm.Request, report *mdm.CommandResults) (*mdm.Command, error)
}

// StoreReportAndRetrieveNext stores report and returns r's next command
// (nil when there is none): through store's
// StoreCommandReportAndRetrieveNext when it implements
// CommandReportAndNexter, else with StoreCommandReport then
// RetrieveNextCommand.
func StoreReportAndRetrieveNext(store CommandQueueStore, r *mdm.Request, report *mdm.CommandResults) (*mdm.Command, error) {
	if s, ok := store.(CommandReportAndNexter); ok {
		return s.StoreCommandReportAndRetrieveNext(r, report)
	}
	return StoreReportThenRetrieveNext(store, r, report)
}

// StoreReportThenRetrieveNext is StoreReportAndRetrieveNext's fallback:
// StoreCommandReport, then RetrieveNextCommand, whatever store implements.
// Store wrappers whose wrapped store has no fast path use it to route both
// calls through their own methods.
func StoreReportThenRetrieveNext(store CommandQueueStore, r *mdm.Request, report *mdm.CommandResults) (*mdm.Command, error) {
	if err := store.StoreCommandReport(r, report); err != nil {
		return nil, fmt.Errorf("storing command report: %w", err)
	}
	cmd, err := store.RetrieveNextCommand(r)
	if err != nil {
		return nil, fmt.Errorf("retrieving next command: %w", err)
	}
	return cmd, nil
}

// CommandEnqueuer queues commands for enrollments.
type CommandEnqueuer interface {
	// EnqueueCommand stores cmd once and queues it for every id, as one
	// storage operation. It fails with ErrCommandExists if the CommandUUID
	// is already known. Ids that name no known enrollment are not queued
	// and come back in the map with an error wrapping ErrNotFound.
	EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (map[string]error, error)
}

// PushStore reads what APNs needs to wake enrollments.
type PushStore interface {
	// RetrievePushInfo returns the push info of every enabled enrollment
	// among ids, in one storage operation; ids that are unknown, disabled
	// or have no push token are absent from the map.
	RetrievePushInfo(ctx context.Context, ids []string) (map[string]*mdm.Push, error)
}

// PushCertStore keeps APNs push certificates, one per topic.
type PushCertStore interface {
	// StorePushCert stores a PEM certificate and key; the topic is taken
	// from the certificate. Replacing a topic's certificate changes its
	// stale token.
	StorePushCert(ctx context.Context, pemCert, pemKey []byte) error
	// RetrievePushCert returns the topic's certificate and a stale token
	// that changes whenever the certificate is replaced; ErrNotFound for an
	// unknown topic.
	RetrievePushCert(ctx context.Context, topic string) (cert *tls.Certificate, staleToken string, err error)
	// IsPushCertStale reports whether staleToken is no longer the topic's
	// current one.
	IsPushCertStale(ctx context.Context, topic, staleToken string) (bool, error)
	// RetrievePushCertInfos lists every stored topic with its
	// certificate's expiry, sorted by topic.
	RetrievePushCertInfos(ctx context.Context) ([]PushCertInfo, error)
}

// PushCertInfo describes a stored push certificate.
type PushCertInfo struct {
	Topic    string
	NotAfter time.Time
}

// CertAuthStore associates identity-certificate hashes (lower-case hex
// SHA-256 of the DER) with device-channel enrollment IDs.
type CertAuthStore interface {
	// HasCertHash reports whether hash is associated with any enrollment.
	HasCertHash(ctx context.Context, hash string) (bool, error)
	// EnrollmentHasCertHash reports whether enrollment id has any hash.
	EnrollmentHasCertHash(ctx context.Context, id string) (bool, error)
	// IsCertHashAssociated reports whether hash is associated with id.
	IsCertHashAssociated(ctx context.Context, id, hash string) (bool, error)
	// AssociateCertHash associates hash with id; associating an existing
	// pair again is not an error.
	AssociateCertHash(ctx context.Context, id, hash string, notAfter time.Time) error
}

// CertHashInfo describes one identity certificate associated with a
// device channel.
type CertHashInfo struct {
	// Hash is the lower-case hex SHA-256 of the certificate's DER.
	Hash string
	// NotAfter is the certificate's expiry (zero if unknown).
	NotAfter time.Time
	// AssociatedAt is when the association was first made.
	AssociatedAt time.Time
}

// CertAuthInspector shows and cuts the identities of a device channel,
// for an operator (the inspection API).
type CertAuthInspector interface {
	// RetrieveCertHashes lists the certificates associated with
	// device-channel enrollment id, oldest association first (ties by
	// hash); none (and no error) when it has none.
	RetrieveCertHashes(ctx context.Context, id string) ([]CertHashInfo, error)
	// DeleteCertHash removes the association of hash with id, so requests
	// signed with that certificate are refused; ErrNotFound when hash is
	// not associated with id.
	DeleteCertHash(ctx context.Context, id, hash string) error
}

// CertAssociation is cert-auth's association of an Authenticate's identity
// certificate with its device channel. Cert-auth hands it to the store
// through the request's context (WithCertAssociation), and the store makes
// it as part of the same atomic operation as StoreAuthenticate: the
// association exists only if the Authenticate was stored, and a refused
// or failed Authenticate leaves none behind (DESIGN §2, STYLE §9).
type CertAssociation struct {
	// Hash is the lower-case hex SHA-256 of the certificate's DER.
	Hash string
	// NotAfter is the certificate's expiry.
	NotAfter time.Time
}

type certAssociationKey struct{}

// WithCertAssociation returns ctx carrying a, for StoreAuthenticate.
func WithCertAssociation(ctx context.Context, a CertAssociation) context.Context {
	return context.WithValue(ctx, certAssociationKey{}, a)
}

// CertAssociationFrom returns the CertAssociation ctx carries, if any.
func CertAssociationFrom(ctx context.Context) (CertAssociation, bool) {
	if ctx == nil {
		return CertAssociation{}, false
	}
	a, ok := ctx.Value(certAssociationKey{}).(CertAssociation)
	return a, ok && a.Hash != ""
}

// MigrationStore reads every enrollment back as the check-in messages that
// would recreate it on another server.
type MigrationStore interface {
	// RetrieveMigrationCheckins calls yield with raw check-in plists for
	// every enabled enrollment, in replay order: per device its
	// Authenticate, its TokenUpdate (carrying the UnlockToken, if one was
	// stored), its user channels' TokenUpdates, then a SetBootstrapToken if
	// it has one. It stops at the first error yield returns.
	RetrieveMigrationCheckins(ctx context.Context, yield func(raw []byte) error) error
}

// Store is every storage interface at once: what a backend implements.
type Store interface {
	CheckinStore
	TokenUpdateTallyStore
	BootstrapTokenStore
	CommandQueueStore
	CommandEnqueuer
	PushStore
	PushCertStore
	CertAuthStore
	CertAuthInspector
	MigrationStore
	PushTokenStore
	CertAuthLookup
	InspectionStore
	OutboxStore
	LeaseStore
	RepushStore
	SCEPStore
	PrivateKeySealer
}
