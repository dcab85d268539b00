package mdm_test

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picomdm/picomdm/http/auth"
	httpmdm "github.com/picomdm/picomdm/http/mdm"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/test/testpki"
)

const udid = "0000-1111-2222"

func plist(dict string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>` + dict + `</dict></plist>`)
}

var (
	authenticate = plist(`<key>MessageType</key><string>Authenticate</string><key>UDID</key><string>` + udid + `</string><key>Topic</key><string>com.apple.mgmt.test</string>`)
	userAuth     = plist(`<key>MessageType</key><string>UserAuthenticate</string><key>UDID</key><string>` + udid + `</string><key>UserID</key><string>u1</string>`)
	getBootstrap = plist(`<key>MessageType</key><string>GetBootstrapToken</string><key>UDID</key><string>` + udid + `</string>`)
	unknownType  = plist(`<key>MessageType</key><string>Frobnicate</string><key>UDID</key><string>` + udid + `</string>`)
	idle         = plist(`<key>Status</key><string>Idle</string><key>UDID</key><string>` + udid + `</string>`)
	ack          = plist(`<key>Status</key><string>Acknowledged</string><key>CommandUUID</key><string>c1</string><key>UDID</key><string>` + udid + `</string>`)
	emptyStatus  = plist(`<key>CommandUUID</key><string>c1</string><key>UDID</key><string>` + udid + `</string>`)
	noIDs        = plist(`<key>Status</key><string>Idle</string>`)
	garbage      = []byte("this is not a plist")
	command      = plist(`<key>CommandUUID</key><string>c2</string><key>Command</key><dict><key>RequestType</key><string>DeviceInformation</string></dict>`)
)

// fakeService records what the handler hands it and answers as told.
type fakeService struct {
	mu        sync.Mutex
	calls     []string
	requests  []*mdm.Request
	err       error
	next      *mdm.Command
	bootstrap *mdm.BootstrapToken
}

func (s *fakeService) record(name string, r *mdm.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, name)
	s.requests = append(s.requests, r)
}

func (s *fakeService) Authenticate(r *mdm.Request, _ *mdm.Authenticate) error {
	s.record("Authenticate", r)
	return s.err
}

func (s *fakeService) TokenUpdate(r *mdm.Request, _ *mdm.TokenUpdate) error {
	s.record("TokenUpdate", r)
	return s.err
}

func (s *fakeService) CheckOut(r *mdm.Request, _ *mdm.CheckOut) error {
	s.record("CheckOut", r)
	return s.err
}

func (s *fakeService) UserAuthenticate(r *mdm.Request, _ *mdm.UserAuthenticate) ([]byte, error) {
	s.record("UserAuthenticate", r)
	return nil, s.err
}

func (s *fakeService) SetBootstrapToken(r *mdm.Request, _ *mdm.SetBootstrapToken) error {
	s.record("SetBootstrapToken", r)
	return s.err
}

func (s *fakeService) GetBootstrapToken(r *mdm.Request, _ *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	s.record("GetBootstrapToken", r)
	return s.bootstrap, s.err
}

func (s *fakeService) DeclarativeManagement(r *mdm.Request, _ *mdm.DeclarativeManagement) ([]byte, error) {
	s.record("DeclarativeManagement", r)
	return nil, s.err
}

func (s *fakeService) GetToken(r *mdm.Request, _ *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	s.record("GetToken", r)
	return nil, s.err
}

func (s *fakeService) CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error) {
	s.record("CommandAndReportResults:"+results.Status, r)
	return s.next, s.err
}

// pki is the CA and identities a test signs requests with.
type pki struct {
	ca, otherCA          *testpki.CA
	device               *testpki.Identity
	foreign              *testpki.Identity // issued by another CA
	expired              *testpki.Identity
	serverAuth           *testpki.Identity // no client-auth EKU
	verifier, verifyLate auth.Verifier
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{ca: testpki.NewCA(t, "Device CA"), otherCA: testpki.NewCA(t, "Other CA")}
	p.device = p.ca.Issue(t, "device")
	p.foreign = p.otherCA.Issue(t, "foreign")
	p.expired = p.ca.Issue(t, "expired", testpki.Validity(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)))
	p.serverAuth = p.ca.Issue(t, "server", testpki.ExtKeyUsage(x509.ExtKeyUsageServerAuth))
	var err error
	if p.verifier, err = auth.NewVerifier(p.ca.PEM(), nil); err != nil {
		t.Fatal(err)
	}
	// A verifier living two years on: the device certificate has expired
	// by then although it signed validly today.
	later := func() time.Time { return time.Now().Add(2 * 365 * 24 * time.Hour) }
	if p.verifyLate, err = auth.NewVerifier(p.ca.PEM(), nil, auth.WithClock(later)); err != nil {
		t.Fatal(err)
	}
	return p
}

var quiet = httpmdm.WithLogger(slog.New(slog.DiscardHandler))

func put(url string, body []byte, contentType, signature string) *http.Request {
	req := httptest.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if signature != "" {
		req.Header.Set("Mdm-Signature", signature)
	}
	return req
}

const checkinCT = "application/x-apple-aspen-mdm-checkin"

func TestCheckinAndCommandHandler(t *testing.T) {
	p := newPKI(t)
	sign := func(id *testpki.Identity, body []byte) string { return id.Sign(t, body) }

	for _, tc := range []struct {
		name        string
		body        []byte
		contentType string
		signature   string // "" signs with p.device; "-" sends none
		svc         *fakeService
		opts        []httpmdm.Option
		wantStatus  int
		wantBody    []byte
		wantCall    string // "" when the service must not be called
	}{
		{name: "200 empty queue", body: idle, svc: &fakeService{}, wantStatus: 200, wantCall: "CommandAndReportResults:Idle"},
		{name: "200 next command", body: ack, svc: &fakeService{next: &mdm.Command{CommandUUID: "c2", Raw: command}}, wantStatus: 200, wantBody: command, wantCall: "CommandAndReportResults:Acknowledged"},
		{name: "200 check-in", body: authenticate, contentType: checkinCT, svc: &fakeService{}, wantStatus: 200, wantCall: "Authenticate"},
		{name: "check-in content type with parameters", body: authenticate, contentType: checkinCT + "; charset=utf-8", svc: &fakeService{}, wantStatus: 200, wantCall: "Authenticate"},
		{name: "check-in content type upper case", body: authenticate, contentType: strings.ToUpper(checkinCT), svc: &fakeService{}, wantStatus: 200, wantCall: "Authenticate"},
		{name: "200 bootstrap token", body: getBootstrap, contentType: checkinCT, svc: &fakeService{bootstrap: &mdm.BootstrapToken{BootstrapToken: []byte("tok")}}, wantStatus: 200, wantCall: "GetBootstrapToken"},
		{name: "check-in body as a report", body: authenticate, contentType: "application/x-apple-aspen-mdm", svc: &fakeService{}, wantStatus: 400},
		{name: "400 garbage check-in", body: garbage, contentType: checkinCT, svc: &fakeService{}, wantStatus: 400},
		{name: "400 garbage report", body: garbage, svc: &fakeService{}, wantStatus: 400},
		{name: "400 unknown MessageType", body: unknownType, contentType: checkinCT, svc: &fakeService{}, wantStatus: 400},
		{name: "400 report with empty Status", body: emptyStatus, svc: &fakeService{}, wantStatus: 400},
		{name: "400 no UDID or EnrollmentID", body: noIDs, svc: &fakeService{}, wantStatus: 400},
		{name: "400 missing signature", body: idle, signature: "-", svc: &fakeService{}, wantStatus: 400},
		{name: "400 garbled signature", body: idle, signature: "bm90IGEgc2lnbmF0dXJl", svc: &fakeService{}, wantStatus: 400},
		{name: "400 signature not base64", body: idle, signature: "***", svc: &fakeService{}, wantStatus: 400},
		{name: "400 signature over another body", body: idle, signature: sign(p.device, ack), svc: &fakeService{}, wantStatus: 400},
		{name: "400 cert from another CA", body: idle, signature: sign(p.foreign, idle), svc: &fakeService{}, wantStatus: 400},
		{name: "400 expired cert", body: idle, signature: sign(p.expired, idle), svc: &fakeService{}, wantStatus: 400},
		{name: "400 cert expired by the verifier's clock", body: idle, svc: &fakeService{}, opts: []httpmdm.Option{httpmdm.WithVerifier(p.verifyLate)}, wantStatus: 400},
		{name: "400 cert without client-auth EKU", body: idle, signature: sign(p.serverAuth, idle), svc: &fakeService{}, wantStatus: 400},
		{name: "410 from a StatusError", body: userAuth, contentType: checkinCT, svc: &fakeService{err: service.NewStatusError(http.StatusGone, errors.New("declined"))}, wantStatus: 410, wantCall: "UserAuthenticate"},
		{name: "500 from a plain error", body: idle, svc: &fakeService{err: errors.New("database down")}, wantStatus: 500, wantCall: "CommandAndReportResults:Idle"},
		{name: "500 from a check-in error", body: authenticate, contentType: checkinCT, svc: &fakeService{err: errors.New("database down")}, wantStatus: 500, wantCall: "Authenticate"},
		{name: "413 oversized body", body: idle, svc: &fakeService{}, opts: []httpmdm.Option{httpmdm.WithMaxBodySize(int64(len(idle) - 1))}, wantStatus: 413},
		{name: "body exactly at the limit", body: idle, svc: &fakeService{}, opts: []httpmdm.Option{httpmdm.WithMaxBodySize(int64(len(idle)))}, wantStatus: 200, wantCall: "CommandAndReportResults:Idle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signature := tc.signature
			switch signature {
			case "":
				signature = sign(p.device, tc.body)
			case "-":
				signature = ""
			}
			opts := append([]httpmdm.Option{httpmdm.WithVerifier(p.verifier), quiet}, tc.opts...)
			h := httpmdm.CheckinAndCommandHandler(tc.svc, opts...)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, put("/mdm?tenant=acme&x=1&x=2", tc.body, tc.contentType, signature))

			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			checkBody(t, rec, tc.wantStatus, tc.wantBody, tc.name == "200 bootstrap token")
			if tc.wantCall == "" {
				if len(tc.svc.calls) != 0 {
					t.Fatalf("service called: %v", tc.svc.calls)
				}
				return
			}
			if len(tc.svc.calls) != 1 || tc.svc.calls[0] != tc.wantCall {
				t.Fatalf("service calls %v, want [%s]", tc.svc.calls, tc.wantCall)
			}
			req := tc.svc.requests[0]
			if req.Certificate == nil || !req.Certificate.Equal(p.device.Cert) {
				t.Fatal("request does not carry the device certificate")
			}
			if got, ok := auth.FromContext(req.Context); !ok || !got.Equal(p.device.Cert) {
				t.Fatal("request context does not carry the device certificate")
			}
			if req.EnrollID == nil || req.EnrollID.DeviceID() != udid {
				t.Fatalf("enrollment ID %+v, want one of device %s", req.EnrollID, udid)
			}
			if len(req.Params) != 2 || req.Params["tenant"] != "acme" || req.Params["x"] != "1" {
				t.Fatalf("params %v, want tenant=acme x=1", req.Params)
			}
		})
	}
}

// checkBody checks a device response: exactly want, typed application/xml
// when non-empty; error statuses have an empty body.
func checkBody(t *testing.T, rec *httptest.ResponseRecorder, status int, want []byte, anyPlist bool) {
	t.Helper()
	got := rec.Body.Bytes()
	switch {
	case anyPlist:
		if !bytes.Contains(got, []byte("<key>BootstrapToken</key>")) {
			t.Fatalf("body %q is not a BootstrapToken plist", got)
		}
	case !bytes.Equal(got, want):
		t.Fatalf("body %q, want %q", got, want)
	}
	ct := rec.Header().Get("Content-Type")
	if len(got) > 0 && ct != "application/xml" {
		t.Fatalf("Content-Type %q, want application/xml", ct)
	}
	if len(got) == 0 && ct != "" {
		t.Fatalf("Content-Type %q on an empty body", ct)
	}
	if status != http.StatusOK && len(got) != 0 {
		t.Fatalf("error status %d with body %q", status, got)
	}
}

func TestNoParams(t *testing.T) {
	p := newPKI(t)
	svc := &fakeService{}
	h := httpmdm.CheckinAndCommandHandler(svc, httpmdm.WithVerifier(p.verifier), quiet)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, put("/mdm", idle, "", p.device.Sign(t, idle)))
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	if svc.requests[0].Params != nil {
		t.Fatalf("params %v, want nil", svc.requests[0].Params)
	}
}

func TestSeparateCheckinEndpoint(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		name        string
		handler     func(*fakeService) http.Handler
		body        []byte
		contentType string
		wantStatus  int
		wantCall    string
	}{
		{
			name: "check-in without check-in content type",
			handler: func(s *fakeService) http.Handler {
				return httpmdm.CheckinHandler(s, httpmdm.WithVerifier(p.verifier), quiet)
			},
			body: authenticate, wantStatus: 200, wantCall: "Authenticate",
		},
		{
			name: "report to the check-in endpoint",
			handler: func(s *fakeService) http.Handler {
				return httpmdm.CheckinHandler(s, httpmdm.WithVerifier(p.verifier), quiet)
			},
			body: idle, contentType: checkinCT, wantStatus: 400,
		},
		{
			name: "report with check-in content type",
			handler: func(s *fakeService) http.Handler {
				return httpmdm.CommandHandler(s, httpmdm.WithVerifier(p.verifier), quiet)
			},
			body: idle, contentType: checkinCT, wantStatus: 200, wantCall: "CommandAndReportResults:Idle",
		},
		{
			name: "check-in to the command endpoint",
			handler: func(s *fakeService) http.Handler {
				return httpmdm.CommandHandler(s, httpmdm.WithVerifier(p.verifier), quiet)
			},
			body: authenticate, contentType: checkinCT, wantStatus: 400,
		},
		{
			name: "command endpoint checks identity",
			handler: func(s *fakeService) http.Handler {
				return httpmdm.CommandHandler(s, httpmdm.WithVerifier(p.verifier), quiet)
			},
			body: idle, wantStatus: 400,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &fakeService{}
			sig := p.device.Sign(t, tc.body)
			if tc.name == "command endpoint checks identity" {
				sig = p.foreign.Sign(t, tc.body)
			}
			rec := httptest.NewRecorder()
			tc.handler(svc).ServeHTTP(rec, put("/checkin", tc.body, tc.contentType, sig))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			if tc.wantCall == "" && len(svc.calls) == 0 {
				return
			}
			if len(svc.calls) != 1 || svc.calls[0] != tc.wantCall {
				t.Fatalf("service calls %v, want [%s]", svc.calls, tc.wantCall)
			}
		})
	}
}

func TestCertHeader(t *testing.T) {
	p := newPKI(t)
	const header = "X-Client-Cert"
	rfc9440 := func(id *testpki.Identity) string { return ":" + base64.StdEncoding.EncodeToString(id.Cert.Raw) + ":" }
	for _, tc := range []struct {
		name       string
		value      string
		withSig    bool
		wantStatus int
	}{
		{name: "RFC 9440", value: rfc9440(p.device), wantStatus: 200},
		{name: "escaped PEM", value: url.QueryEscape(string(p.device.PEM())), wantStatus: 200},
		{name: "Mdm-Signature is not used", value: "", withSig: true, wantStatus: 400},
		{name: "missing", value: "", wantStatus: 400},
		{name: "garbled", value: ":AAAA:", wantStatus: 400},
		{name: "other CA", value: rfc9440(p.foreign), wantStatus: 400},
		{name: "expired", value: rfc9440(p.expired), wantStatus: 400},
		{name: "server auth only", value: rfc9440(p.serverAuth), wantStatus: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &fakeService{}
			h := httpmdm.CheckinAndCommandHandler(svc, httpmdm.WithVerifier(p.verifier), httpmdm.WithCertHeader(header), quiet)
			req := put("/mdm", idle, "", "")
			if tc.value != "" {
				req.Header.Set(header, tc.value)
			}
			if tc.withSig {
				req.Header.Set("Mdm-Signature", p.device.Sign(t, idle))
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			if tc.wantStatus != 200 {
				if len(svc.calls) != 0 {
					t.Fatalf("service called: %v", svc.calls)
				}
				return
			}
			if len(svc.requests) != 1 || !svc.requests[0].Certificate.Equal(p.device.Cert) {
				t.Fatal("service did not get the header's certificate")
			}
		})
	}
}

func TestConstructionPanics(t *testing.T) {
	p := newPKI(t)
	var nilVerifier *auth.X509Verifier
	for _, tc := range []struct {
		name  string
		build func()
	}{
		{"no verifier", func() { httpmdm.CheckinAndCommandHandler(&fakeService{}) }},
		{"nil verifier", func() { httpmdm.CheckinHandler(&fakeService{}, httpmdm.WithVerifier(nil)) }},
		{"typed nil verifier", func() { httpmdm.CommandHandler(&fakeService{}, httpmdm.WithVerifier(nilVerifier)) }},
		{"nil service", func() { httpmdm.CheckinAndCommandHandler(nil, httpmdm.WithVerifier(p.verifier)) }},
		{"middleware without verifier", func() { httpmdm.CertMiddleware(http.NotFoundHandler()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("construction did not panic")
				}
			}()
			tc.build()
		})
	}
}

func TestCertMiddleware(t *testing.T) {
	p := newPKI(t)
	var gotBody []byte
	var gotCert *x509.Certificate
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotCert, _ = auth.FromContext(r.Context())
		gotBody, _ = io.ReadAll(r.Body)
	})
	h := httpmdm.CertMiddleware(next, httpmdm.WithVerifier(p.verifier), quiet)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, put("/authproxy/x", idle, "", p.device.Sign(t, idle)))
	if rec.Code != 200 || !bytes.Equal(gotBody, idle) || gotCert == nil || !gotCert.Equal(p.device.Cert) {
		t.Fatalf("status %d, body passed on %q, certificate %v", rec.Code, gotBody, gotCert)
	}

	gotCert = nil
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, put("/authproxy/x", idle, "", p.foreign.Sign(t, idle)))
	if rec.Code != 400 || gotCert != nil {
		t.Fatalf("foreign certificate: status %d, next called %v", rec.Code, gotCert != nil)
	}
}

// countingReader is a body that counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestLargeBodyNeedsIdentityFirst: a body larger than
// picohttp.PreAuthBodySize is read only once the identity the headers
// claim is valid, so a client without one cannot make the server buffer
// it (issue #12); a valid device's large body is read and served.
func TestLargeBodyNeedsIdentityFirst(t *testing.T) {
	p := newPKI(t)
	svc := &fakeService{}
	h := httpmdm.CheckinAndCommandHandler(svc, httpmdm.WithVerifier(p.verifier), httpmdm.WithMaxBodySize(4<<20), quiet)
	padding := strings.Repeat("A", 2<<20)
	large := plist(`<key>UDID</key><string>` + udid + `</string><key>Status</key><string>Idle</string><key>Pad</key><string>` + padding + `</string>`)
	for _, tc := range []struct {
		name      string
		signature string
		status    int
		readAll   bool
	}{
		{"valid device", p.device.Sign(t, large), http.StatusOK, true},
		{"another CA", p.foreign.Sign(t, large), http.StatusBadRequest, false},
		{"expired", p.expired.Sign(t, large), http.StatusBadRequest, false},
		{"garbage", "bm90IGEgc2lnbmF0dXJl", http.StatusBadRequest, false},
		{"none", "", http.StatusBadRequest, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &countingReader{r: bytes.NewReader(large)}
			req := put("/mdm", nil, "", tc.signature)
			req.Body = io.NopCloser(body)
			req.ContentLength = int64(len(large))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			if tc.readAll && body.n != len(large) {
				t.Fatalf("read %d of %d bytes", body.n, len(large))
			}
			if !tc.readAll && body.n != 0 {
				t.Fatalf("read %d bytes of a body whose sender has no valid identity", body.n)
			}
		})
	}
}
