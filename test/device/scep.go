package device

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"time"

	"github.com/micromdm/plist"
	scepclient "github.com/micromdm/scep/v2/client"
	"github.com/micromdm/scep/v2/cryptoutil/x509util"
	"github.com/smallstep/pkcs7"
	"github.com/smallstep/scep"
)

// EnrollProfile is what a device takes from an enrollment profile's MDM
// (com.apple.mdm) and SCEP (com.apple.security.scep) payloads.
type EnrollProfile struct {
	ServerURL, CheckInURL, Topic string
	IdentityCertificateUUID      string
	SignMessage                  bool
	AccessRights                 int
	// SCEP is the payload IdentityCertificateUUID names.
	SCEP SCEPPayload
	// Signed says the profile came wrapped in a CMS signature that
	// verified.
	Signed bool
}

// SCEPPayload is a com.apple.security.scep payload's content.
type SCEPPayload struct {
	URL       string
	Name      string
	Challenge string
	Subject   [][][]string
	Keysize   int
	KeyType   string `plist:"Key Type"`
	KeyUsage  int    `plist:"Key Usage"`
}

// profilePayload is one payload of a profile's PayloadContent.
type profilePayload struct {
	PayloadType             string
	PayloadUUID             string
	ServerURL               string
	CheckInURL              string
	Topic                   string
	IdentityCertificateUUID string
	SignMessage             bool
	AccessRights            int
	PayloadContent          any
}

// FetchProfile downloads an enrollment profile the way a device's browser
// does, and parses it (ParseProfile).
func FetchProfile(ctx context.Context, client *http.Client, url string) (*EnrollProfile, error) {
	if client == nil {
		client = defaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching profile: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("fetching profile: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{Code: resp.StatusCode, Body: body}
	}
	return ParseProfile(body)
}

// ParseProfile reads an enrollment profile, signed (CMS, whose signature
// must verify) or not.
func ParseProfile(body []byte) (*EnrollProfile, error) {
	out := new(EnrollProfile)
	if !bytes.HasPrefix(bytes.TrimSpace(body), []byte("<")) {
		p7, err := pkcs7.Parse(body)
		if err != nil {
			return nil, fmt.Errorf("profile: neither a plist nor CMS: %w", err)
		}
		if err := p7.Verify(); err != nil {
			return nil, fmt.Errorf("profile: signature: %w", err)
		}
		body, out.Signed = p7.Content, true
	}
	var top struct {
		PayloadType    string
		PayloadContent []profilePayload
	}
	if err := plist.Unmarshal(body, &top); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if top.PayloadType != "Configuration" {
		return nil, fmt.Errorf("profile: PayloadType %q, want Configuration", top.PayloadType)
	}
	scepByUUID := map[string]profilePayload{}
	var mdmPayload *profilePayload
	for i, p := range top.PayloadContent {
		switch p.PayloadType {
		case "com.apple.mdm":
			mdmPayload = &top.PayloadContent[i]
		case "com.apple.security.scep":
			scepByUUID[p.PayloadUUID] = p
		}
	}
	if mdmPayload == nil {
		return nil, errors.New("profile: no com.apple.mdm payload")
	}
	out.ServerURL, out.CheckInURL, out.Topic = mdmPayload.ServerURL, mdmPayload.CheckInURL, mdmPayload.Topic
	out.IdentityCertificateUUID, out.SignMessage, out.AccessRights = mdmPayload.IdentityCertificateUUID, mdmPayload.SignMessage, mdmPayload.AccessRights
	sp, ok := scepByUUID[out.IdentityCertificateUUID]
	if !ok {
		return nil, fmt.Errorf("profile: IdentityCertificateUUID %q names no SCEP payload", out.IdentityCertificateUUID)
	}
	// Re-encode the content to decode it typed.
	raw, err := plist.Marshal(sp.PayloadContent)
	if err != nil {
		return nil, fmt.Errorf("profile: SCEP payload: %w", err)
	}
	if err := plist.Unmarshal(raw, &out.SCEP); err != nil {
		return nil, fmt.Errorf("profile: SCEP payload: %w", err)
	}
	return out, nil
}

// SubjectName turns a SCEP payload subject ([[["O","Example"]],
// [["CN","Device"]]]) into a pkix.Name.
func SubjectName(rdns [][][]string) pkix.Name {
	var n pkix.Name
	for _, rdn := range rdns {
		for _, pair := range rdn {
			if len(pair) != 2 {
				continue
			}
			switch k, v := pair[0], pair[1]; k {
			case "CN":
				n.CommonName = v
			case "O":
				n.Organization = append(n.Organization, v)
			case "OU":
				n.OrganizationalUnit = append(n.OrganizationalUnit, v)
			case "C":
				n.Country = append(n.Country, v)
			case "L":
				n.Locality = append(n.Locality, v)
			case "ST":
				n.Province = append(n.Province, v)
			}
		}
	}
	return n
}

// SCEPFailure is a CertRep FAILURE from a SCEP server: it refused the
// request (a bad or used challenge, say).
type SCEPFailure struct{ FailInfo scep.FailInfo }

func (e *SCEPFailure) Error() string {
	return fmt.Sprintf("SCEP request refused (failInfo %s)", e.FailInfo)
}

// nopLogger is the go-kit logger the SCEP client takes.
type nopLogger struct{}

func (nopLogger) Log(...any) error { return nil }

// SCEPEnroll gets an identity certificate from the SCEP server at url as
// an Apple device installing a SCEP payload does: a new RSA key of
// keyBits, a CSR for subject carrying challenge, GetCACert, then a
// PKCSReq signed with a self-signed certificate and encrypted to the CA.
// A refusal is a *SCEPFailure.
func SCEPEnroll(ctx context.Context, url, challenge string, subject pkix.Name, keyBits int) (*x509.Certificate, *rsa.PrivateKey, error) {
	if keyBits == 0 {
		keyBits = 2048
	}
	key, err := rsa.GenerateKey(rand.Reader, keyBits)
	if err != nil {
		return nil, nil, err
	}
	csrDER, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: subject, SignatureAlgorithm: x509.SHA256WithRSA},
		ChallengePassword:  challenge,
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("scep: CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, nil, fmt.Errorf("scep: CSR: %w", err)
	}
	self, err := selfSigned(key, subject)
	if err != nil {
		return nil, nil, err
	}
	client, err := scepclient.New(url, nopLogger{})
	if err != nil {
		return nil, nil, fmt.Errorf("scep: %w", err)
	}
	resp, n, err := client.GetCACert(ctx, "")
	if err != nil {
		return nil, nil, fmt.Errorf("scep: GetCACert: %w", err)
	}
	var caCerts []*x509.Certificate
	if n > 1 {
		caCerts, err = scep.CACerts(resp)
	} else {
		caCerts, err = x509.ParseCertificates(resp)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("scep: GetCACert: %w", err)
	}
	msg, err := scep.NewCSRRequest(csr, &scep.PKIMessage{
		MessageType:   scep.PKCSReq,
		Recipients:    caCerts,
		SignerKey:     key,
		SignerCert:    self,
		CSRReqMessage: &scep.CSRReqMessage{ChallengePassword: challenge},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("scep: PKCSReq: %w", err)
	}
	respBytes, err := client.PKIOperation(ctx, msg.Raw)
	if err != nil {
		return nil, nil, fmt.Errorf("scep: PKIOperation: %w", err)
	}
	rep, err := scep.ParsePKIMessage(respBytes, scep.WithCACerts(caCerts))
	if err != nil {
		return nil, nil, fmt.Errorf("scep: CertRep: %w", err)
	}
	switch rep.PKIStatus {
	case scep.SUCCESS:
	case scep.FAILURE:
		return nil, nil, &SCEPFailure{FailInfo: rep.FailInfo}
	default:
		return nil, nil, fmt.Errorf("scep: pkiStatus %s", rep.PKIStatus)
	}
	if err := rep.DecryptPKIEnvelope(self, key); err != nil {
		return nil, nil, fmt.Errorf("scep: CertRep envelope: %w", err)
	}
	return rep.CertRepMessage.Certificate, key, nil
}

// selfSigned is the throw-away certificate a SCEP client signs its first
// request with (RFC 8894 §2.3).
func selfSigned(key *rsa.PrivateKey, subject pkix.Name) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("scep: self-signed certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// NewFromProfile makes a device the way one enrolls from a served
// profile: it downloads profileURL, gets its identity by SCEP with the
// profile's challenge, and talks to the profile's ServerURL (and
// CheckInURL) reporting its Topic. opts apply as with New (after those).
func NewFromProfile(ctx context.Context, profileURL string, opts ...Option) (*Device, *EnrollProfile, error) {
	p, err := FetchProfile(ctx, nil, profileURL)
	if err != nil {
		return nil, nil, err
	}
	cert, key, err := SCEPEnroll(ctx, p.SCEP.URL, p.SCEP.Challenge, SubjectName(p.SCEP.Subject), p.SCEP.Keysize)
	if err != nil {
		return nil, p, err
	}
	base := []Option{WithIdentity(cert, key), WithTopic(p.Topic)}
	if p.CheckInURL != "" && p.CheckInURL != p.ServerURL {
		base = append(base, WithCheckinURL(p.CheckInURL))
	}
	d, err := New(nil, p.ServerURL, append(base, opts...)...)
	return d, p, err
}
