// Package apnsmock is an in-process stand-in for Apple's Push Notification
// service (APNs) provider API, for testing PicoMDM's push path without
// Apple: HTTP/2 over TLS with a self-signed server certificate, a required
// client certificate (certificate-based provider authentication), the
// "POST /3/device/<hex token>" request, and APNs-shaped answers — 200 with
// an apns-id header, or a status with a JSON {"reason": "..."} body.
//
// Each device token can be given a sequence of answers (Respond); every
// request is recorded (method, path, headers, body, and the Subject and
// topic of the client certificate it came over), and the server counts the
// requests it served and the most it ever had in flight at once.
package apnsmock

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// MaxConcurrentStreams is the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS the
// server advertises per connection: what APNs advertises to a provider
// authenticated by certificate.
const MaxConcurrentStreams = 1000

// Response is one answer to a push.
type Response struct {
	// Status is the HTTP status; 0 means 200.
	Status int
	// Reason is APNs' reason string for a non-200 Status, such as
	// "Unregistered" or "TooManyRequests".
	Reason string
	// Timestamp is sent (in milliseconds) with a 410: when APNs last
	// confirmed the token was no longer valid. Zero means now.
	Timestamp time.Time
}

// Request is a push request the server received.
type Request struct {
	// Method, Path and Proto are the request line's, e.g. "POST",
	// "/3/device/abcd…" and "HTTP/2.0".
	Method, Path, Proto string
	// Token is the hex device token from Path.
	Token string
	// Header holds the request headers (the HTTP/2 pseudo-headers are in
	// Method and Path).
	Header http.Header
	// Body is the request body.
	Body []byte
	// ClientSubject is the Subject of the client certificate the request
	// came over, in RFC 2253 form.
	ClientSubject string
	// ClientTopic is the APNs topic of that certificate (its Subject UID).
	ClientTopic string
	// Response is what the server answered.
	Response Response
}

// Server is a running mock APNs. Build it with New; Close it when done.
// Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL to push to, e.g. "https://127.0.0.1:41234".
	URL string

	srv     *httptest.Server
	roots   *x509.CertPool
	certPEM []byte
	apnsIDs atomic.Uint64

	inFlight, maxInFlight, served atomic.Int64

	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	clients   map[*x509.Certificate]clientCert
	responses map[string][]Response
	delay     time.Duration
	recording bool
	requests  []Request
}

// New starts a mock APNs on a loopback port with a fresh self-signed
// certificate.
func New() *Server {
	cert, roots := serverCert()
	s := newServer(cert, roots)
	s.srv.StartTLS()
	s.URL = s.srv.URL
	return s
}

// Listen starts a mock APNs on addr (such as "127.0.0.1:8443") serving
// certPEM/keyPEM (see NewServerCertificate), so that a server process
// configured in advance with -push-url https://addr and -push-ca certPEM
// can reach it: what the devsim load tool does.
func Listen(addr string, certPEM, keyPEM []byte) (*Server, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("apnsmock: server certificate: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(certPEM) {
		return nil, fmt.Errorf("apnsmock: no certificate in PEM")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("apnsmock: %w", err)
	}
	s := newServer(cert, roots)
	s.certPEM = certPEM
	s.srv.Listener.Close()
	s.srv.Listener = ln
	s.srv.StartTLS()
	s.URL = s.srv.URL
	return s, nil
}

// NewServerCertificate returns a fresh self-signed certificate and its
// key, in PEM, valid for a year for localhost and the loopback addresses:
// what Listen serves and the MDM server must trust (-push-ca).
func NewServerCertificate() (certPEM, keyPEM []byte, err error) {
	cert, _ := serverCert()
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("apnsmock: encoding key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return certPEM, keyPEM, nil
}

// oidUserID is the Subject attribute (UID) that holds a push certificate's
// topic.
var oidUserID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// NewProviderCertificate returns a PEM certificate and PEM (PKCS #8) private
// key shaped like an APNs MDM push certificate for topic (the UID attribute
// of its Subject; none if topic is empty), self-signed with a new ECDSA
// P-256 key: what a test uploads to /v1/pushcert to push to this mock. It
// panics if the platform cannot generate a key.
func NewProviderCertificate(topic string) (certPEM, keyPEM []byte) {
	// Whole seconds, so stores keeping NotAfter at second precision
	// compare equal.
	now := time.Now().Truncate(time.Second)
	subject := pkix.Name{CommonName: "APSP:" + strings.ToLower(rand.Text())}
	if topic != "" {
		subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: oidUserID, Value: topic}}
	}
	der, key := selfSigned(&x509.Certificate{
		Subject:     subject,
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.AddDate(1, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(fmt.Sprintf("apnsmock: encoding key: %v", err))
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM
}

// newServer builds an unstarted mock serving cert.
func newServer(cert tls.Certificate, roots *x509.CertPool) *Server {
	s := &Server{
		roots:     roots,
		certPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		conns:     make(map[net.Conn]struct{}),
		clients:   make(map[*x509.Certificate]clientCert),
		responses: make(map[string][]Response),
		recording: true,
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.EnableHTTP2 = true
	s.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		// APNs authenticates the provider by its certificate; the mock
		// only requires one and reads its topic, trusting any issuer.
		ClientAuth: tls.RequireAnyClientCert,
		MinVersion: tls.VersionTLS12,
	}
	s.srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: MaxConcurrentStreams}
	// Clients that go away mid-handshake are routine in tests.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.Config.ConnState = s.connState
	return s
}

// Close shuts the server down, closing every connection.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// CertPEM returns the server's self-signed certificate in PEM, for a
// server process to trust (picomdm -push-ca).
func (s *Server) CertPEM() []byte { return s.certPEM }

// RootCAs returns a pool holding the server's self-signed certificate, for
// clients to trust.
func (s *Server) RootCAs() *x509.CertPool { return s.roots }

// Respond sets how the server answers pushes to token: with responses in
// order, the last one repeating (so Respond(tok, r) always answers r, and
// Respond(tok, busy, busy, ok) answers busy twice, then ok). Without
// responses, it forgets token's and answers 200 again.
func (s *Server) Respond(token []byte, responses ...Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := hex.EncodeToString(token)
	if len(responses) == 0 {
		delete(s.responses, key)
		return
	}
	s.responses[key] = append([]Response(nil), responses...)
}

// SetDelay makes every answer wait d (or until the client gives up).
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// SetRecording turns request recording on (the default) or off; off keeps
// the server's memory flat in benchmarks. The counters count either way.
func (s *Server) SetRecording(on bool) {
	s.mu.Lock()
	s.recording = on
	s.mu.Unlock()
}

// Requests returns the recorded requests, in the order they were answered.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// RequestsFor returns the recorded requests to token.
func (s *Server) RequestsFor(token []byte) []Request {
	key := hex.EncodeToString(token)
	var out []Request
	for _, r := range s.Requests() {
		if r.Token == key {
			out = append(out, r)
		}
	}
	return out
}

// Served returns how many requests the server has answered.
func (s *Server) Served() int64 { return s.served.Load() }

// OpenConns returns how many client connections are open: what a client
// keeps (HTTP/2 connections are long-lived) or leaks.
func (s *Server) OpenConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) connState(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	}
}

// MaxInFlight returns the most requests the server was handling at once.
func (s *Server) MaxInFlight() int64 { return s.maxInFlight.Load() }

// Reset forgets the recorded requests and zeroes the counters; answers set
// with Respond are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	s.requests = nil
	s.mu.Unlock()
	s.served.Store(0)
	s.maxInFlight.Store(s.inFlight.Load())
}

// serve answers one push. The checks are APNs': a wrong method, path,
// topic, push type or payload is refused with APNs' reason for it, so a
// client bug shows up as a failed push rather than passing unnoticed.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxInFlight.Load()
		if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}

	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	req := Request{
		Method: r.Method,
		Path:   r.URL.Path,
		Proto:  r.Proto,
		Header: r.Header,
		Body:   body,
	}
	token, hasPrefix := strings.CutPrefix(req.Path, "/3/device/")
	req.Token = token

	s.mu.Lock()
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		client := s.client(r.TLS.PeerCertificates[0])
		req.ClientSubject, req.ClientTopic = client.subject, client.topic
	}
	if s.recording {
		req.Header = r.Header.Clone()
	}
	delay := s.delay
	var resp Response
	switch {
	case r.ProtoMajor != 2:
		resp = Response{Status: http.StatusBadRequest, Reason: "HTTP2Required"} // the mock's own; APNs speaks HTTP/2 only
	case r.Method != http.MethodPost:
		resp = Response{Status: http.StatusMethodNotAllowed, Reason: "MethodNotAllowed"}
	case !hasPrefix:
		resp = Response{Status: http.StatusNotFound, Reason: "BadPath"}
	case token == "":
		resp = Response{Status: http.StatusBadRequest, Reason: "MissingDeviceToken"}
	case !isHex(token):
		resp = Response{Status: http.StatusBadRequest, Reason: "BadDeviceToken"}
	case r.Header.Get("apns-topic") == "":
		resp = Response{Status: http.StatusBadRequest, Reason: "MissingTopic"}
	case r.Header.Get("apns-topic") != req.ClientTopic:
		resp = Response{Status: http.StatusBadRequest, Reason: "TopicDisallowed"}
	case r.Header.Get("apns-push-type") != "mdm":
		resp = Response{Status: http.StatusBadRequest, Reason: "InvalidPushType"}
	case !isMDMPayload(body):
		resp = Response{Status: http.StatusBadRequest, Reason: "PayloadEmpty"}
	default:
		if queue := s.responses[token]; len(queue) > 0 {
			resp = queue[0]
			if len(queue) > 1 {
				s.responses[token] = queue[1:]
			}
		}
	}
	s.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	if resp.Status == 0 {
		resp.Status = http.StatusOK
	}
	req.Response = resp
	s.record(req)
	s.answer(w, resp)
	s.served.Add(1)
}

// clientCert is what the mock reads from a client certificate.
type clientCert struct{ subject, topic string }

// client returns the Subject and topic of leaf, a client certificate. They
// are worked out once per connection (whose requests share the parsed
// certificate), not once per request. Callers hold s.mu.
func (s *Server) client(leaf *x509.Certificate) clientCert {
	c, ok := s.clients[leaf]
	if !ok {
		c.subject = leaf.Subject.String()
		c.topic, _ = storage.TopicFromCert(leaf)
		s.clients[leaf] = c
	}
	return c
}

func (s *Server) record(req Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recording {
		s.requests = append(s.requests, req)
	}
}

func (s *Server) answer(w http.ResponseWriter, resp Response) {
	if resp.Status == http.StatusOK {
		n := s.apnsIDs.Add(1)
		// apns-id is a UUID; a counter keeps them unique and cheap.
		w.Header().Set("apns-id", fmt.Sprintf("00000000-0000-4000-8000-%012X", n))
		w.WriteHeader(http.StatusOK)
		return
	}
	body := struct {
		Reason    string `json:"reason"`
		Timestamp int64  `json:"timestamp,omitempty"`
	}{Reason: resp.Reason}
	if resp.Status == http.StatusGone {
		at := resp.Timestamp
		if at.IsZero() {
			at = time.Now()
		}
		body.Timestamp = at.UnixMilli()
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(resp.Status)
	w.Write(b)
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// isMDMPayload reports whether body is a JSON object with a non-empty
// "mdm" string: the PushMagic an MDM push carries.
func isMDMPayload(body []byte) bool {
	var payload struct {
		MDM string `json:"mdm"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	return dec.Decode(&payload) == nil && payload.MDM != ""
}

// serverCert returns a fresh self-signed ECDSA certificate for the
// loopback addresses and a pool trusting it.
func serverCert() (tls.Certificate, *x509.CertPool) {
	now := time.Now()
	der, key := selfSigned(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "apnsmock"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.AddDate(1, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	})
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		panic(fmt.Sprintf("apnsmock: parsing certificate: %v", err))
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
}

// selfSigned signs tmpl with a new ECDSA P-256 key and a random serial
// and returns the DER and the key. It panics if the platform cannot
// generate a key.
func selfSigned(tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("apnsmock: generating key: %v", err))
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64)); err != nil {
		panic(fmt.Sprintf("apnsmock: generating serial: %v", err))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(fmt.Sprintf("apnsmock: creating certificate: %v", err))
	}
	return der, key
}
