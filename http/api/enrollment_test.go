package api_test

import (
	"context"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/service/enroll"
	"github.com/picomdm/picomdm/service/scepca"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/device"
)

// enrollmentServer serves the enrollment routes over an in-memory store
// holding one push certificate.
func enrollmentServer(t *testing.T) (*httptest.Server, storage.Store) {
	t.Helper()
	store := inmem.New()
	certPEM, keyPEM := storagetest.NewPushCert("com.apple.mgmt.External.12345678-0000-4000-8000-000000000000")
	if err := store.StorePushCert(context.Background(), certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	b, err := enroll.New(enroll.Config{PublicURL: "https://mdm.example.com"}, store, false)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for pattern, h := range api.EnrollmentRoutes(store, b, nil) {
		mux.Handle(pattern, h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, store
}

func call(t *testing.T, method, url, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decoding: %v", method, url, err)
		}
	}
	return resp.StatusCode
}

func TestChallengeAPI(t *testing.T) {
	srv, store := enrollmentServer(t)
	base := srv.URL + api.RouteChallenges
	var minted api.ChallengeJSON
	if code := call(t, "POST", base, `{"ttl":"2h","note":"bob's Mac"}`, &minted); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	if minted.Challenge == "" || minted.State != "valid" || minted.Note != "bob's Mac" || minted.ExpiresAt == nil {
		t.Fatalf("minted %+v", minted)
	}
	created, _ := time.Parse(time.RFC3339, *minted.CreatedAt)
	expires, _ := time.Parse(time.RFC3339, *minted.ExpiresAt)
	if d := expires.Sub(created); d < 2*time.Hour-time.Second || d > 2*time.Hour+time.Second {
		t.Errorf("validity %v, want 2h", d)
	}
	stored, err := store.RetrieveSCEPChallenge(context.Background(), minted.ID)
	if err != nil || stored.Hash != scepca.ChallengeHash(minted.Challenge) {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	var empty api.ChallengeJSON
	if code := call(t, "POST", base, "", &empty); code != http.StatusCreated || empty.Challenge == "" {
		t.Errorf("POST without a body: %d %+v", code, empty)
	}
	var list api.ChallengesResponse
	if code := call(t, "GET", base+"?limit=1", "", &list); code != 200 || len(list.Challenges) != 1 || list.NextCursor == "" {
		t.Fatalf("list: %d %+v", code, list)
	}
	if list.Challenges[0].Challenge != "" {
		t.Error("a listing shows a challenge password")
	}
	var got api.ChallengeJSON
	if code := call(t, "GET", base+"/"+minted.ID, "", &got); code != 200 || got.Challenge != "" || got.ID != minted.ID {
		t.Errorf("get: %d %+v", code, got)
	}
	var revoked api.ChallengeJSON
	if code := call(t, "DELETE", base+"/"+minted.ID, "", &revoked); code != 200 || revoked.State != "revoked" || revoked.RevokedAt == nil {
		t.Errorf("revoke: %d %+v", code, revoked)
	}
	for _, tc := range []struct {
		method, url, body string
		want              int
	}{
		{"POST", base, `{"ttl":"forever"}`, 400},
		{"POST", base, `{"ttl":"100000h"}`, 400},
		{"POST", base, `{"ttl":"-1h"}`, 400},
		{"POST", base, `{"note":"` + strings.Repeat("n", 300) + `"}`, 400},
		{"POST", base, `{"unknown":1}`, 400},
		{"POST", base, `[`, 400},
		{"POST", base, strings.Repeat(" ", 5<<10), 413},
		{"PUT", base, "", 405},
		{"GET", base + "?limit=0", "", 400},
		{"GET", base + "?cursor=%25%25", "", 400},
		{"GET", base + "/nope", "", 404},
		{"DELETE", base + "/nope", "", 404},
	} {
		var e struct{ Error string }
		if code := call(t, tc.method, tc.url, tc.body, &e); code != tc.want || e.Error == "" {
			t.Errorf("%s %s %.20q: %d %q, want %d with an error", tc.method, tc.url, tc.body, code, e.Error, tc.want)
		}
	}
}

func TestIssuedCertificatesAPI(t *testing.T) {
	srv, store := enrollmentServer(t)
	ctx := context.Background()
	rec := storagetest.NewSCEPCert(scepca.SerialText(mustSerial(t)), time.Now())
	if err := store.StoreSCEPCert(ctx, rec, ""); err != nil {
		t.Fatal(err)
	}
	var list api.IssuedCertsResponse
	if code := call(t, "GET", srv.URL+api.RouteIssuedCerts, "", &list); code != 200 || len(list.Certificates) != 1 {
		t.Fatalf("list: %d %+v", code, list)
	}
	c := list.Certificates[0]
	if c.Serial != rec.Serial || c.Hash != rec.CertHash || c.ChallengeID != nil || c.PEM != "" {
		t.Errorf("listed %+v", c)
	}
	var one api.IssuedCertJSON
	if code := call(t, "GET", srv.URL+"/v1/enrollment/certificates/"+rec.Serial, "", &one); code != 200 || !strings.HasPrefix(one.PEM, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("get: %d %+v", code, one)
	}
	var e struct{ Error string }
	if code := call(t, "GET", srv.URL+"/v1/enrollment/certificates/00", "", &e); code != 404 {
		t.Errorf("unknown serial: %d", code)
	}
}

func TestProfileAPI(t *testing.T) {
	srv, store := enrollmentServer(t)
	resp, err := http.Get(srv.URL + api.RouteEnrollProfile + "?group=staff&group=ops")
	if err != nil {
		t.Fatal(err)
	}
	body := new(strings.Builder)
	_, _ = io.Copy(body, resp.Body)
	resp.Body.Close()
	p, err := device.ParseProfile([]byte(body.String()))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(p.ServerURL)
	if got := u.Query()["group"]; len(got) != 2 || got[0] != "staff" || got[1] != "ops" {
		t.Errorf("ServerURL %q", p.ServerURL)
	}
	id := resp.Header.Get("X-Challenge-Id")
	c, err := store.RetrieveSCEPChallenge(context.Background(), id)
	if err != nil || c.Hash != scepca.ChallengeHash(p.SCEP.Challenge) {
		t.Errorf("minted challenge %q: %+v, %v", id, c, err)
	}
	resp, err = http.Get(srv.URL + api.RouteEnrollProfile + "?challenge=mine")
	if err != nil {
		t.Fatal(err)
	}
	body.Reset()
	_, _ = io.Copy(body, resp.Body)
	resp.Body.Close()
	if p, err := device.ParseProfile([]byte(body.String())); err != nil || p.SCEP.Challenge != "mine" || resp.Header.Get("X-Challenge-Id") != "" {
		t.Errorf("?challenge=mine: %+v, %v", p, err)
	}
	before, _, _ := store.ListSCEPChallenges(context.Background(), storage.Page{})
	if code := call(t, "HEAD", srv.URL+api.RouteEnrollProfile, "", nil); code != 200 {
		t.Errorf("HEAD: %d", code)
	}
	if after, _, _ := store.ListSCEPChallenges(context.Background(), storage.Page{}); len(after) != len(before) {
		t.Errorf("HEAD minted a challenge")
	}
	var e struct{ Error string }
	if code := call(t, "GET", srv.URL+api.RouteEnrollProfile+"?"+strings.Repeat("k=v&", 30), "", &e); code != 400 || e.Error == "" {
		t.Errorf("too many params: %d %q", code, e.Error)
	}
}

func mustSerial(t *testing.T) *big.Int {
	t.Helper()
	s, err := scepca.NewSerial(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
