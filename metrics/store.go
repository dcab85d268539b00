package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// InstrumentStore returns store timing every storage method in
// picomdm_storage_operation_duration_seconds{operation} and counting
// failures (other than storage.ErrNotFound) in
// picomdm_storage_operation_errors_total{operation}; operation is the
// method name. EnqueueCommand also counts picomdm_commands_enqueued_total,
// so every enqueue path through the store is counted once. The result also has a Ping method that calls store's own
// Ping, or succeeds if store has none, so readiness checks see through the
// wrapper. It panics if store is nil.
func (r *Registry) InstrumentStore(store storage.Store) *Store {
	if store == nil {
		panic("metrics: InstrumentStore with a nil store")
	}
	return &Store{Store: store, r: r}
}

// Store is a storage.Store whose methods InstrumentStore times. Methods
// added to storage.Store later pass through the embedded store untimed
// until they are added here.
type Store struct {
	storage.Store
	r *Registry
}

// observe records one operation that started at start and returned err.
func (s *Store) observe(op string, start time.Time, err error) {
	s.r.storeDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.r.storeErrors.WithLabelValues(op).Inc()
	}
}

// Ping calls the wrapped store's Ping(ctx) if it has one (mysql, pgsql),
// else returns nil: file and inmem have no connection to lose.
func (s *Store) Ping(ctx context.Context) (err error) {
	p, ok := s.Store.(interface{ Ping(context.Context) error })
	if !ok {
		return nil
	}
	defer func(start time.Time) { s.observe("Ping", start, err) }(time.Now())
	return p.Ping(ctx)
}

// StoreAuthenticate times storage.CheckinStore.StoreAuthenticate.
func (s *Store) StoreAuthenticate(r *mdm.Request, msg *mdm.Authenticate) (err error) {
	defer func(start time.Time) { s.observe("StoreAuthenticate", start, err) }(time.Now())
	return s.Store.StoreAuthenticate(r, msg)
}

// StoreTokenUpdate times storage.CheckinStore.StoreTokenUpdate.
func (s *Store) StoreTokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) (err error) {
	defer func(start time.Time) { s.observe("StoreTokenUpdate", start, err) }(time.Now())
	return s.Store.StoreTokenUpdate(r, msg)
}

// StoreUserAuthenticate times storage.CheckinStore.StoreUserAuthenticate.
func (s *Store) StoreUserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) (err error) {
	defer func(start time.Time) { s.observe("StoreUserAuthenticate", start, err) }(time.Now())
	return s.Store.StoreUserAuthenticate(r, msg)
}

// Disable times storage.CheckinStore.Disable.
func (s *Store) Disable(r *mdm.Request) (err error) {
	defer func(start time.Time) { s.observe("Disable", start, err) }(time.Now())
	return s.Store.Disable(r)
}

// RetrieveTokenUpdateTally times
// storage.TokenUpdateTallyStore.RetrieveTokenUpdateTally.
func (s *Store) RetrieveTokenUpdateTally(ctx context.Context, id string) (_ int, err error) {
	defer func(start time.Time) { s.observe("RetrieveTokenUpdateTally", start, err) }(time.Now())
	return s.Store.RetrieveTokenUpdateTally(ctx, id)
}

// StoreBootstrapToken times storage.BootstrapTokenStore.StoreBootstrapToken.
func (s *Store) StoreBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) (err error) {
	defer func(start time.Time) { s.observe("StoreBootstrapToken", start, err) }(time.Now())
	return s.Store.StoreBootstrapToken(r, msg)
}

// RetrieveBootstrapToken times
// storage.BootstrapTokenStore.RetrieveBootstrapToken.
func (s *Store) RetrieveBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (_ *mdm.BootstrapToken, err error) {
	defer func(start time.Time) { s.observe("RetrieveBootstrapToken", start, err) }(time.Now())
	return s.Store.RetrieveBootstrapToken(r, msg)
}

// StoreCommandReport times storage.CommandQueueStore.StoreCommandReport.
func (s *Store) StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) (err error) {
	defer func(start time.Time) { s.observe("StoreCommandReport", start, err) }(time.Now())
	return s.Store.StoreCommandReport(r, report)
}

// RetrieveNextCommand times storage.CommandQueueStore.RetrieveNextCommand.
func (s *Store) RetrieveNextCommand(r *mdm.Request) (_ *mdm.Command, err error) {
	defer func(start time.Time) { s.observe("RetrieveNextCommand", start, err) }(time.Now())
	return s.Store.RetrieveNextCommand(r)
}

// StoreCommandReportAndRetrieveNext implements
// storage.CommandReportAndNexter, so the wrapper keeps the wrapped store's
// fast path. When the wrapped store has it, the call is timed as its own
// operation, StoreCommandReportAndRetrieveNext; otherwise it is the two
// calls, each timed under its own name as before.
func (s *Store) StoreCommandReportAndRetrieveNext(r *mdm.Request, report *mdm.CommandResults) (_ *mdm.Command, err error) {
	fast, ok := s.Store.(storage.CommandReportAndNexter)
	if !ok {
		return storage.StoreReportThenRetrieveNext(s, r, report)
	}
	defer func(start time.Time) { s.observe("StoreCommandReportAndRetrieveNext", start, err) }(time.Now())
	return fast.StoreCommandReportAndRetrieveNext(r, report)
}

// EnqueueCommand times storage.CommandEnqueuer.EnqueueCommand and counts
// the enrollments the command was queued for in
// picomdm_commands_enqueued_total.
func (s *Store) EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (_ map[string]error, err error) {
	defer func(start time.Time) { s.observe("EnqueueCommand", start, err) }(time.Now())
	failed, err := s.Store.EnqueueCommand(ctx, ids, cmd)
	if err == nil {
		queued := make(map[string]bool, len(ids))
		for _, id := range ids {
			if failed[id] == nil {
				queued[id] = true
			}
		}
		s.r.CommandsEnqueued(len(queued))
	}
	return failed, err
}

// RetrievePushInfo times storage.PushStore.RetrievePushInfo.
func (s *Store) RetrievePushInfo(ctx context.Context, ids []string) (_ map[string]*mdm.Push, err error) {
	defer func(start time.Time) { s.observe("RetrievePushInfo", start, err) }(time.Now())
	return s.Store.RetrievePushInfo(ctx, ids)
}

// StorePushCert times storage.PushCertStore.StorePushCert.
func (s *Store) StorePushCert(ctx context.Context, pemCert, pemKey []byte) (err error) {
	defer func(start time.Time) { s.observe("StorePushCert", start, err) }(time.Now())
	return s.Store.StorePushCert(ctx, pemCert, pemKey)
}

// RetrievePushCert times storage.PushCertStore.RetrievePushCert.
func (s *Store) RetrievePushCert(ctx context.Context, topic string) (_ *tls.Certificate, _ string, err error) {
	defer func(start time.Time) { s.observe("RetrievePushCert", start, err) }(time.Now())
	return s.Store.RetrievePushCert(ctx, topic)
}

// RetrievePushCertInfos times storage.PushCertStore.RetrievePushCertInfos.
func (s *Store) RetrievePushCertInfos(ctx context.Context) (_ []storage.PushCertInfo, err error) {
	defer func(start time.Time) { s.observe("RetrievePushCertInfos", start, err) }(time.Now())
	return s.Store.RetrievePushCertInfos(ctx)
}

// IsPushCertStale times storage.PushCertStore.IsPushCertStale.
func (s *Store) IsPushCertStale(ctx context.Context, topic, staleToken string) (_ bool, err error) {
	defer func(start time.Time) { s.observe("IsPushCertStale", start, err) }(time.Now())
	return s.Store.IsPushCertStale(ctx, topic, staleToken)
}

// HasCertHash times storage.CertAuthStore.HasCertHash.
func (s *Store) HasCertHash(ctx context.Context, hash string) (_ bool, err error) {
	defer func(start time.Time) { s.observe("HasCertHash", start, err) }(time.Now())
	return s.Store.HasCertHash(ctx, hash)
}

// EnrollmentHasCertHash times storage.CertAuthStore.EnrollmentHasCertHash.
func (s *Store) EnrollmentHasCertHash(ctx context.Context, id string) (_ bool, err error) {
	defer func(start time.Time) { s.observe("EnrollmentHasCertHash", start, err) }(time.Now())
	return s.Store.EnrollmentHasCertHash(ctx, id)
}

// IsCertHashAssociated times storage.CertAuthStore.IsCertHashAssociated.
func (s *Store) IsCertHashAssociated(ctx context.Context, id, hash string) (_ bool, err error) {
	defer func(start time.Time) { s.observe("IsCertHashAssociated", start, err) }(time.Now())
	return s.Store.IsCertHashAssociated(ctx, id, hash)
}

// AssociateCertHash times storage.CertAuthStore.AssociateCertHash.
func (s *Store) AssociateCertHash(ctx context.Context, id, hash string, notAfter time.Time) (err error) {
	defer func(start time.Time) { s.observe("AssociateCertHash", start, err) }(time.Now())
	return s.Store.AssociateCertHash(ctx, id, hash, notAfter)
}

// RetrieveCertHashes times storage.CertAuthInspector.RetrieveCertHashes.
func (s *Store) RetrieveCertHashes(ctx context.Context, id string) (_ []storage.CertHashInfo, err error) {
	defer func(start time.Time) { s.observe("RetrieveCertHashes", start, err) }(time.Now())
	return s.Store.RetrieveCertHashes(ctx, id)
}

// DeleteCertHash times storage.CertAuthInspector.DeleteCertHash.
func (s *Store) DeleteCertHash(ctx context.Context, id, hash string) (err error) {
	defer func(start time.Time) { s.observe("DeleteCertHash", start, err) }(time.Now())
	return s.Store.DeleteCertHash(ctx, id, hash)
}

// RetrieveMigrationCheckins times
// storage.MigrationStore.RetrieveMigrationCheckins; the time includes the
// caller's yield calls, as the whole export is one operation.
func (s *Store) RetrieveMigrationCheckins(ctx context.Context, yield func(raw []byte) error) (err error) {
	defer func(start time.Time) { s.observe("RetrieveMigrationCheckins", start, err) }(time.Now())
	return s.Store.RetrieveMigrationCheckins(ctx, yield)
}

// InvalidatePushToken times storage.PushTokenStore.InvalidatePushToken.
func (s *Store) InvalidatePushToken(ctx context.Context, id string, reason string) (err error) {
	defer func(start time.Time) { s.observe("InvalidatePushToken", start, err) }(time.Now())
	return s.Store.InvalidatePushToken(ctx, id, reason)
}

// PushTokenValid times storage.PushTokenStore.PushTokenValid.
func (s *Store) PushTokenValid(ctx context.Context, id string) (_ bool, err error) {
	defer func(start time.Time) { s.observe("PushTokenValid", start, err) }(time.Now())
	return s.Store.PushTokenValid(ctx, id)
}

// EnrollmentFromCertHash times storage.CertAuthLookup.EnrollmentFromCertHash.
func (s *Store) EnrollmentFromCertHash(ctx context.Context, hash string) (_ string, err error) {
	defer func(start time.Time) { s.observe("EnrollmentFromCertHash", start, err) }(time.Now())
	return s.Store.EnrollmentFromCertHash(ctx, hash)
}
