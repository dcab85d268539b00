package api_test

import (
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/logtest"
)

// enrollOnTopic enrolls n devices whose TokenUpdate names topic.
func enrollOnTopic(t *testing.T, store storage.Store, topic string, n int) {
	t.Helper()
	for range n {
		dev := storagetest.NewDevice()
		dev.Push.Topic = topic
		if err := store.StoreTokenUpdate(dev.Request(), dev.TokenUpdate(nil)); err != nil {
			t.Fatalf("TokenUpdate: %v", err)
		}
	}
}

// TestPushCertPutWarnsCreateInsteadOfRenew: a certificate for a topic no
// device uses, while the devices' topic expires within 30 days, is stored
// and answered with a warning saying so (and logged); a renewal of the
// topic the devices use gets no warning, and no "warnings" field.
func TestPushCertPutWarnsCreateInsteadOfRenew(t *testing.T) {
	store := inmem.New()
	var logs logtest.Buffer
	mux := http.NewServeMux()
	mux.Handle("/v1/pushcert", picohttp.BasicAuth(apiKey)(api.PushCertHandler(store, slog.New(slog.NewJSONHandler(&logs, nil)))))

	oldTopic, newTopic := storagetest.NewTopic(), storagetest.NewTopic()
	oldExpiry := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Second)
	oldCert, oldKey := pushCert(t, oldTopic, "PRIVATE KEY", oldExpiry)
	if err := store.StorePushCert(t.Context(), oldCert, oldKey); err != nil {
		t.Fatal(err)
	}
	enrollOnTopic(t, store, oldTopic, 3)

	// Create instead of Renew: a new topic, nobody on it.
	newCert, newKey := pushCert(t, newTopic, "PRIVATE KEY", time.Now().Add(365*24*time.Hour).Truncate(time.Second))
	rec := do(t, mux, http.MethodPut, "/v1/pushcert", cat(newCert, newKey), true)
	if rec.Code != http.StatusOK {
		t.Fatalf("PUT: %d %s, want 200 (a warning is not a refusal)", rec.Code, rec.Body)
	}
	var got api.PushCertResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Topic != newTopic || got.NotAfter == "" || len(got.Warnings) != 1 {
		t.Fatalf("answer %s, want topic %s, not_after and one warning", rec.Body, newTopic)
	}
	for _, says := range []string{
		"topic " + newTopic + " has no enrolled devices",
		"3 enrollments use topic " + oldTopic,
		"expires on " + oldExpiry.UTC().Format("2006-01-02 15:04 UTC"),
		"this looks like a new push certificate (Create) instead of a renewal (Renew)",
		"Renew " + oldTopic + "'s certificate",
	} {
		if !strings.Contains(got.Warnings[0], says) {
			t.Errorf("warning %q does not say %q", got.Warnings[0], says)
		}
	}
	if _, _, err := store.RetrievePushCert(t.Context(), newTopic); err != nil {
		t.Errorf("the warned-about certificate was not stored: %v", err)
	}
	line := logs.Find(t, "push certificate upload looks like Create instead of Renew")
	if line == nil || line["level"] != "WARN" || line["topic"] != newTopic || line["warning"] != got.Warnings[0] {
		t.Errorf("warning logged as %v, want a WARN line with the topic and the warning; log:\n%s", line, logs.String())
	}

	// Renew: the devices' own topic, no warning and no field.
	renewed, renewedKey := pushCert(t, oldTopic, "PRIVATE KEY", time.Now().Add(365*24*time.Hour).Truncate(time.Second))
	rec = do(t, mux, http.MethodPut, "/v1/pushcert", cat(renewed, renewedKey), true)
	var fields map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &fields); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("renewal: %d %s (%v)", rec.Code, rec.Body, err)
	}
	if keys := slices.Sorted(maps.Keys(fields)); !slices.Equal(keys, []string{"not_after", "topic"}) {
		t.Errorf("renewal answered %s, want exactly topic and not_after", rec.Body)
	}
	// With the old certificate renewed, the new topic is no longer
	// suspicious either.
	rec = do(t, mux, http.MethodPut, "/v1/pushcert", cat(newCert, newKey), true)
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "warnings") {
		t.Errorf("new topic after the renewal: %d %s, want 200 without warnings", rec.Code, rec.Body)
	}
}
