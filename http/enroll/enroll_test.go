package enroll_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	httpenroll "github.com/picomdm/picomdm/http/enroll"
	"github.com/picomdm/picomdm/mdm/profile"
	"github.com/picomdm/picomdm/service/enroll"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/device"
)

const topic = "com.apple.mgmt.External.11111111-2222-4333-8444-555555555555"

func newBuilder(t *testing.T, withCert bool, cfg enroll.Config) (*enroll.Builder, storage.Store) {
	t.Helper()
	store := inmem.New()
	if withCert {
		certPEM, keyPEM := storagetest.NewPushCert(topic)
		if err := store.StorePushCert(context.Background(), certPEM, keyPEM); err != nil {
			t.Fatal(err)
		}
	}
	cfg.PublicURL = "https://mdm.example.com"
	b, err := enroll.New(cfg, store, false)
	if err != nil {
		t.Fatal(err)
	}
	return b, store
}

func challenges(t *testing.T, store storage.Store) int {
	t.Helper()
	cs, _, err := store.ListSCEPChallenges(context.Background(), storage.Page{})
	if err != nil {
		t.Fatal(err)
	}
	return len(cs)
}

func TestServesFreshProfiles(t *testing.T) {
	b, store := newBuilder(t, true, enroll.Config{})
	h := httpenroll.Handler(b, nil, nil)
	var seen []string
	for range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/mdm/enroll", nil))
		if rec.Code != 200 || rec.Header().Get("Content-Type") != profile.ContentType || rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("status %d, headers %v", rec.Code, rec.Header())
		}
		p, err := device.ParseProfile(rec.Body.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if p.Topic != topic || p.ServerURL != "https://mdm.example.com/mdm" || p.SCEP.URL != "https://mdm.example.com/scep" || !p.SignMessage {
			t.Errorf("profile %+v", p)
		}
		seen = append(seen, p.SCEP.Challenge)
	}
	if seen[0] == "" || seen[0] == seen[1] {
		t.Errorf("challenges %q: want a fresh one-time challenge per download", seen)
	}
	if n := challenges(t, store); n != 2 {
		t.Errorf("%d challenges stored, want 2", n)
	}
}

func TestStaticChallengeProfile(t *testing.T) {
	b, store := newBuilder(t, true, enroll.Config{StaticChallenge: "static", Checkin: true})
	rec := httptest.NewRecorder()
	httpenroll.Handler(b, nil, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/mdm/enroll", nil))
	p, err := device.ParseProfile(rec.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if p.SCEP.Challenge != "static" || p.CheckInURL != "https://mdm.example.com/checkin" {
		t.Errorf("challenge %q, CheckInURL %q", p.SCEP.Challenge, p.CheckInURL)
	}
	if n := challenges(t, store); n != 0 {
		t.Errorf("%d challenges minted for a static-challenge profile", n)
	}
}

func TestHeadMintsNothing(t *testing.T) {
	b, store := newBuilder(t, true, enroll.Config{})
	rec := httptest.NewRecorder()
	httpenroll.Handler(b, nil, nil).ServeHTTP(rec, httptest.NewRequest("HEAD", "/mdm/enroll", nil))
	if rec.Code != 200 || rec.Body.Len() != 0 || challenges(t, store) != 0 {
		t.Errorf("HEAD: %d, %d bytes, %d challenges", rec.Code, rec.Body.Len(), challenges(t, store))
	}
	rec = httptest.NewRecorder()
	httpenroll.Handler(b, nil, nil).ServeHTTP(rec, httptest.NewRequest("POST", "/mdm/enroll", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestNoPushCertIs503(t *testing.T) {
	b, store := newBuilder(t, false, enroll.Config{})
	rec := httptest.NewRecorder()
	httpenroll.Handler(b, nil, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/mdm/enroll", nil))
	if rec.Code != http.StatusServiceUnavailable || challenges(t, store) != 0 {
		t.Errorf("status %d, %d challenges", rec.Code, challenges(t, store))
	}
}

func TestRateLimit(t *testing.T) {
	b, store := newBuilder(t, true, enroll.Config{})
	now := time.Unix(1e9, 0)
	lim := httpenroll.NewLimiter(2, 3, func() time.Time { return now })
	h := httpenroll.Handler(b, lim, nil)
	get := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/mdm/enroll", nil))
		return rec
	}
	for i := range 3 {
		if rec := get(); rec.Code != 200 {
			t.Fatalf("download %d in the burst: %d", i, rec.Code)
		}
	}
	rec := get()
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("over the burst: %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	if n := challenges(t, store); n != 3 {
		t.Errorf("%d challenges, want 3 (the refused download minted none)", n)
	}
	now = now.Add(500 * time.Millisecond) // one token at 2/s
	if rec := get(); rec.Code != 200 {
		t.Errorf("after refill: %d", rec.Code)
	}
	if rec := get(); rec.Code != http.StatusTooManyRequests {
		t.Errorf("refill gave more than one token: %d", rec.Code)
	}
	if httpenroll.NewLimiter(0, 10, nil) != nil {
		t.Error("rate 0 should be no limiter")
	}
}
