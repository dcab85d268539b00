package mdm_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	mplist "github.com/micromdm/plist"
	"github.com/picomdm/picomdm/http/auth"
	httpmdm "github.com/picomdm/picomdm/http/mdm"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service/certauth"
	"github.com/picomdm/picomdm/service/core"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/test/device"
)

// benchServer is the /mdm handler over the real service chain (cert-auth
// and core) and an in-memory store, with one enrolled device per key type.
type benchServer struct {
	handler http.Handler
	store   *inmem.Store
	devices map[string]*device.Device
}

var benchKeyTypes = []struct {
	name string
	kind device.KeyType
}{{"RSA2048", device.RSA2048}, {"ECDSAP256", device.ECDSAP256}}

func newBenchServer(b *testing.B) *benchServer {
	b.Helper()
	ca, err := device.NewCA()
	if err != nil {
		b.Fatal(err)
	}
	verifier, err := auth.NewVerifier(ca.CertPEM(), nil)
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	store := inmem.New()
	svc := certauth.New(core.New(store, core.WithLogger(logger)), store, certauth.WithLogger(logger))
	s := &benchServer{
		handler: httpmdm.CheckinAndCommandHandler(svc, httpmdm.WithVerifier(verifier), httpmdm.WithLogger(logger)),
		store:   store,
		devices: map[string]*device.Device{},
	}
	for _, k := range benchKeyTypes {
		dev, err := device.New(ca, "http://mdm.invalid/mdm", device.WithKeyType(k.kind))
		if err != nil {
			b.Fatal(err)
		}
		s.devices[k.name] = dev
		s.mustServe(b, dev, device.ContentTypeCheckin, marshalBench(b, &mdm.Authenticate{
			Enrollment:   mdm.Enrollment{UDID: dev.UDID},
			MessageType:  mdm.MessageType{MessageType: mdm.MessageAuthenticate},
			Topic:        dev.Topic,
			SerialNumber: dev.SerialNumber,
		}))
		s.mustServe(b, dev, device.ContentTypeCheckin, tokenUpdateBody(b, dev))
	}
	return s
}

func marshalBench(b *testing.B, v any) []byte {
	b.Helper()
	body, err := mplist.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func tokenUpdateBody(b *testing.B, dev *device.Device) []byte {
	return marshalBench(b, &mdm.TokenUpdate{
		Enrollment:  mdm.Enrollment{UDID: dev.UDID},
		MessageType: mdm.MessageType{MessageType: mdm.MessageTokenUpdate},
		Push:        mdm.Push{PushMagic: dev.PushMagic, Token: dev.Token, Topic: dev.Topic},
		UnlockToken: dev.UnlockToken,
	})
}

func reportBody(b *testing.B, dev *device.Device, commandUUID, status string) []byte {
	return marshalBench(b, &mdm.CommandResults{
		Enrollment:  mdm.Enrollment{UDID: dev.UDID},
		CommandUUID: commandUUID,
		Status:      status,
	})
}

// signedRequest is a device request with its body and Mdm-Signature, built
// once and replayed: what the benchmark measures is the server's side.
type signedRequest struct {
	body        []byte
	signature   string
	contentType string
}

func newSignedRequest(b *testing.B, dev *device.Device, contentType string, body []byte) *signedRequest {
	b.Helper()
	req, err := dev.NewRequest(context.Background(), dev.ServerURL, contentType, body, true)
	if err != nil {
		b.Fatal(err)
	}
	return &signedRequest{body: body, signature: req.Header.Get(device.SignatureHeader), contentType: contentType}
}

// serve runs one request through the handler and returns the recorder.
func (s *benchServer) serve(sr *signedRequest) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPut, "/mdm", strings.NewReader(string(sr.body)))
	req.Header.Set("Content-Type", sr.contentType)
	req.Header.Set(device.SignatureHeader, sr.signature)
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, req)
	return rec
}

func (s *benchServer) mustServe(b *testing.B, dev *device.Device, contentType string, body []byte) []byte {
	b.Helper()
	rec := s.serve(newSignedRequest(b, dev, contentType, body))
	if rec.Code != http.StatusOK {
		b.Fatalf("status %d", rec.Code)
	}
	return rec.Body.Bytes()
}

// BenchmarkHandler runs whole /mdm requests through the handler, the real
// service chain and the in-memory store: a TokenUpdate check-in, an Idle
// poll of an empty queue, and an Acknowledged report that is answered with
// the next queued command (a command round trip).
func BenchmarkHandler(b *testing.B) {
	s := newBenchServer(b)
	for _, k := range benchKeyTypes {
		dev := s.devices[k.name]
		b.Run(k.name+"/TokenUpdate", func(b *testing.B) {
			sr := newSignedRequest(b, dev, device.ContentTypeCheckin, tokenUpdateBody(b, dev))
			b.ReportAllocs()
			for b.Loop() {
				if rec := s.serve(sr); rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
		b.Run(k.name+"/Idle", func(b *testing.B) {
			sr := newSignedRequest(b, dev, device.ContentTypeReport, reportBody(b, dev, "", mdm.StatusIdle))
			b.ReportAllocs()
			for b.Loop() {
				if rec := s.serve(sr); rec.Code != http.StatusOK || rec.Body.Len() != 0 {
					b.Fatalf("status %d, %d bytes", rec.Code, rec.Body.Len())
				}
			}
		})
		run := 0
		b.Run(k.name+"/Acknowledged", func(b *testing.B) {
			run++ // the function runs once per b.N tried; UUIDs must not repeat
			// Queue b.N+1 commands and sign the report acknowledging each
			// before the clock starts; every iteration acknowledges one
			// and gets the next.
			reqs := make([]*signedRequest, b.N)
			for i := range b.N + 1 {
				uuid := fmt.Sprintf("%s-%d-%08d", k.name, run, i)
				raw := marshalBench(b, map[string]any{
					"CommandUUID": uuid,
					"Command":     map[string]any{"RequestType": "DeviceInformation", "Queries": []string{"Model"}},
				})
				cmd, err := mdm.DecodeCommand(raw)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.store.EnqueueCommand(context.Background(), []string{dev.UDID}, cmd); err != nil {
					b.Fatal(err)
				}
				if i < b.N {
					reqs[i] = newSignedRequest(b, dev, device.ContentTypeReport, reportBody(b, dev, uuid, mdm.StatusAcknowledged))
				}
			}
			// Hand the first command out, as the device's Idle would.
			s.serve(newSignedRequest(b, dev, device.ContentTypeReport, reportBody(b, dev, "", mdm.StatusIdle)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if rec := s.serve(reqs[i]); rec.Code != http.StatusOK || rec.Body.Len() == 0 {
					b.Fatalf("status %d, %d bytes", rec.Code, rec.Body.Len())
				}
			}
		})
	}
}
