package certwatch_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/push/certwatch"
	"github.com/picomdm/picomdm/storage"
)

func TestUploadWarnings(t *testing.T) {
	const (
		newTopic = "com.apple.mgmt.External.new"
		oldTopic = "com.apple.mgmt.External.old"
		other    = "com.apple.mgmt.External.other"
	)
	for _, tc := range []struct {
		name  string
		setup func(*fakeCerts)
		want  []string // one warning per entry, each saying all of these
	}{
		{
			name: "create instead of renew",
			setup: func(f *fakeCerts) {
				f.infos = []storage.PushCertInfo{cert(newTopic, 365*day), cert(oldTopic, 12*day)}
				f.enroll(oldTopic, 3, true)
			},
			want: []string{"topic " + newTopic + " has no enrolled devices, while 3 enrollments use topic " + oldTopic +
				", whose push certificate expires on 2026-12-13 12:00 UTC (in 12 days): this looks like a new push certificate (Create) instead of a renewal (Renew) of " + oldTopic + "'s certificate"},
		},
		{
			name: "the old one already expired, many devices",
			setup: func(f *fakeCerts) {
				f.infos = []storage.PushCertInfo{cert(newTopic, 365*day), cert(oldTopic, -3*day)}
				f.enroll(oldTopic, 150, true)
			},
			want: []string{"at least 100 enrollments use topic " + oldTopic + ", whose push certificate expired on 2026-11-28 12:00 UTC", "Renew " + oldTopic + "'s certificate"},
		},
		{
			name: "one device",
			setup: func(f *fakeCerts) {
				f.infos = []storage.PushCertInfo{cert(newTopic, 365*day), cert(oldTopic, 2*day)}
				f.enroll(oldTopic, 1, true)
			},
			want: []string{"while 1 enrollment uses topic " + oldTopic},
		},
		{
			name: "two expiring topics, one warning each",
			setup: func(f *fakeCerts) {
				f.infos = []storage.PushCertInfo{cert(newTopic, 365*day), cert(oldTopic, 12*day), cert(other, 20*day)}
				f.enroll(oldTopic, 2, true)
				f.enroll(other, 4, true)
			},
			want: []string{"2 enrollments use topic " + oldTopic, "4 enrollments use topic " + other},
		},
		{
			name: "renewal: the new topic has devices",
			setup: func(f *fakeCerts) {
				f.infos = []storage.PushCertInfo{cert(newTopic, 365*day), cert(oldTopic, 12*day)}
				f.enroll(newTopic, 1, true)
				f.enroll(oldTopic, 3, true)
			},
		},
		{
			name: "the new topic's devices are all disabled: still a warning",
			setup: func(f *fakeCerts) {
				f.infos = []storage.PushCertInfo{cert(newTopic, 365*day), cert(oldTopic, 12*day)}
				f.enroll(newTopic, 2, false)
				f.enroll(oldTopic, 3, true)
			},
			want: []string{"3 enrollments use topic " + oldTopic},
		},
		{
			name: "the other topic does not expire soon (a second tenant)",
			setup: func(f *fakeCerts) {
				f.infos = []storage.PushCertInfo{cert(newTopic, 365*day), cert(oldTopic, 31*day)}
				f.enroll(oldTopic, 3, true)
			},
		},
		{
			name: "the expiring topic has no enabled devices",
			setup: func(f *fakeCerts) {
				f.infos = []storage.PushCertInfo{cert(newTopic, 365*day), cert(oldTopic, 12*day)}
				f.enroll(oldTopic, 3, false)
			},
		},
		{
			name: "re-uploading an expiring topic's own certificate",
			setup: func(f *fakeCerts) {
				f.infos = []storage.PushCertInfo{cert(newTopic, 5*day)}
			},
		},
		{
			name:  "first certificate",
			setup: func(f *fakeCerts) { f.infos = []storage.PushCertInfo{cert(newTopic, 365*day)} },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &fakeCerts{}
			tc.setup(store)
			got, err := certwatch.UploadWarnings(t.Context(), store, newTopic, now)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if got != nil {
					t.Fatalf("warnings %q, want none", got)
				}
				return
			}
			if strings.HasPrefix(tc.name, "two") {
				if len(got) != 2 || !strings.Contains(got[0], tc.want[0]) || !strings.Contains(got[1], tc.want[1]) {
					t.Fatalf("warnings %q, want one saying %q, one saying %q", got, tc.want[0], tc.want[1])
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("warnings %q, want one", got)
			}
			for _, says := range tc.want {
				if !strings.Contains(got[0], says) {
					t.Errorf("warning %q does not say %q", got[0], says)
				}
			}
			if !strings.Contains(got[0], "was stored anyway") {
				t.Errorf("warning %q does not say the certificate was stored", got[0])
			}
		})
	}
}

func TestUploadWarningsErrors(t *testing.T) {
	failure := errors.New("connection refused")
	store := &fakeCerts{err: failure}
	if _, err := certwatch.UploadWarnings(t.Context(), store, "t", now); !errors.Is(err, failure) {
		t.Errorf("push cert read failing: %v, want it wrapped", err)
	}
	store = &fakeCerts{infos: []storage.PushCertInfo{cert("old", time.Hour)}, listErr: failure}
	if _, err := certwatch.UploadWarnings(t.Context(), store, "t", now); !errors.Is(err, failure) {
		t.Errorf("listing failing: %v, want it wrapped", err)
	}
}
