package device_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"net/http"
	"regexp"
	"testing"

	"github.com/micromdm/plist"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/test/device"
	"github.com/smallstep/pkcs7"
)

var uuidRE = regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)

// testCA is shared: CA creation is cheap, but one is enough.
func newCA(t *testing.T) *device.CA {
	t.Helper()
	ca, err := device.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func newDevice(t *testing.T, ca *device.CA, url string, opts ...device.Option) *device.Device {
	t.Helper()
	d, err := device.New(ca, url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestEnrollAndDrain(t *testing.T) {
	for _, kt := range []device.KeyType{device.RSA2048, device.ECDSAP256} {
		t.Run(kt.String(), func(t *testing.T) {
			ctx := t.Context()
			ca := newCA(t)
			srv, ts := newFakeServer(t, ca)
			d := newDevice(t, ca, ts.URL+"/mdm", device.WithKeyType(kt), device.WithCheckinURL(ts.URL+"/checkin"))

			switch d.Key.(type) {
			case *rsa.PrivateKey:
				if kt != device.RSA2048 {
					t.Errorf("key is RSA, want %v", kt)
				}
			case *ecdsa.PrivateKey:
				if kt != device.ECDSAP256 {
					t.Errorf("key is ECDSA, want %v", kt)
				}
			}
			if !uuidRE.MatchString(d.UDID) || !uuidRE.MatchString(d.PushMagic) {
				t.Errorf("UDID %q / PushMagic %q not upper-case UUIDs", d.UDID, d.PushMagic)
			}
			if len(d.Token) != 32 || d.Topic != device.DefaultTopic || d.SerialNumber == "" || len(d.UnlockToken) == 0 {
				t.Errorf("token %x topic %q serial %q unlock %x", d.Token, d.Topic, d.SerialNumber, d.UnlockToken)
			}

			if err := d.Enroll(ctx); err != nil {
				t.Fatal(err)
			}
			reqs := srv.recorded()
			if len(reqs) != 2 {
				t.Fatalf("server saw %d requests, want 2", len(reqs))
			}
			for _, r := range reqs {
				if r.Path != "/checkin" || r.ContentType != device.ContentTypeCheckin || !r.Signed || !r.Cert.Equal(d.Cert) {
					t.Errorf("check-in: path %s type %s signed %v", r.Path, r.ContentType, r.Signed)
				}
			}
			auth, ok := reqs[0].Checkin.(*mdm.Authenticate)
			if !ok || auth.UDID != d.UDID || auth.SerialNumber != d.SerialNumber || auth.Topic != d.Topic {
				t.Errorf("Authenticate = %+v", reqs[0].Checkin)
			}
			tu, ok := reqs[1].Checkin.(*mdm.TokenUpdate)
			if !ok || !bytes.Equal(tu.Token, d.Token) || tu.PushMagic != d.PushMagic || tu.Topic != d.Topic || !bytes.Equal(tu.UnlockToken, d.UnlockToken) {
				t.Errorf("TokenUpdate = %+v", reqs[1].Checkin)
			}

			var wantRaw [][]byte
			for _, rt := range []string{"DeviceInformation", "InstalledApplicationList", "ProfileList"} {
				_, raw := srv.enqueue(d.ID(), rt)
				wantRaw = append(wantRaw, raw)
			}
			cmds, err := d.Drain(ctx, func(c *device.Command) (string, map[string]any) {
				if c.RequestType == "InstalledApplicationList" {
					return mdm.StatusError, device.ErrorChain(12021, "MCMDMErrorDomain", "broken")
				}
				return mdm.StatusAcknowledged, map[string]any{"QueryResponses": map[string]any{"UDID": d.UDID}}
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(cmds) != 3 {
				t.Fatalf("drained %d commands, want 3", len(cmds))
			}
			for i, c := range cmds {
				if !bytes.Equal(c.Raw, wantRaw[i]) {
					t.Errorf("command %d raw bytes differ from the enqueued ones", i)
				}
				var decoded struct{ Command struct{ Queries []string } }
				if err := c.Decode(&decoded); err != nil || len(decoded.Command.Queries) != 1 {
					t.Errorf("Decode: %v %+v", err, decoded)
				}
			}
			reports := srv.recorded()[2:]
			if len(reports) != 4 {
				t.Fatalf("server saw %d reports, want 4", len(reports))
			}
			if r := reports[0]; r.Report.Status != mdm.StatusIdle || r.Report.CommandUUID != "" || r.Path != "/mdm" || r.ContentType != device.ContentTypeReport {
				t.Errorf("first report = %+v at %s (%s)", r.Report, r.Path, r.ContentType)
			}
			if r := reports[2].Report; r.Status != mdm.StatusError || r.CommandUUID != cmds[1].CommandUUID ||
				len(r.ErrorChain) != 1 || r.ErrorChain[0].ErrorCode != 12021 || r.ErrorChain[0].ErrorDomain != "MCMDMErrorDomain" {
				t.Errorf("error report = %+v", r)
			}
			var extra struct{ QueryResponses struct{ UDID string } }
			if err := plist.Unmarshal(reports[1].Report.Raw, &extra); err != nil || extra.QueryResponses.UDID != d.UDID {
				t.Errorf("acknowledged report lacks QueryResponses: %v %s", err, reports[1].Report.Raw)
			}
			if next, err := d.Idle(ctx); err != nil || next != nil {
				t.Errorf("Idle on an empty queue = %v, %v", next, err)
			}
		})
	}
}

func TestSignBodyIsDetachedCMS(t *testing.T) {
	ca := newCA(t)
	d := newDevice(t, ca, "http://unused")
	body := []byte("<plist>hello</plist>")
	sig, err := d.SignBody(body)
	if err != nil {
		t.Fatal(err)
	}
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(p7.Content) != 0 {
		t.Error("signature carries content; want detached")
	}
	if len(p7.Certificates) != 1 || !p7.Certificates[0].Equal(d.Cert) {
		t.Error("signature does not carry exactly the device certificate")
	}
	p7.Content = body
	if err := p7.VerifyWithChain(ca.Pool()); err != nil {
		t.Errorf("verifying over the body: %v", err)
	}
	p7.Content = []byte("<plist>tampered</plist>")
	if err := p7.Verify(); err == nil {
		t.Error("signature verifies over another body")
	}
}

// TestServerRefusesBadIdentity shows the fake server really checks
// signatures, so the passing tests mean the simulator signs correctly.
func TestServerRefusesBadIdentity(t *testing.T) {
	ctx := t.Context()
	ca := newCA(t)
	_, ts := newFakeServer(t, ca)
	url := ts.URL + "/mdm"
	d := newDevice(t, ca, url)
	body, err := plist.Marshal(&mdm.CommandResults{Enrollment: mdm.Enrollment{UDID: d.UDID}, Status: mdm.StatusIdle})
	if err != nil {
		t.Fatal(err)
	}

	if status, _, err := d.Send(ctx, url, device.ContentTypeReport, body, true); err != nil || status != http.StatusOK {
		t.Fatalf("signed report: %d %v", status, err)
	}
	if status, _, _ := d.Send(ctx, url, device.ContentTypeReport, body, false); status != http.StatusBadRequest {
		t.Errorf("unsigned report: %d, want 400", status)
	}
	sig, err := d.SignBody([]byte("something else"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := d.NewRequest(ctx, url, device.ContentTypeReport, body, false)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(device.SignatureHeader, sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("report signed over another body: %d, want 400", resp.StatusCode)
	}

	stranger := newDevice(t, newCA(t), url)
	var se *device.StatusError
	if err := stranger.Authenticate(ctx); !errors.As(err, &se) || se.Code != http.StatusBadRequest {
		t.Errorf("device of another CA: %v, want a 400 StatusError", err)
	}
	noClientAuth := newDevice(t, ca, url, device.WithIssueOptions(device.WithoutClientAuth()))
	if err := noClientAuth.Authenticate(ctx); !errors.As(err, &se) || se.Code != http.StatusBadRequest {
		t.Errorf("certificate without client auth: %v, want a 400 StatusError", err)
	}
}

func TestCertHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		form device.CertHeaderForm
		sign bool
	}{
		{"rfc9440", device.CertHeaderRFC9440, false},
		{"escaped-pem", device.CertHeaderEscapedPEM, false},
		{"rfc9440+signature", device.CertHeaderRFC9440, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newCA(t)
			srv, ts := newFakeServer(t, ca)
			srv.certHeader = "X-Client-Cert"
			opts := []device.Option{device.WithCertHeader("X-Client-Cert", tc.form)}
			if tc.sign {
				opts = append(opts, device.WithSigning(true))
			}
			d := newDevice(t, ca, ts.URL+"/mdm", opts...)
			if err := d.Enroll(t.Context()); err != nil {
				t.Fatal(err)
			}
			for _, r := range srv.recorded() {
				if !r.Cert.Equal(d.Cert) || r.Signed != tc.sign {
					t.Errorf("server got cert %v, signed %v", r.Cert.Subject, r.Signed)
				}
			}
		})
	}
}

func TestChannelIDs(t *testing.T) {
	ctx := t.Context()
	ca := newCA(t)
	srv, ts := newFakeServer(t, ca)
	url := ts.URL + "/mdm"
	dev := newDevice(t, ca, url)
	ue := newDevice(t, ca, url, device.WithUserEnrollment())
	if ue.UDID != "" || ue.SerialNumber != "" || !uuidRE.MatchString(ue.EnrollmentID) {
		t.Errorf("User Enrollment device: UDID %q serial %q EnrollmentID %q", ue.UDID, ue.SerialNumber, ue.EnrollmentID)
	}
	for _, tc := range []struct {
		name       string
		d          *device.Device
		wantID     string
		wantParent string
		wantType   mdm.EnrollType
	}{
		{"device", dev, dev.UDID, "", mdm.Device},
		{"user", dev.UserChannel("A1B2C3D4-0000-0000-0000-000000000001", "alice", "Alice A"), dev.UDID + ":A1B2C3D4-0000-0000-0000-000000000001", dev.UDID, mdm.User},
		{"shared-ipad", dev.SharedIPadUser("bob"), dev.UDID + ":bob", dev.UDID, mdm.SharedIPad},
		{"ue-device", ue, ue.EnrollmentID, "", mdm.UserEnrollmentDevice},
		{"ue-user", ue.UserChannel("UE-USER-1", "", ""), ue.EnrollmentID + ":UE-USER-1", ue.EnrollmentID, mdm.UserEnrollment},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.d
			if d.ID() != tc.wantID || d.ParentID() != tc.wantParent || d.Type() != tc.wantType {
				t.Errorf("ID %q parent %q type %q; want %q %q %q", d.ID(), d.ParentID(), d.Type(), tc.wantID, tc.wantParent, tc.wantType)
			}
			if tc.wantParent != "" {
				parent := d.DeviceChannel()
				if parent.ID() != tc.wantParent || !d.Cert.Equal(parent.Cert) || bytes.Equal(d.Token, parent.Token) ||
					d.PushMagic == parent.PushMagic || d.UnlockToken != nil {
					t.Error("user channel must share the identity and have its own push token, PushMagic and no UnlockToken")
				}
			}
			n := len(srv.recorded())
			if err := d.Enroll(ctx); err != nil {
				t.Fatal(err)
			}
			reqs := srv.recorded()[n:]
			// User channels only send TokenUpdate.
			if wantN := map[bool]int{true: 1, false: 2}[tc.wantParent != ""]; len(reqs) != wantN {
				t.Errorf("Enroll sent %d messages, want %d", len(reqs), wantN)
			}
			got := reqs[len(reqs)-1].ID
			if got.ID != tc.wantID || got.ParentID != tc.wantParent || got.Type != tc.wantType {
				t.Errorf("server resolved %+v", got)
			}
		})
	}
}

func TestCheckins(t *testing.T) {
	ctx := t.Context()
	ca := newCA(t)
	_, ts := newFakeServer(t, ca)
	d := newDevice(t, ca, ts.URL+"/mdm")

	var se *device.StatusError
	if _, err := d.UserAuthenticate(ctx, ""); !errors.As(err, &se) || se.Code != http.StatusGone || !bytes.Contains(se.Body, []byte("declined")) {
		t.Errorf("UserAuthenticate: %v, want a 410 StatusError", err)
	}
	if token, err := d.GetBootstrapToken(ctx); err != nil || token != nil {
		t.Errorf("GetBootstrapToken before any: %x, %v", token, err)
	}
	if err := d.SetBootstrapToken(ctx, []byte("bootstrap")); err != nil {
		t.Fatal(err)
	}
	if token, err := d.GetBootstrapToken(ctx); err != nil || string(token) != "bootstrap" {
		t.Errorf("GetBootstrapToken: %q, %v", token, err)
	}
	if resp, err := d.DeclarativeManagement(ctx, "tokens", []byte(`{"a":1}`)); err != nil || string(resp) != `tokens:{"a":1}` {
		t.Errorf("DeclarativeManagement: %q, %v", resp, err)
	}
	if token, err := d.GetToken(ctx, "com.apple.maid"); err != nil || string(token) != "token for com.apple.maid" {
		t.Errorf("GetToken: %q, %v", token, err)
	}
	if err := d.CheckOut(ctx); err != nil {
		t.Error(err)
	}
}

func TestDrainLimit(t *testing.T) {
	ca := newCA(t)
	srv, ts := newFakeServer(t, ca)
	srv.endless = true
	d := newDevice(t, ca, ts.URL+"/mdm", device.WithDrainLimit(5))
	cmds, err := d.Drain(t.Context(), nil)
	if !errors.Is(err, device.ErrDrainLimit) || len(cmds) != 5 {
		t.Errorf("Drain against an endless queue: %d commands, %v", len(cmds), err)
	}
}

func TestNewNeedsIdentity(t *testing.T) {
	if _, err := device.New(nil, "http://x"); err == nil {
		t.Error("New without CA or identity succeeded")
	}
	ca := newCA(t)
	d := newDevice(t, ca, "http://x", device.WithUDID("FIXED-UDID"))
	twin := newDevice(t, nil, "http://x", device.WithIdentity(d.Cert, d.Key))
	if d.UDID != "FIXED-UDID" || !twin.Cert.Equal(d.Cert) || twin.UDID == d.UDID {
		t.Errorf("UDID %q, twin shares cert %v, twin UDID %q", d.UDID, twin.Cert.Equal(d.Cert), twin.UDID)
	}
	if _, err := device.New(ca, ""); err == nil {
		t.Error("New without server URL succeeded")
	}
}
