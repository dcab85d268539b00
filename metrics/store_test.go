package metrics

import (
	"context"
	"testing"

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
