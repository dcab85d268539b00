package profile

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"

	"github.com/picomdm/picomdm/test/testpki"
)

// decodedProfile is what a device reads from an enrollment profile.
type decodedProfile struct {
	PayloadType         string
	PayloadVersion      int
	PayloadIdentifier   string
	PayloadUUID         string
	PayloadDisplayName  string
	PayloadOrganization string
	PayloadContent      []map[string]any
}

// decode parses a generated profile, failing the test on error.
func decode(t *testing.T, b []byte) decodedProfile {
	t.Helper()
	var p decodedProfile
	if err := plist.Unmarshal(b, &p); err != nil {
		t.Fatalf("decoding profile: %v\n%s", err, b)
	}
	return p
}

// payload returns the one payload of type typ.
func payload(t *testing.T, p decodedProfile, typ string) map[string]any {
	t.Helper()
	i := slices.IndexFunc(p.PayloadContent, func(m map[string]any) bool { return m["PayloadType"] == typ })
	if i < 0 {
		t.Fatalf("no %s payload", typ)
	}
	return p.PayloadContent[i]
}

// asInt reads a decoded plist integer whatever width the decoder chose.
func asInt(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case uint64:
		return int64(n)
	case int:
		return int64(n)
	}
	return -1
}

// TestGenerateSCEP checks a SCEP enrollment profile's payloads, values
// and the IdentityCertificateUUID link.
func TestGenerateSCEP(t *testing.T) {
	b, err := Generate(Options{
		ServerURL:    "https://mdm.example.com/mdm",
		CheckInURL:   "https://mdm.example.com/checkin",
		Topic:        "com.apple.mgmt.External.1234",
		Name:         "Example MDM",
		Organization: "Example Inc.",
		SCEP:         &SCEP{URL: "https://mdm.example.com/scep", Challenge: "secret", Subject: "/O=Example/CN=Device"},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := decode(t, b)
	if p.PayloadType != "Configuration" || p.PayloadVersion != 1 || p.PayloadIdentifier != DefaultIdentifier ||
		p.PayloadUUID == "" || p.PayloadDisplayName != "Example MDM" || p.PayloadOrganization != "Example Inc." {
		t.Errorf("top level = %+v", p)
	}
	if len(p.PayloadContent) != 2 {
		t.Fatalf("%d payloads, want 2", len(p.PayloadContent))
	}
	m := payload(t, p, "com.apple.mdm")
	s := payload(t, p, "com.apple.security.scep")
	for key, want := range map[string]any{
		"ServerURL":               "https://mdm.example.com/mdm",
		"CheckInURL":              "https://mdm.example.com/checkin",
		"Topic":                   "com.apple.mgmt.External.1234",
		"SignMessage":             true,
		"CheckOutWhenRemoved":     true,
		"IdentityCertificateUUID": s["PayloadUUID"],
	} {
		if m[key] != want {
			t.Errorf("MDM %s = %#v, want %#v", key, m[key], want)
		}
	}
	if got := asInt(m["AccessRights"]); got != DefaultAccessRights {
		t.Errorf("AccessRights = %d", got)
	}
	if got, _ := m["ServerCapabilities"].([]any); len(got) != 2 || got[0] != DefaultServerCapabilities[0] || got[1] != DefaultServerCapabilities[1] {
		t.Errorf("ServerCapabilities = %#v", m["ServerCapabilities"])
	}
	if m["PayloadUUID"] == s["PayloadUUID"] || m["PayloadUUID"] == p.PayloadUUID || s["PayloadUUID"] == "" {
		t.Error("PayloadUUIDs are not distinct")
	}
	content, _ := s["PayloadContent"].(map[string]any)
	if content["URL"] != "https://mdm.example.com/scep" || content["Challenge"] != "secret" || content["Key Type"] != "RSA" ||
		asInt(content["Keysize"]) != 2048 || asInt(content["Key Usage"]) != 5 {
		t.Errorf("SCEP content = %#v", content)
	}
	subject, _ := content["Subject"].([]any)
	if len(subject) != 2 {
		t.Fatalf("Subject = %#v", content["Subject"])
	}
	cn, _ := subject[1].([]any)
	pair, _ := cn[0].([]any)
	if len(pair) != 2 || pair[0] != "CN" || pair[1] != "Device" {
		t.Errorf("Subject CN = %#v", subject[1])
	}
}

// TestGeneratePKCS12 checks the PKCS#12 identity alternative.
func TestGeneratePKCS12(t *testing.T) {
	b, err := Generate(Options{
		ServerURL: "https://mdm.example.com/mdm", Topic: "com.apple.mgmt.External.1",
		AccessRights: 4095, PKCS12: &PKCS12{Data: []byte{1, 2, 3}, Password: "pw"},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := decode(t, b)
	m := payload(t, p, "com.apple.mdm")
	id := payload(t, p, "com.apple.security.pkcs12")
	if m["IdentityCertificateUUID"] != id["PayloadUUID"] || asInt(m["AccessRights"]) != 4095 {
		t.Errorf("MDM payload = %#v", m)
	}
	if _, ok := m["CheckInURL"]; ok {
		t.Error("empty CheckInURL written")
	}
	if data, _ := id["PayloadContent"].([]byte); !bytes.Equal(data, []byte{1, 2, 3}) || id["Password"] != "pw" {
		t.Errorf("PKCS12 payload = %#v", id)
	}
}

// TestGenerateRefuses checks that unusable Options fail loudly.
func TestGenerateRefuses(t *testing.T) {
	good := Options{ServerURL: "https://a.example/mdm", Topic: "t", SCEP: &SCEP{URL: "https://a.example/scep"}}
	if _, err := Generate(good); err != nil {
		t.Fatalf("good options: %v", err)
	}
	for name, tt := range map[string]struct {
		edit func(*Options)
		is   error
	}{
		"no server URL":   {func(o *Options) { o.ServerURL = "" }, ErrNoServerURL},
		"relative URL":    {func(o *Options) { o.ServerURL = "/mdm" }, nil},
		"no topic":        {func(o *Options) { o.Topic = "" }, ErrNoTopic},
		"no identity":     {func(o *Options) { o.SCEP = nil }, ErrIdentity},
		"two identities":  {func(o *Options) { o.PKCS12 = &PKCS12{Data: []byte{1}} }, ErrIdentity},
		"access rights":   {func(o *Options) { o.AccessRights = 9000 }, nil},
		"bad subject":     {func(o *Options) { o.SCEP = &SCEP{URL: "https://a.example/scep", Subject: "CN"} }, nil},
		"no SCEP URL":     {func(o *Options) { o.SCEP = &SCEP{} }, nil},
		"bad checkin URL": {func(o *Options) { o.CheckInURL = "ftp://x" }, nil},
	} {
		o := good
		tt.edit(&o)
		_, err := Generate(o)
		if err == nil || (tt.is != nil && !errors.Is(err, tt.is)) {
			t.Errorf("%s: err = %v, want %v", name, err, tt.is)
		}
	}
}

// TestSign checks that signed profiles verify and carry the profile.
func TestSign(t *testing.T) {
	unsigned, err := Generate(Options{ServerURL: "https://a.example/mdm", Topic: "t", SCEP: &SCEP{URL: "https://a.example/scep"}})
	if err != nil {
		t.Fatal(err)
	}
	signer := testpki.SelfSigned(t, "Profile Signer", testpki.RSA())
	cert, key, certPEM, keyPEM := signer.Cert, signer.Key, signer.PEM(), signer.KeyPEM(t, "PRIVATE KEY")
	direct, err := Sign(unsigned, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	fromPEM, err := SignPEM(unsigned, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for name, signed := range map[string][]byte{"Sign": direct, "SignPEM": fromPEM} {
		p7, err := pkcs7.Parse(signed)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := p7.Verify(); err != nil {
			t.Errorf("%s: verify: %v", name, err)
		}
		if !bytes.Equal(p7.Content, unsigned) {
			t.Errorf("%s: signed content differs from the profile", name)
		}
		if s := p7.GetOnlySigner(); s == nil || !s.Equal(cert) {
			t.Errorf("%s: signer is not the signing certificate", name)
		}
	}
	if _, err := SignPEM(unsigned, keyPEM, keyPEM); err == nil {
		t.Error("SignPEM with no certificate: no error")
	}
	if _, err := SignPEM(unsigned, certPEM, certPEM); err == nil {
		t.Error("SignPEM with no key: no error")
	}
}

// TestHandler checks the enrollment endpoint's methods and content type.
func TestHandler(t *testing.T) {
	body := []byte("<plist/>")
	h := NewHandler(body)
	for _, tt := range []struct {
		method     string
		wantStatus int
	}{
		{http.MethodGet, http.StatusOK},
		{http.MethodHead, http.StatusOK},
		{http.MethodPost, http.StatusMethodNotAllowed},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, "/mdm/enroll", nil))
		if rec.Code != tt.wantStatus {
			t.Errorf("%s: status %d, want %d", tt.method, rec.Code, tt.wantStatus)
			continue
		}
		if tt.wantStatus != http.StatusOK {
			continue
		}
		if ct := rec.Header().Get("Content-Type"); ct != ContentType {
			t.Errorf("%s: Content-Type %q, want %q", tt.method, ct, ContentType)
		}
		if tt.method == http.MethodGet && !bytes.Equal(rec.Body.Bytes(), body) {
			t.Errorf("body = %q", rec.Body.Bytes())
		}
	}
}
