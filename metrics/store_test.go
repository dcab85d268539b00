package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// twoCallStore is a store without storage.CommandReportAndNexter.
type twoCallStore struct{ storage.Store }

// TestInstrumentStoreReportAndNext: the wrapper keeps the wrapped store's
// fast path, timed as its own operation; over a store without one, the
// report and the lookup are timed under their own names, as before.
func TestInstrumentStoreReportAndNext(t *testing.T) {
	ops := []string{"StoreCommandReportAndRetrieveNext", "StoreCommandReport", "RetrieveNextCommand"}
	for _, tc := range []struct {
		name  string
		store storage.Store
		want  map[string]float64
	}{
		{"FastPath", inmem.New(), map[string]float64{"StoreCommandReportAndRetrieveNext": 1}},
		{"TwoCalls", twoCallStore{inmem.New()}, map[string]float64{"StoreCommandReport": 1, "RetrieveNextCommand": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := New("dev", WithoutRuntimeMetrics())
			store := reg.InstrumentStore(tc.store)
			if _, ok := any(store).(storage.CommandReportAndNexter); !ok {
				t.Fatal("the instrumented store hides the fast path")
			}
			d := storagetest.NewDevice()
			storagetest.Enroll(t, tc.store, d)
			cmd := storagetest.NewCommand("ProfileList")
			if _, err := tc.store.EnqueueCommand(context.Background(), []string{d.ID()}, cmd); err != nil {
				t.Fatal(err)
			}
			got, err := storage.StoreReportAndRetrieveNext(store, d.Request(), d.Idle())
			if err != nil || got == nil || got.CommandUUID != cmd.CommandUUID {
				t.Fatalf("next command %v, %v; want %s", got, err, cmd.CommandUUID)
			}
			for _, op := range ops {
				if n := value(t, reg, "picomdm_storage_operation_duration_seconds", "operation", op); n != tc.want[op] {
					t.Errorf("%s timed %v times, want %v", op, n, tc.want[op])
				}
			}
			// An unknown enrollment's report is no error.
			if _, err := storage.StoreReportAndRetrieveNext(store, storagetest.NewDevice().Request(), &mdm.CommandResults{Status: mdm.StatusAcknowledged, CommandUUID: "x"}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestInstrumentStoreAssociateNewCertHash: as for reports, the one-call
// cert-auth decision is kept and timed as its own operation; without it,
// the steps are timed under their own names.
func TestInstrumentStoreAssociateNewCertHash(t *testing.T) {
	ops := []string{"AssociateNewCertHash", "HasCertHash", "AssociateCertHash"}
	for _, tc := range []struct {
		name  string
		store storage.Store
		want  map[string]float64
	}{
		{"OneCall", inmem.New(), map[string]float64{"AssociateNewCertHash": 1}},
		{"InSteps", twoCallStore{inmem.New()}, map[string]float64{"HasCertHash": 1, "AssociateCertHash": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := New("dev", WithoutRuntimeMetrics())
			store := reg.InstrumentStore(tc.store)
			if _, ok := any(store).(storage.CertAuthAssociator); !ok {
				t.Fatal("the instrumented store hides the one-call decision")
			}
			ours, err := storage.AssociateNewCertHash(t.Context(), store, "id", "hash", time.Time{})
			if err != nil || !ours {
				t.Fatalf("AssociateNewCertHash: %v, %v", ours, err)
			}
			for _, op := range ops {
				if n := value(t, reg, "picomdm_storage_operation_duration_seconds", "operation", op); n != tc.want[op] {
					t.Errorf("%s timed %v times, want %v", op, n, tc.want[op])
				}
			}
		})
	}
}
