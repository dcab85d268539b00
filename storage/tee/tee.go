// Package tee writes to several storage backends at once: the first
// (primary) one answers every call, reads included; every write is then
// repeated on the others, whose errors are only logged. It is what
// repeated -storage flags build, e.g. to keep a second database in step
// while moving to it.
//
// The webhook outbox (storage.OutboxStore), the leases (storage.LeaseStore)
// and the re-push records (storage.RepushStore) are the primary's only:
// they pass through the embedded store and are never copied. They are
// transient state of one deployment — events waiting for delivery, claims
// and leases naming this deployment's replicas, push history — that a
// secondary would deliver or act on a second time, not records to keep in
// step. Once the secondary becomes the primary it starts with an empty
// outbox.
package tee

import (
	"context"
	"log/slog"
	"time"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// Store is a storage.Store over a primary and secondary backends. Reads go
// to the primary only (through the embedded interface); writes go to all.
type Store struct {
	storage.Store
	others []storage.Store
	logger *slog.Logger
}

// New returns a Store answering from primary and copying writes to others.
func New(primary storage.Store, others []storage.Store, logger *slog.Logger) *Store {
	if primary == nil {
		panic("tee: nil primary store")
	}
	return &Store{Store: primary, others: others, logger: pmlog.Or(logger)}
}

// copyTo repeats a write that succeeded on the primary on every other
// backend, in order and synchronously, so the others see writes in the
// same order as the primary.
func (s *Store) copyTo(ctx context.Context, op string, primaryErr error, write func(storage.Store) error) error {
	if primaryErr != nil {
		return primaryErr
	}
	for i, o := range s.others {
		if err := write(o); err != nil {
			s.logger.WarnContext(ctx, "secondary storage write failed", "op", op, "backend", i+1, "err", err)
		}
	}
	return nil
}

// StoreAuthenticate implements storage.CheckinStore.
func (s *Store) StoreAuthenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	return s.copyTo(r.Context, "StoreAuthenticate", s.Store.StoreAuthenticate(r, msg), func(o storage.Store) error {
		return o.StoreAuthenticate(r, msg)
	})
}

// StoreTokenUpdate implements storage.CheckinStore.
func (s *Store) StoreTokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	return s.copyTo(r.Context, "StoreTokenUpdate", s.Store.StoreTokenUpdate(r, msg), func(o storage.Store) error {
		return o.StoreTokenUpdate(r, msg)
	})
}

// StoreUserAuthenticate implements storage.CheckinStore.
func (s *Store) StoreUserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) error {
	return s.copyTo(r.Context, "StoreUserAuthenticate", s.Store.StoreUserAuthenticate(r, msg), func(o storage.Store) error {
		return o.StoreUserAuthenticate(r, msg)
	})
}

// Disable implements storage.CheckinStore.
func (s *Store) Disable(r *mdm.Request) error {
	return s.copyTo(r.Context, "Disable", s.Store.Disable(r), func(o storage.Store) error {
		return o.Disable(r)
	})
}

// StoreBootstrapToken implements storage.BootstrapTokenStore.
func (s *Store) StoreBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	return s.copyTo(r.Context, "StoreBootstrapToken", s.Store.StoreBootstrapToken(r, msg), func(o storage.Store) error {
		return o.StoreBootstrapToken(r, msg)
	})
}

// StoreCommandReport implements storage.CommandQueueStore.
func (s *Store) StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error {
	return s.copyTo(r.Context, "StoreCommandReport", s.Store.StoreCommandReport(r, report), func(o storage.Store) error {
		return o.StoreCommandReport(r, report)
	})
}

// StoreCommandReportAndRetrieveNext implements
// storage.CommandReportAndNexter, so the primary's fast path is kept: the
// primary stores the report and answers the next command in one call, then
// the report is copied to the others (which hand out nothing, so they need
// no lookup). An error from the primary's combined call is returned and
// nothing is copied: as for StoreCommandReport, the device sends the report
// again. A primary without the fast path gets the two calls, the report
// copied in between as before.
func (s *Store) StoreCommandReportAndRetrieveNext(r *mdm.Request, report *mdm.CommandResults) (*mdm.Command, error) {
	fast, ok := s.Store.(storage.CommandReportAndNexter)
	if !ok {
		return storage.StoreReportThenRetrieveNext(s, r, report)
	}
	cmd, err := fast.StoreCommandReportAndRetrieveNext(r, report)
	if err := s.copyTo(r.Context, "StoreCommandReport", err, func(o storage.Store) error {
		return o.StoreCommandReport(r, report)
	}); err != nil {
		return nil, err
	}
	return cmd, nil
}

// EnqueueCommand implements storage.CommandEnqueuer. The primary's per-ID
// results are the answer; the others get the command for the same IDs.
func (s *Store) EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	idErrs, err := s.Store.EnqueueCommand(ctx, ids, cmd)
	err = s.copyTo(ctx, "EnqueueCommand", err, func(o storage.Store) error {
		_, err := o.EnqueueCommand(ctx, ids, cmd)
		return err
	})
	return idErrs, err
}

// StorePushCert implements storage.PushCertStore.
func (s *Store) StorePushCert(ctx context.Context, pemCert, pemKey []byte) error {
	return s.copyTo(ctx, "StorePushCert", s.Store.StorePushCert(ctx, pemCert, pemKey), func(o storage.Store) error {
		return o.StorePushCert(ctx, pemCert, pemKey)
	})
}

// AssociateCertHash implements storage.CertAuthStore.
func (s *Store) AssociateCertHash(ctx context.Context, id, hash string, notAfter time.Time) error {
	return s.copyTo(ctx, "AssociateCertHash", s.Store.AssociateCertHash(ctx, id, hash, notAfter), func(o storage.Store) error {
		return o.AssociateCertHash(ctx, id, hash, notAfter)
	})
}

// DeleteCertHash implements storage.CertAuthInspector.
func (s *Store) DeleteCertHash(ctx context.Context, id, hash string) error {
	return s.copyTo(ctx, "DeleteCertHash", s.Store.DeleteCertHash(ctx, id, hash), func(o storage.Store) error {
		return o.DeleteCertHash(ctx, id, hash)
	})
}

// InvalidatePushToken implements storage.PushTokenStore.
func (s *Store) InvalidatePushToken(ctx context.Context, id, reason string) error {
	return s.copyTo(ctx, "InvalidatePushToken", s.Store.InvalidatePushToken(ctx, id, reason), func(o storage.Store) error {
		return o.InvalidatePushToken(ctx, id, reason)
	})
}

// Ping checks the primary backend, if it can be pinged (readiness).
func (s *Store) Ping(ctx context.Context) error {
	if p, ok := s.Store.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	return nil
}
