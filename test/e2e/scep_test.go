package e2e

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/service/certauth"
	"github.com/picomdm/picomdm/service/scepca"
	"github.com/picomdm/picomdm/test/device"
	"github.com/picomdm/picomdm/test/sqltest"
)

// TestEnrollFromProfile is issue #14's whole enrollment, as an Apple
// device does it, on every backend: the server runs the built-in SCEP CA
// and no -ca; the device downloads /mdm/enroll, gets its identity by SCEP
// with the profile's one-time challenge, enrolls with it and receives a
// command; the API shows the issued certificate, tied to the challenge and
// to the enrollment's cert-auth association.
func TestEnrollFromProfile(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			c := ctx(t)
			s := startSCEP(t, backend.name, backend.dsn(t))
			topic := s.uploadPushCert()

			d, p, err := device.NewFromProfile(c, s.URL+"/mdm/enroll")
			if err != nil {
				t.Fatalf("enrolling from the profile: %v", err)
			}
			if p.ServerURL != s.URL+"/mdm" || p.Topic != topic || !p.SignMessage || p.SCEP.URL != s.URL+"/scep" || p.SCEP.Challenge == "" {
				t.Fatalf("profile %+v; want ServerURL %s/mdm, Topic %s, SignMessage, SCEP URL %s/scep and a challenge", p, s.URL, topic, s.URL)
			}
			// The download minted the only challenge; SCEP used it up.
			chs := s.challenges()
			if len(chs) != 1 || chs[0].State != "used" || chs[0].UsedAt == nil || chs[0].Challenge != "" {
				t.Fatalf("challenges after the SCEP enrollment: %+v, want the profile's, used, without its password", chs)
			}
			challengeID := chs[0].ID

			if err := d.Enroll(c); err != nil {
				t.Fatalf("Authenticate/TokenUpdate with the SCEP identity: %v", err)
			}
			uuid, _ := s.command("ProfileList", d.ID())
			cmd, err := d.Idle(c)
			if err != nil || cmd == nil || cmd.CommandUUID != uuid {
				t.Fatalf("Idle: %+v, %v; want command %s", cmd, err, uuid)
			}
			if next, err := d.Report(c, uuid, "Acknowledged", nil); err != nil || next != nil {
				t.Fatalf("acknowledging: next %+v, %v; want no more commands", next, err)
			}

			hash := certauth.HashCert(d.Cert)
			certs := s.issuedCerts()
			if len(certs) != 1 {
				t.Fatalf("issued certificates: %+v, want one", certs)
			}
			got := certs[0]
			if got.ChallengeID == nil || *got.ChallengeID != challengeID || got.Hash != hash ||
				got.Serial != scepca.SerialText(d.Cert.SerialNumber) || got.NotAfter == nil || got.IssuedAt == nil {
				t.Fatalf("issued certificate %+v; want serial %s, hash %s, challenge %s", got, scepca.SerialText(d.Cert.SerialNumber), hash, challengeID)
			}
			if assoc := certificatesOf(t, s, d.ID()); len(assoc) != 1 || assoc[0] != hash {
				t.Fatalf("cert-auth association of %s: %v, want %s", d.ID(), assoc, hash)
			}
			var one api.IssuedCertJSON
			s.apiJSON(http.MethodGet, "/v1/enrollment/certificates/"+got.Serial, nil, http.StatusOK, &one)
			if block, _ := pem.Decode([]byte(one.PEM)); block == nil || !bytes.Equal(block.Bytes, d.Cert.Raw) {
				t.Fatalf("GET /v1/enrollment/certificates/%s: PEM %q is not the device's certificate", got.Serial, one.PEM)
			}
		})
	}
}

// scepEnroll requests an identity by SCEP from s with challenge.
func scepEnroll(t *testing.T, s *server, challenge string) (*x509.Certificate, error) {
	t.Helper()
	cert, _, err := device.SCEPEnroll(ctx(t), s.URL+"/scep", challenge, device.SubjectName([][][]string{{{"CN", "e2e"}}}), 2048)
	return cert, err
}

// refusedBySCEP fails the test unless err is a CertRep FAILURE.
func refusedBySCEP(t *testing.T, what string, err error) {
	t.Helper()
	var failure *device.SCEPFailure
	if !errors.As(err, &failure) {
		t.Fatalf("%s: %v, want a SCEP FAILURE", what, err)
	}
}

// TestOneTimeChallengeOnce: a one-time challenge — from a downloaded
// profile or minted through the API — issues exactly one certificate; a
// revoked one none; the static -scep-challenge any number. A refused
// request records nothing.
func TestOneTimeChallengeOnce(t *testing.T) {
	const static = "e2e-static-challenge"
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			c := ctx(t)
			// -enroll-one-time: downloads still mint one-time challenges
			// although a static one is accepted.
			s := startSCEP(t, backend.name, backend.dsn(t), "-scep-challenge", static, "-enroll-one-time")
			s.uploadPushCert()
			countIs := func(want int) {
				t.Helper()
				if got := s.issuedCerts(); len(got) != want {
					t.Fatalf("%d issued certificates %+v, want %d", len(got), got, want)
				}
			}

			p, err := device.FetchProfile(c, nil, s.URL+"/mdm/enroll")
			if err != nil {
				t.Fatal(err)
			}
			if p.SCEP.Challenge == static {
				t.Fatal("with -enroll-one-time the profile carries the static challenge")
			}
			chs := s.challenges()
			if len(chs) != 1 || chs[0].State != "valid" {
				t.Fatalf("challenges after one download: %+v, want one valid", chs)
			}
			profileChallenge := chs[0].ID
			if _, err := scepEnroll(t, s, p.SCEP.Challenge); err != nil {
				t.Fatalf("first SCEP enrollment with the profile's challenge: %v", err)
			}
			_, err = scepEnroll(t, s, p.SCEP.Challenge)
			refusedBySCEP(t, "second SCEP enrollment with the profile's challenge", err)
			countIs(1)
			if got := s.challenge(profileChallenge); got.State != "used" || got.UsedAt == nil {
				t.Fatalf("profile's challenge after use: %+v, want used", got)
			}

			minted := s.mintChallenge()
			if _, err := scepEnroll(t, s, minted.Challenge); err != nil {
				t.Fatalf("SCEP enrollment with a minted challenge: %v", err)
			}
			_, err = scepEnroll(t, s, minted.Challenge)
			refusedBySCEP(t, "second SCEP enrollment with a minted challenge", err)
			countIs(2)
			if got := s.challenge(minted.ID); got.State != "used" {
				t.Fatalf("minted challenge after use: %+v, want used", got)
			}
			if certs := s.issuedCerts(); certs[1].ChallengeID == nil || *certs[1].ChallengeID != minted.ID {
				t.Fatalf("second issued certificate %+v, want challenge %s", certs[1], minted.ID)
			}

			revoked := s.mintChallenge()
			var after api.ChallengeJSON
			s.apiJSON(http.MethodDelete, "/v1/enrollment/challenges/"+revoked.ID, nil, http.StatusOK, &after)
			if after.State != "revoked" || after.RevokedAt == nil || after.Challenge != "" {
				t.Fatalf("DELETE challenge answered %+v, want revoked", after)
			}
			_, err = scepEnroll(t, s, revoked.Challenge)
			refusedBySCEP(t, "SCEP enrollment with a revoked challenge", err)
			if got := s.challenge(revoked.ID); got.State != "revoked" || got.UsedAt != nil {
				t.Fatalf("revoked challenge after a refused request: %+v, want revoked and unused", got)
			}
			_, err = scepEnroll(t, s, "not-a-challenge")
			refusedBySCEP(t, "SCEP enrollment with an unknown challenge", err)
			countIs(2)

			for i := 0; i < 2; i++ {
				if _, err := scepEnroll(t, s, static); err != nil {
					t.Fatalf("SCEP enrollment %d with the static challenge: %v", i+1, err)
				}
			}
			certs := s.issuedCerts()
			if len(certs) != 4 || certs[2].ChallengeID != nil || certs[3].ChallengeID != nil {
				t.Fatalf("issued certificates %+v, want 4, the static challenge's without challenge_id", certs)
			}
		})
	}
}

// TestForeignCARefused: with the built-in CA and no -ca, a device whose
// identity another CA issued is refused (400, as any certificate the
// verifier does not trust) and leaves no enrollment behind.
func TestForeignCARefused(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			c := ctx(t)
			s := startSCEP(t, backend.name, backend.dsn(t))
			other, err := device.NewCA()
			if err != nil {
				t.Fatal(err)
			}
			d, err := device.New(other, s.mdmURL(), device.WithKeyType(device.ECDSAP256))
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Authenticate(c); statusOf(t, err) != http.StatusBadRequest {
				t.Fatalf("Authenticate with a foreign CA's certificate: %v, want 400", err)
			}
			if err := d.TokenUpdate(c); statusOf(t, err) != http.StatusBadRequest {
				t.Fatalf("TokenUpdate with a foreign CA's certificate: %v, want 400", err)
			}
			if status, body := s.api(http.MethodGet, "/v1/enrollments/"+d.ID(), nil); status != http.StatusNotFound {
				t.Fatalf("GET /v1/enrollments/%s after the refused Authenticate: %d %s, want 404", d.ID(), status, body)
			}
			if certs := s.issuedCerts(); len(certs) != 0 {
				t.Fatalf("issued certificates: %+v, want none", certs)
			}
		})
	}
}

// getCACert answers GET /scep?operation=GetCACert.
func getCACert(t *testing.T, s *server) []byte {
	t.Helper()
	status, body := s.api(http.MethodGet, "/scep?operation=GetCACert", nil)
	if status != http.StatusOK || len(body) == 0 {
		t.Fatalf("GetCACert: %d %q", status, body)
	}
	return body
}

// TestReplicasShareCA: two replicas starting for the first time on one
// fresh database at the same moment end up with one SCEP CA, and a device
// that got its identity from one is served by the other.
func TestReplicasShareCA(t *testing.T) {
	for _, backend := range []struct {
		name string
		dsn  func(testing.TB) string
	}{
		{"mysql", sqltest.MySQL},
		{"pgsql", sqltest.PostgreSQL},
	} {
		t.Run(backend.name, func(t *testing.T) {
			c := ctx(t)
			dsn := backend.dsn(t)
			replicas := []*scepServer{prepareSCEP(t, backend.name, dsn), prepareSCEP(t, backend.name, dsn)}
			errs := make([]error, len(replicas))
			var wg sync.WaitGroup
			for i, r := range replicas {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = r.build()
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					for _, r := range replicas {
						if r.app != nil {
							r.app.Close()
						}
						r.ln.Close()
					}
					t.Fatalf("replica %d's first start: %v\n%s", i, err, replicas[i].stderr.String())
				}
			}
			created := 0
			for _, r := range replicas {
				if strings.Contains(r.stderr.String(), "created the SCEP CA") {
					created++
				}
			}
			if created != 1 {
				t.Fatalf("%d replicas created a SCEP CA, want exactly one", created)
			}
			a, b := replicas[0].serve(t), replicas[1].serve(t)

			caA, caB := getCACert(t, a), getCACert(t, b)
			if !bytes.Equal(caA, caB) {
				t.Fatal("the replicas serve different SCEP CAs")
			}
			if _, err := x509.ParseCertificate(caA); err != nil {
				t.Fatalf("GetCACert is not one DER certificate: %v", err)
			}

			a.uploadPushCert()
			d, p, err := device.NewFromProfile(c, a.URL+"/mdm/enroll")
			if err != nil {
				t.Fatalf("enrolling from replica A's profile: %v", err)
			}
			if p.SCEP.URL != a.URL+"/scep" {
				t.Fatalf("SCEP URL %s, want replica A's", p.SCEP.URL)
			}
			if issuer, err := x509.ParseCertificate(caA); err != nil || d.Cert.CheckSignatureFrom(issuer) != nil {
				t.Fatal("the device's identity is not from the shared CA")
			}
			d.ServerURL = b.mdmURL()
			if err := d.Enroll(c); err != nil {
				t.Fatalf("checking in at replica B: %v", err)
			}
			uuid, _ := a.command("DeviceInformation", d.ID())
			cmd, err := d.Idle(c)
			if err != nil || cmd == nil || cmd.CommandUUID != uuid {
				t.Fatalf("Idle at replica B: %+v, %v; want command %s", cmd, err, uuid)
			}
			if next, err := d.Report(c, uuid, "Acknowledged", nil); err != nil || next != nil {
				t.Fatalf("acknowledging at replica B: %+v, %v", next, err)
			}
			if certs := b.issuedCerts(); len(certs) != 1 || certs[0].Hash != certauth.HashCert(d.Cert) {
				t.Fatalf("issued certificates seen by replica B: %+v", certs)
			}
		})
	}
}

// webhookParams returns the topic and url_params of each webhook event.
func webhookParams(t *testing.T, events []recorded) []string {
	t.Helper()
	var out []string
	for _, r := range events {
		var ev struct {
			Topic        string `json:"topic"`
			CheckinEvent *struct {
				Params map[string]string `json:"url_params"`
			} `json:"checkin_event"`
			AcknowledgeEvent *struct {
				Params map[string]string `json:"url_params"`
			} `json:"acknowledge_event"`
		}
		if err := json.Unmarshal(r.Body, &ev); err != nil {
			t.Fatalf("webhook event %s: %v", r.Body, err)
		}
		var params map[string]string
		switch {
		case ev.CheckinEvent != nil:
			params = ev.CheckinEvent.Params
		case ev.AcknowledgeEvent != nil:
			params = ev.AcknowledgeEvent.Params
		}
		out = append(out, fmt.Sprintf("%s %v", ev.Topic, params))
	}
	return out
}

// TestProfileParams: the API's profile passes its extra query parameters
// into ServerURL, so the device's requests carry them (webhook
// url_params); ?challenge= sets the challenge; without a push certificate
// no profile is made (503) and no challenge is minted.
func TestProfileParams(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			c := ctx(t)
			hook := newRecorder(t, nil)
			s := startSCEP(t, backend.name, backend.dsn(t), "-webhook-url", hook.srv.URL)

			if _, err := device.FetchProfile(c, nil, s.URL+"/mdm/enroll"); statusOf(t, err) != http.StatusServiceUnavailable {
				t.Fatalf("/mdm/enroll without a push certificate: %v, want 503", err)
			}
			if status, body := s.api(http.MethodGet, "/v1/enrollment/profile", nil); status != http.StatusServiceUnavailable {
				t.Fatalf("API profile without a push certificate: %d %s, want 503", status, body)
			}
			if chs := s.challenges(); len(chs) != 0 {
				t.Fatalf("challenges minted by refused downloads: %+v", chs)
			}
			topic := s.uploadPushCert()

			status, header, body := s.apiResponse(http.MethodGet, "/v1/enrollment/profile?group=staff", nil)
			if status != http.StatusOK {
				t.Fatalf("GET /v1/enrollment/profile?group=staff: %d %s", status, body)
			}
			p, err := device.ParseProfile(body)
			if err != nil {
				t.Fatal(err)
			}
			if p.ServerURL != s.URL+"/mdm?group=staff" || p.Topic != topic || p.SCEP.URL != s.URL+"/scep" {
				t.Fatalf("profile %+v; want ServerURL %s/mdm?group=staff", p, s.URL)
			}
			id := header.Get("X-Challenge-Id")
			if id == "" || s.challenge(id).State != "valid" {
				t.Fatalf("X-Challenge-Id %q: want the profile's fresh one-time challenge", id)
			}
			cert, key, err := device.SCEPEnroll(c, p.SCEP.URL, p.SCEP.Challenge, device.SubjectName(p.SCEP.Subject), p.SCEP.Keysize)
			if err != nil {
				t.Fatalf("SCEP with the API profile's challenge: %v", err)
			}
			d, err := device.New(nil, p.ServerURL, device.WithIdentity(cert, key), device.WithTopic(p.Topic))
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Enroll(c); err != nil {
				t.Fatalf("enrolling at %s: %v", p.ServerURL, err)
			}
			if _, err := d.Idle(c); err != nil {
				t.Fatalf("Idle at %s: %v", p.ServerURL, err)
			}
			want := []string{"mdm.Authenticate map[group:staff]", "mdm.TokenUpdate map[group:staff]", "mdm.Connect map[group:staff]"}
			if got := webhookParams(t, hook.waitFor(t, len(want))); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("webhook events %q, want %q", got, want)
			}
			if certs := s.issuedCerts(); len(certs) != 1 || certs[0].ChallengeID == nil || *certs[0].ChallengeID != id {
				t.Fatalf("issued certificates %+v, want one with challenge %s", certs, id)
			}

			before := len(s.challenges())
			status, header, body = s.apiResponse(http.MethodGet, "/v1/enrollment/profile?challenge=operator-given", nil)
			if status != http.StatusOK {
				t.Fatalf("GET /v1/enrollment/profile?challenge=…: %d %s", status, body)
			}
			if p, err = device.ParseProfile(body); err != nil {
				t.Fatal(err)
			}
			if p.SCEP.Challenge != "operator-given" || p.ServerURL != s.URL+"/mdm" || header.Get("X-Challenge-Id") != "" {
				t.Fatalf("profile with ?challenge=: challenge %q, ServerURL %s, X-Challenge-Id %q; want the given challenge, no query, no minted challenge",
					p.SCEP.Challenge, p.ServerURL, header.Get("X-Challenge-Id"))
			}
			if after := len(s.challenges()); after != before {
				t.Fatalf("a profile with a given challenge minted one: %d challenges, want %d", after, before)
			}
		})
	}
}
