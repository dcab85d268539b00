package device_test

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/micromdm/plist"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/test/apiclient"
	"github.com/picomdm/picomdm/test/device"
	"github.com/smallstep/pkcs7"
)

// fakeServer is a tiny MDM server for testing the simulator: it verifies
// every request's identity the way DESIGN.md §2 requires (detached CMS
// signature over the body, one certificate, chaining to the CA with
// client-auth usage; or a certificate header), decodes the plist with the
// mdm package, and keeps a FIFO queue per enrollment ID.
type fakeServer struct {
	t          *testing.T
	ca         *device.CA
	certHeader string // identity from this header instead of Mdm-Signature
	endless    bool   // hand out a new command after every report

	mu        sync.Mutex
	requests  []request
	queues    map[string][][]byte
	bootstrap map[string][]byte
	status    int // if set, answer every request with it
}

// request is what the fake server recorded of one accepted request.
type request struct {
	Path        string
	ContentType string
	Signed      bool
	Cert        *x509.Certificate
	ID          *mdm.EnrollID
	Checkin     mdm.Checkin         // for check-ins
	Report      *mdm.CommandResults // for command reports
}

func newFakeServer(t *testing.T, ca *device.CA) (*fakeServer, *httptest.Server) {
	s := &fakeServer{t: t, ca: ca, queues: map[string][][]byte{}, bootstrap: map[string][]byte{}}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

// enqueue adds a command to id's queue and returns its raw bytes.
func (s *fakeServer) enqueue(id, requestType string) (string, []byte) {
	uuid, raw := apiclient.NewCommand(requestType, map[string]any{"Queries": []string{"UDID"}})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queues[id] = append(s.queues[id], raw)
	return uuid, raw
}

func (s *fakeServer) recorded() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.requests...)
}

func (s *fakeServer) identity(r *http.Request, body []byte) (*x509.Certificate, bool, error) {
	var cert *x509.Certificate
	sigB64 := r.Header.Get(device.SignatureHeader)
	if s.certHeader != "" {
		v := r.Header.Get(s.certHeader)
		var der []byte
		if strings.HasPrefix(v, ":") {
			var err error
			if der, err = base64.StdEncoding.DecodeString(strings.Trim(v, ":")); err != nil {
				return nil, false, err
			}
		} else {
			p, err := url.QueryUnescape(v)
			if err != nil {
				return nil, false, err
			}
			block, _ := pem.Decode([]byte(p))
			if block == nil {
				return nil, false, errors.New("no PEM in cert header")
			}
			der = block.Bytes
		}
		var err error
		if cert, err = x509.ParseCertificate(der); err != nil {
			return nil, false, err
		}
	} else {
		if sigB64 == "" {
			return nil, false, errors.New("no Mdm-Signature")
		}
		sig, err := base64.StdEncoding.DecodeString(sigB64)
		if err != nil {
			return nil, false, err
		}
		p7, err := pkcs7.Parse(sig)
		if err != nil {
			return nil, false, err
		}
		if len(p7.Content) != 0 {
			return nil, false, errors.New("signature is not detached")
		}
		if len(p7.Certificates) != 1 {
			return nil, false, fmt.Errorf("signature carries %d certificates", len(p7.Certificates))
		}
		p7.Content = body
		if err := p7.VerifyWithChain(s.ca.Pool()); err != nil {
			return nil, false, err
		}
		cert = p7.GetOnlySigner()
	}
	_, err := cert.Verify(x509.VerifyOptions{Roots: s.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return cert, sigB64 != "", err
}

func (s *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	forced := s.status
	s.mu.Unlock()
	if forced != 0 {
		http.Error(w, "forced failure", forced)
		return
	}
	if r.Method != http.MethodPut {
		http.Error(w, "want PUT", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cert, signed, err := s.identity(r, body)
	if err != nil {
		http.Error(w, "identity: "+err.Error(), http.StatusBadRequest)
		return
	}
	rec := request{Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Signed: signed, Cert: cert}
	var keys *mdm.Enrollment
	if strings.HasPrefix(rec.ContentType, "application/x-apple-aspen-mdm-checkin") {
		if rec.Checkin, err = mdm.DecodeCheckin(body); err == nil {
			keys = rec.Checkin.EnrollmentKeys()
		}
	} else if rec.Report, err = mdm.DecodeCommandResults(body); err == nil {
		keys = rec.Report.EnrollmentKeys()
	}
	if err == nil {
		rec.ID, err = keys.Resolve()
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, rec)
	id := rec.ID.ID
	switch msg := rec.Checkin.(type) {
	case nil: // a command report
		q := s.queues[id]
		if rec.Report.Status != mdm.StatusIdle && len(q) > 0 {
			if head, _ := mdm.DecodeCommand(q[0]); head.CommandUUID == rec.Report.CommandUUID {
				q = q[1:]
			}
		}
		if s.endless && len(q) == 0 {
			_, raw := apiclient.NewCommand("ProfileList", nil)
			q = append(q, raw)
		}
		s.queues[id] = q
		if len(q) > 0 {
			w.Write(q[0])
		}
	case *mdm.UserAuthenticate:
		http.Error(w, "declined", http.StatusGone)
	case *mdm.SetBootstrapToken:
		s.bootstrap[id] = msg.BootstrapToken
	case *mdm.GetBootstrapToken:
		if token, ok := s.bootstrap[id]; ok {
			writePlist(w, &mdm.BootstrapToken{BootstrapToken: token})
		}
	case *mdm.DeclarativeManagement:
		fmt.Fprintf(w, "%s:%s", msg.Endpoint, msg.Data)
	case *mdm.GetToken:
		writePlist(w, &mdm.GetTokenResponse{TokenData: []byte("token for " + msg.TokenServiceType)})
	}
}

func writePlist(w http.ResponseWriter, v any) {
	b, err := plist.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Write(b)
}
