package certwatch_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picomdm/picomdm/push/certwatch"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/test/logtest"
)

// now is the fixed clock of every test.
var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// fakeCerts is a PushCertStore (and, for UploadWarnings, an
// InspectionStore) answering fixed infos and enrollments. Methods the
// package must not call are left to the nil embedded interfaces.
type fakeCerts struct {
	storage.PushCertStore
	storage.InspectionStore

	mu          sync.Mutex
	infos       []storage.PushCertInfo
	err         error
	reads       int
	enrollments []storage.EnrollmentInfo
	listErr     error
}

func (f *fakeCerts) RetrievePushCertInfos(context.Context) ([]storage.PushCertInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.err != nil {
		return nil, f.err
	}
	return slices.Clone(f.infos), nil
}

func (f *fakeCerts) ListEnrollments(_ context.Context, filter storage.EnrollmentFilter, p storage.Page) ([]storage.EnrollmentInfo, string, error) {
	if f.listErr != nil {
		return nil, "", f.listErr
	}
	if filter.Enabled == nil || !*filter.Enabled || filter.Topic == "" || p.Cursor != "" {
		panic("certwatch must count enabled enrollments of one topic, first page only")
	}
	var out []storage.EnrollmentInfo
	for _, e := range f.enrollments {
		if e.Topic != filter.Topic || !e.Enabled {
			continue
		}
		if len(out) == p.Size() {
			return out, storage.EncodeCursor(out[len(out)-1].ID), nil
		}
		out = append(out, e)
	}
	return out, "", nil
}

func (f *fakeCerts) enroll(topic string, n int, enabled bool) {
	for i := range n {
		f.enrollments = append(f.enrollments, storage.EnrollmentInfo{ID: fmt.Sprintf("%s/%t/%04d", topic, enabled, i), Topic: topic, Enabled: enabled})
	}
}

func cert(topic string, left time.Duration) storage.PushCertInfo {
	return storage.PushCertInfo{Topic: topic, NotAfter: now.Add(left)}
}

func TestExpiryWarnings(t *testing.T) {
	infos := []storage.PushCertInfo{
		cert("a.fine", 31*day),
		cert("b.thirty", 30*day),
		cert("c.eight", 8*day+time.Hour),
		cert("d.seven", 7*day),
		cert("e.day-and-a-half", 36*time.Hour),
		cert("f.one-day", day),
		cert("g.five-hours", 5*time.Hour+30*time.Minute),
		cert("h.minutes", 30*time.Minute),
		cert("i.just-expired", -time.Minute),
		cert("j.long-expired", -40*day),
		{Topic: "k.unknown"},
	}
	for _, want := range []struct {
		topic    string
		daysLeft int
		level    slog.Level
		expired  bool
		says     string
	}{
		// the soonest first
		{"j.long-expired", -40, slog.LevelError, true, "expired on 2026-10-22 12:00 UTC: devices on j.long-expired cannot be pushed"},
		{"i.just-expired", -1, slog.LevelError, true, "expired on 2026-12-01 11:59 UTC"},
		{"h.minutes", 0, slog.LevelError, false, "expires on 2026-12-01 12:30 UTC (in less than an hour)"},
		{"g.five-hours", 0, slog.LevelError, false, "(in 5 hours)"},
		{"f.one-day", 1, slog.LevelError, false, "(in 24 hours)"},
		{"e.day-and-a-half", 1, slog.LevelError, false, "(in 1 day)"},
		{"d.seven", 7, slog.LevelError, false, "(in 7 days)"},
		{"c.eight", 8, slog.LevelWarn, false, "(in 8 days)"},
		{"b.thirty", 30, slog.LevelWarn, false, "expires on 2026-12-31 12:00 UTC (in 30 days)"},
	} {
		got := certwatch.ExpiryWarnings(infos, now)
		i := slices.IndexFunc(got, func(w certwatch.Warning) bool { return w.Topic == want.topic })
		if i < 0 {
			t.Errorf("%s: no warning", want.topic)
			continue
		}
		w := got[i]
		if w.DaysLeft != want.daysLeft || w.Level != want.level || w.Expired() != want.expired ||
			!w.NotAfter.Equal(infos[slices.IndexFunc(infos, func(c storage.PushCertInfo) bool { return c.Topic == want.topic })].NotAfter) {
			t.Errorf("%s: got days %d level %s expired %v, want %d %s %v", want.topic, w.DaysLeft, w.Level, w.Expired(), want.daysLeft, want.level, want.expired)
		}
		if !strings.Contains(w.Message, want.says) || !strings.Contains(w.Message, "topic "+want.topic) ||
			!strings.Contains(w.Message, "Renew, not Create") || !strings.Contains(w.Message, "PUT /v1/pushcert") {
			t.Errorf("%s: message %q, want it to name the topic, say %q and how to renew", want.topic, w.Message, want.says)
		}
	}
	got := certwatch.ExpiryWarnings(infos, now)
	var topics []string
	for _, w := range got {
		topics = append(topics, w.Topic)
	}
	want := []string{"j.long-expired", "i.just-expired", "h.minutes", "g.five-hours", "f.one-day", "e.day-and-a-half", "d.seven", "c.eight", "b.thirty"}
	if !slices.Equal(topics, want) {
		t.Errorf("warnings for %q, want %q (soonest first; none beyond 30 days or of unknown expiry)", topics, want)
	}
}

// TestRun: one line per expiring certificate, at Warn within 30 days and
// at Error within 7, in hours within the last day, "expired" once past.
func TestRun(t *testing.T) {
	store := &fakeCerts{infos: []storage.PushCertInfo{
		cert("fine", 60*day),
		cert("soon", 20*day),
		cert("week", 6*day),
		cert("hours", 5*time.Hour),
		cert("gone", -2*day),
	}}
	var logs logtest.Buffer
	w := certwatch.New(store, certwatch.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err := w.Run(t.Context(), now); err != nil {
		t.Fatal(err)
	}
	lines := logs.Lines(t)
	byTopic := map[string]map[string]any{}
	for _, line := range lines {
		byTopic[line["topic"].(string)] = line
	}
	if len(lines) != 4 || len(byTopic) != 4 || byTopic["fine"] != nil {
		t.Fatalf("logged %d lines %v, want one per certificate expiring within 30 days", len(lines), lines)
	}
	for topic, want := range map[string]struct {
		level, msg string
		daysLeft   float64
		hoursLeft  any
	}{
		"soon":  {"WARN", "push certificate expires in 20 days", 20, nil},
		"week":  {"ERROR", "push certificate expires in 6 days", 6, nil},
		"hours": {"ERROR", "push certificate expires in 5 hours", 0, float64(5)},
		"gone":  {"ERROR", "push certificate expired", -2, nil},
	} {
		line := byTopic[topic]
		if line["level"] != want.level || line["msg"] != want.msg || line["days_left"] != want.daysLeft || line["hours_left"] != want.hoursLeft {
			t.Errorf("%s: logged %v, want level %s msg %q days_left %v hours_left %v", topic, line, want.level, want.msg, want.daysLeft, want.hoursLeft)
		}
		if line["not_after"] == nil || !strings.Contains(line["action"].(string), "Renew") {
			t.Errorf("%s: logged %v, want not_after and what to do", topic, line)
		}
	}
}

func TestRunStorageError(t *testing.T) {
	failure := errors.New("connection refused")
	var logs logtest.Buffer
	w := certwatch.New(&fakeCerts{err: failure}, certwatch.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err := w.Run(t.Context(), now); !errors.Is(err, failure) {
		t.Errorf("Run: %v, want the storage error (the runner logs it)", err)
	}
	if len(logs.Lines(t)) != 0 {
		t.Errorf("logged %s, want nothing (the runner logs a failed run)", logs.String())
	}
}

// TestMessages: the /readyz texts are read once per TTL; a failed read
// keeps the last answer.
func TestMessages(t *testing.T) {
	store := &fakeCerts{infos: []storage.PushCertInfo{cert("fine", 60*day)}}
	clock := now
	var logs logtest.Buffer
	w := certwatch.New(store, certwatch.WithClock(func() time.Time { return clock }), certwatch.WithCacheTTL(time.Minute),
		certwatch.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if got := w.Messages(t.Context()); got != nil {
		t.Errorf("nothing expiring: %q, want nil", got)
	}
	store.infos = append(store.infos, cert("soon", 10*day))
	clock = clock.Add(30 * time.Second)
	if got := w.Messages(t.Context()); got != nil || store.reads != 1 {
		t.Errorf("within the TTL: %q after %d reads, want the cached nil after 1", got, store.reads)
	}
	clock = clock.Add(31 * time.Second)
	got := w.Messages(t.Context())
	if len(got) != 1 || !strings.Contains(got[0], "topic soon expires") || store.reads != 2 {
		t.Errorf("after the TTL: %q after %d reads, want the new warning after 2", got, store.reads)
	}
	store.err = errors.New("connection refused")
	clock = clock.Add(2 * time.Minute)
	if again := w.Messages(t.Context()); !slices.Equal(again, got) || store.reads != 3 {
		t.Errorf("failed read: %q after %d reads, want the last answer %q after 3", again, store.reads, got)
	}
	if logs.Find(t, "push certificate expiry check failed") == nil {
		t.Errorf("failed read not logged: %s", logs.String())
	}
}

func TestNewPanicsOnNilStore(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New(nil) did not panic")
		}
	}()
	certwatch.New(nil)
}
