package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/picomdm/picomdm/cmd/picomdm/app"
	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/logtest"
)

// scepServer is a server made for the built-in SCEP CA: its listener is
// opened before app.New so that -public-url can name it.
type scepServer struct {
	ln     net.Listener
	url    string
	args   []string
	app    *app.App
	stdout *logtest.Buffer
	stderr *logtest.Buffer
}

// prepareSCEP opens a loopback listener and makes the flags of a server on
// the named backend with -scep, -public-url naming that listener, the API
// key and no -ca, followed by extra.
func prepareSCEP(t *testing.T, storageName, dsn string, extra ...string) *scepServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	args := append([]string{
		"-scep", "-public-url", url, "-api", apiKey,
		"-storage", storageName, "-storage-dsn", dsn,
	}, extra...)
	return &scepServer{ln: ln, url: url, args: args, stdout: &logtest.Buffer{}, stderr: &logtest.Buffer{}}
}

// build runs app.New with the prepared flags. It calls no testing.T
// method, so two replicas may build at the same time.
func (p *scepServer) build() error {
	a, err := app.New(p.args, func(string) string { return "" }, p.stdout, p.stderr)
	p.app = a
	return err
}

// serve serves the built app on the prepared listener and returns it as a
// harness server (which has no device CA: devices get their identity by
// SCEP).
func (p *scepServer) serve(t *testing.T) *server {
	t.Helper()
	srv := httptest.NewUnstartedServer(p.app.Handler())
	srv.Listener.Close()
	srv.Listener = p.ln
	srv.Start()
	s := &server{t: t, app: p.app, http: srv, URL: p.url, stdout: p.stdout, stderr: p.stderr}
	if s.URL != srv.URL {
		t.Fatalf("served at %s, want the public URL %s", srv.URL, s.URL)
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", s.stderr.String())
		}
	})
	return s
}

// startSCEP runs a server with the built-in SCEP CA and its generated
// enrollment profile at /mdm/enroll (see prepareSCEP).
func startSCEP(t *testing.T, storageName, dsn string, extra ...string) *server {
	t.Helper()
	p := prepareSCEP(t, storageName, dsn, extra...)
	if err := p.build(); err != nil {
		p.ln.Close()
		t.Fatalf("app.New(%v): %v\n%s", p.args, err, p.stderr.String())
	}
	return p.serve(t)
}

// uploadPushCert stores a push certificate for a new topic through the API
// and returns the topic.
func (s *server) uploadPushCert() string {
	s.t.Helper()
	topic := storagetest.NewTopic()
	certPEM, keyPEM := storagetest.NewPushCert(topic)
	if status, body := s.api(http.MethodPut, "/v1/pushcert", append(certPEM, keyPEM...)); status != http.StatusOK {
		s.t.Fatalf("PUT /v1/pushcert: %d %s", status, body)
	}
	return topic
}

// apiResponse is s.api with the response headers.
func (s *server) apiResponse(method, path string, body []byte) (int, http.Header, []byte) {
	s.t.Helper()
	req, err := http.NewRequestWithContext(ctx(s.t), method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.SetBasicAuth("picomdm", apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// apiJSON calls the API, expects status want and decodes the JSON answer
// into out.
func (s *server) apiJSON(method, path string, body []byte, want int, out any) {
	s.t.Helper()
	status, b := s.api(method, path, body)
	if status != want {
		s.t.Fatalf("%s %s: %d %s, want %d", method, path, status, b, want)
	}
	if err := json.Unmarshal(b, out); err != nil {
		s.t.Fatalf("%s %s answered %s: %v", method, path, b, err)
	}
}

// issuedCerts lists the certificates the built-in CA issued (one page).
func (s *server) issuedCerts() []api.IssuedCertJSON {
	s.t.Helper()
	var resp api.IssuedCertsResponse
	s.apiJSON(http.MethodGet, "/v1/enrollment/certificates?limit=100", nil, http.StatusOK, &resp)
	return resp.Certificates
}

// challenges lists the one-time challenges (one page).
func (s *server) challenges() []api.ChallengeJSON {
	s.t.Helper()
	var resp api.ChallengesResponse
	s.apiJSON(http.MethodGet, "/v1/enrollment/challenges?limit=100", nil, http.StatusOK, &resp)
	return resp.Challenges
}

// challenge reads one one-time challenge.
func (s *server) challenge(id string) api.ChallengeJSON {
	s.t.Helper()
	var c api.ChallengeJSON
	s.apiJSON(http.MethodGet, "/v1/enrollment/challenges/"+id, nil, http.StatusOK, &c)
	return c
}

// mintChallenge mints a one-time challenge through the API.
func (s *server) mintChallenge() api.ChallengeJSON {
	s.t.Helper()
	var c api.ChallengeJSON
	s.apiJSON(http.MethodPost, "/v1/enrollment/challenges", []byte(`{"note":"e2e"}`), http.StatusCreated, &c)
	if c.ID == "" || c.Challenge == "" || c.State != "valid" {
		s.t.Fatalf("minted challenge %+v", c)
	}
	return c
}
