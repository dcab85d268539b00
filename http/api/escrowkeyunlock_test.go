package api_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// fakeApple is Apple's escrow key unlock service: TLS that requires a
// client certificate, recording what it got.
type fakeApple struct {
	srv *httptest.Server

	mu         sync.Mutex
	method     string
	query      url.Values
	body       url.Values
	ctype      string
	clientCert []byte // DER of the certificate the client presented

	status int
	answer string
	atype  string
}

func newFakeApple(t *testing.T) *fakeApple {
	a := &fakeApple{status: http.StatusOK, answer: `<plist version="1.0"><dict/></plist>`, atype: "text/xml"}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		body, _ := url.ParseQuery(string(raw))
		a.mu.Lock()
		a.method, a.query, a.body, a.ctype = r.Method, r.URL.Query(), body, r.Header.Get("Content-Type")
		if len(r.TLS.PeerCertificates) > 0 {
			a.clientCert = r.TLS.PeerCertificates[0].Raw
		}
		a.mu.Unlock()
		w.Header().Set("Content-Type", a.atype)
		w.WriteHeader(a.status)
		io.WriteString(w, a.answer)
	}))
	a.srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	a.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	return a
}

type escrowFixture struct {
	apple   *fakeApple
	topic   string
	certDER []byte
	handler http.Handler
}

func newEscrowFixture(t *testing.T) *escrowFixture {
	t.Helper()
	f := &escrowFixture{apple: newFakeApple(t), topic: storagetest.NewTopic()}
	store := inmem.New()
	certPEM, keyPEM := storagetest.NewPushCert(f.topic)
	if err := store.StorePushCert(context.Background(), certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	f.certDER = pair.Certificate[0]
	// The path and query of the base URL are kept.
	f.handler = api.EscrowKeyUnlockHandler(store, f.apple.srv.URL+"/deviceservicesworkers/escrowKeyUnlock?v=1", f.apple.srv.Client(), quiet)
	return f
}

func (f *escrowFixture) form(extra map[string]string) url.Values {
	v := url.Values{
		"topic":       {f.topic},
		"serial":      {"C02XYZ"},
		"productType": {"iPhone14,2"},
		"escrowKey":   {"ABCD-EFGH+/="},
		"orgName":     {"Example & Co"},
		"guid":        {"guid-1"},
	}
	for k, val := range extra {
		if val == "" {
			v.Del(k)
		} else {
			v.Set(k, val)
		}
	}
	return v
}

func (f *escrowFixture) post(t *testing.T, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/escrowkeyunlock", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	return rec
}

func wantJSONError(t *testing.T, rec *httptest.ResponseRecorder, status int, text string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d (body %s)", rec.Code, status, rec.Body)
	}
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", rec.Body, err)
	}
	if !strings.Contains(body.Error, text) {
		t.Fatalf("error %q does not contain %q", body.Error, text)
	}
}

func TestEscrowKeyUnlockRelays(t *testing.T) {
	f := newEscrowFixture(t)
	rec := f.post(t, f.form(map[string]string{"imei": "35-1", "meid": "A1"}))
	if rec.Code != http.StatusOK || rec.Body.String() != f.apple.answer || rec.Header().Get("Content-Type") != "text/xml" {
		t.Fatalf("answer %d %q %q", rec.Code, rec.Body, rec.Header().Get("Content-Type"))
	}
	a := f.apple
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.method != http.MethodPost || a.ctype != "application/x-www-form-urlencoded" {
		t.Errorf("Apple got %s (%s)", a.method, a.ctype)
	}
	wantQuery := url.Values{"v": {"1"}, "serial": {"C02XYZ"}, "productType": {"iPhone14,2"}, "imei": {"35-1"}, "meid": {"A1"}}
	if a.query.Encode() != wantQuery.Encode() {
		t.Errorf("query %v, want %v", a.query, wantQuery)
	}
	wantBody := url.Values{"orgName": {"Example & Co"}, "guid": {"guid-1"}, "escrowKey": {"ABCD-EFGH+/="}}
	if a.body.Encode() != wantBody.Encode() {
		t.Errorf("body %v, want %v", a.body, wantBody)
	}
	if !bytes.Equal(a.clientCert, f.certDER) {
		t.Error("the client certificate is not the topic's push certificate")
	}
}

func TestEscrowKeyUnlockMultipart(t *testing.T) {
	f := newEscrowFixture(t)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range f.form(nil) {
		mw.WriteField(k, v[0])
	}
	mw.Close()
	req := httptest.NewRequest(http.MethodPost, "/v1/escrowkeyunlock", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
}

func TestEscrowKeyUnlockPassesAppleErrors(t *testing.T) {
	f := newEscrowFixture(t)
	f.apple.status, f.apple.answer, f.apple.atype = http.StatusBadRequest, `{"reason":"bad key"}`, "application/json"
	rec := f.post(t, f.form(nil))
	if rec.Code != http.StatusBadRequest || rec.Body.String() != `{"reason":"bad key"}` || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("answer %d %q %q", rec.Code, rec.Body, rec.Header().Get("Content-Type"))
	}
}

func TestEscrowKeyUnlockMissingFields(t *testing.T) {
	f := newEscrowFixture(t)
	rec := f.post(t, f.form(map[string]string{"serial": "", "guid": ""}))
	wantJSONError(t, rec, http.StatusBadRequest, "missing fields: serial, guid")

	rec = f.post(t, url.Values{})
	wantJSONError(t, rec, http.StatusBadRequest, "missing fields: topic, serial, productType, escrowKey, orgName, guid")
	if f.apple.method != "" {
		t.Fatal("an incomplete request reached Apple")
	}
}

func TestEscrowKeyUnlockUnknownTopic(t *testing.T) {
	f := newEscrowFixture(t)
	wantJSONError(t, f.post(t, f.form(map[string]string{"topic": "com.apple.mgmt.unknown"})), http.StatusNotFound, "com.apple.mgmt.unknown")
}

func TestEscrowKeyUnlockMethod(t *testing.T) {
	f := newEscrowFixture(t)
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/escrowkeyunlock", nil))
	wantJSONError(t, rec, http.StatusMethodNotAllowed, "GET")
	if rec.Header().Get("Allow") != http.MethodPost {
		t.Errorf("Allow %q", rec.Header().Get("Allow"))
	}
}

func TestEscrowKeyUnlockAppleDown(t *testing.T) {
	f := newEscrowFixture(t)
	f.apple.srv.Close()
	wantJSONError(t, f.post(t, f.form(nil)), http.StatusBadGateway, "escrow key unlock")
}

func TestEscrowKeyUnlockNoClientCertRefused(t *testing.T) {
	// The fake requires a client certificate: without one the handshake
	// fails, so the relay's 200 above proves the certificate was sent.
	a := newFakeApple(t)
	resp, err := a.srv.Client().Post(a.srv.URL, "text/plain", nil)
	if err == nil {
		resp.Body.Close()
		t.Fatal("the fake accepted a client without a certificate")
	}
}

func TestEscrowKeyUnlockPanics(t *testing.T) {
	for name, fn := range map[string]func(){
		"nil store":    func() { api.EscrowKeyUnlockHandler(nil, "", nil, nil) },
		"relative URL": func() { api.EscrowKeyUnlockHandler(inmem.New(), "/x", nil, nil) },
		"custom transport": func() {
			api.EscrowKeyUnlockHandler(inmem.New(), "", &http.Client{Transport: roundTripFunc(nil)}, nil)
		},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			fn()
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (fn roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return fn(r) }
