// Package profile writes, signs and serves MDM enrollment profiles: the
// .mobileconfig a device installs to enroll, holding an MDM payload
// (com.apple.mdm) and the identity it authenticates with, either a SCEP
// payload (com.apple.security.scep) or a PKCS#12 payload
// (com.apple.security.pkcs12). It follows Apple's Device Management
// profile reference (MDM, SCEP and PKCS12 payloads, TopLevel keys).
package profile

import (
	"errors"
	"fmt"
	"github.com/picomdm/picomdm/mdm"
	"net/url"
	"strings"

	"github.com/micromdm/plist"
)

// Defaults Generate fills in.
const (
	// DefaultAccessRights grants every MDM access right (Apple's bits
	// 1 through 4096, summed).
	DefaultAccessRights = 8191
	// DefaultIdentifier is the profile's PayloadIdentifier when Options
	// gives none; the payloads' identifiers extend it.
	DefaultIdentifier = "com.picomdm.enroll"
	// DefaultName is the profile's PayloadDisplayName when Options gives
	// none.
	DefaultName = "PicoMDM Enrollment"
	// DefaultSCEPSubject is the SCEP certificate subject when SCEP gives
	// none.
	DefaultSCEPSubject = "/O=PicoMDM/CN=PicoMDM Identity"
)

// DefaultServerCapabilities are the MDM payload's ServerCapabilities
// when Options gives none: PicoMDM handles user channels over their own
// connections and escrows Bootstrap Tokens.
var DefaultServerCapabilities = []string{
	"com.apple.mdm.per-user-connections",
	"com.apple.mdm.bootstraptoken",
}

// Options describes an enrollment profile. ServerURL, Topic and exactly
// one of SCEP and PKCS12 are required; the rest have defaults.
type Options struct {
	// ServerURL is where the device fetches commands and reports results.
	ServerURL string
	// CheckInURL is where the device sends check-in messages; empty
	// means ServerURL.
	CheckInURL string
	// Topic is the APNs push topic, the UID of the MDM push certificate's
	// subject (com.apple.mgmt.External.…).
	Topic string
	// AccessRights is the MDM payload's AccessRights bit mask; zero means
	// DefaultAccessRights.
	AccessRights int
	// ServerCapabilities overrides DefaultServerCapabilities when non-nil.
	ServerCapabilities []string
	// Name is the PayloadDisplayName; empty means DefaultName.
	Name string
	// Organization is the PayloadOrganization, omitted when empty.
	Organization string
	// Description is the PayloadDescription, omitted when empty.
	Description string
	// Identifier is the profile's PayloadIdentifier; empty means
	// DefaultIdentifier.
	Identifier string
	// SCEP makes the device request its identity certificate by SCEP.
	SCEP *SCEP
	// PKCS12 gives the device its identity certificate and key directly.
	PKCS12 *PKCS12
}

// SCEP describes the com.apple.security.scep payload.
type SCEP struct {
	// URL is the SCEP server's URL.
	URL string
	// Challenge is the SCEP challenge password, omitted when empty.
	Challenge string
	// Subject is the certificate subject in OpenSSL's slash form, e.g.
	// /O=Example/CN=Device; empty means DefaultSCEPSubject.
	Subject string
	// Name is the SCEP payload's Name (the CA-IDENT), omitted when empty.
	Name string
	// KeySize is the RSA key size the device generates: 1024, 2048 or
	// 4096 bits (Apple's Keysize; 0 means 2048). The built-in SCEP CA
	// refuses keys under 2048 bits.
	KeySize int
}

// PKCS12 describes the com.apple.security.pkcs12 payload.
type PKCS12 struct {
	// Data is the PKCS#12 file holding the identity certificate and key.
	Data []byte
	// Password unlocks Data, omitted when empty.
	Password string
}

// Errors Generate wraps for unusable Options.
var (
	ErrNoServerURL = errors.New("profile: no ServerURL")
	ErrNoTopic     = errors.New("profile: no Topic")
	ErrIdentity    = errors.New("profile: need exactly one of SCEP and PKCS12")
)

// payloadHeader holds the keys every payload carries.
type payloadHeader struct {
	PayloadType        string
	PayloadVersion     int
	PayloadIdentifier  string
	PayloadUUID        string
	PayloadDisplayName string `plist:",omitempty"`
}

// configuration is the top-level Configuration payload.
type configuration struct {
	payloadHeader
	PayloadOrganization string `plist:",omitempty"`
	PayloadDescription  string `plist:",omitempty"`
	PayloadContent      []any
}

// mdmPayload is the com.apple.mdm payload.
type mdmPayload struct {
	payloadHeader
	ServerURL               string
	CheckInURL              string `plist:",omitempty"`
	Topic                   string
	IdentityCertificateUUID string
	SignMessage             bool
	CheckOutWhenRemoved     bool
	AccessRights            int
	ServerCapabilities      []string
}

// scepPayload is the com.apple.security.scep payload.
type scepPayload struct {
	payloadHeader
	PayloadContent scepContent
}

// scepContent is the SCEP payload's request description.
type scepContent struct {
	URL       string
	Name      string `plist:",omitempty"`
	Challenge string `plist:",omitempty"`
	Subject   [][][]string
	KeyType   string `plist:"Key Type"`
	Keysize   int
	KeyUsage  int `plist:"Key Usage"`
}

// pkcs12Payload is the com.apple.security.pkcs12 payload.
type pkcs12Payload struct {
	payloadHeader
	PayloadContent []byte
	Password       string `plist:",omitempty"`
}

// Generate writes the enrollment profile described by opts as an XML
// plist (unsigned; see Sign). Every PayloadUUID is fresh and random.
func Generate(opts Options) ([]byte, error) {
	if err := checkURL("ServerURL", opts.ServerURL, ErrNoServerURL); err != nil {
		return nil, err
	}
	if opts.CheckInURL != "" {
		if err := checkURL("CheckInURL", opts.CheckInURL, nil); err != nil {
			return nil, err
		}
	}
	if opts.Topic == "" {
		return nil, ErrNoTopic
	}
	if (opts.SCEP == nil) == (opts.PKCS12 == nil) {
		return nil, ErrIdentity
	}
	rights := opts.AccessRights
	if rights == 0 {
		rights = DefaultAccessRights
	}
	if rights < 0 || rights > DefaultAccessRights {
		return nil, fmt.Errorf("profile: AccessRights %d outside 1…%d", rights, DefaultAccessRights)
	}
	caps := opts.ServerCapabilities
	if caps == nil {
		caps = DefaultServerCapabilities
	}
	id := opts.Identifier
	if id == "" {
		id = DefaultIdentifier
	}
	name := opts.Name
	if name == "" {
		name = DefaultName
	}

	var identity any
	identityUUID := mdm.NewUUID()
	if s := opts.SCEP; s != nil {
		if err := checkURL("SCEP URL", s.URL, errors.New("profile: no SCEP URL")); err != nil {
			return nil, err
		}
		keySize := s.KeySize
		if keySize == 0 {
			keySize = 2048
		}
		if keySize != 1024 && keySize != 2048 && keySize != 4096 {
			return nil, fmt.Errorf("profile: SCEP key size %d: want 1024, 2048 or 4096", keySize)
		}
		subject := s.Subject
		if subject == "" {
			subject = DefaultSCEPSubject
		}
		rdns, err := parseSubject(subject)
		if err != nil {
			return nil, err
		}
		identity = scepPayload{
			payloadHeader: payloadHeader{
				PayloadType: "com.apple.security.scep", PayloadVersion: 1,
				PayloadIdentifier: id + ".scep", PayloadUUID: identityUUID,
				PayloadDisplayName: "MDM Identity (SCEP)",
			},
			PayloadContent: scepContent{
				URL: s.URL, Name: s.Name, Challenge: s.Challenge, Subject: rdns,
				KeyType: "RSA", Keysize: keySize,
				KeyUsage: 5, // digital signature (1) and key encipherment (4)
			},
		}
	} else {
		if len(opts.PKCS12.Data) == 0 {
			return nil, errors.New("profile: empty PKCS12 data")
		}
		identity = pkcs12Payload{
			payloadHeader: payloadHeader{
				PayloadType: "com.apple.security.pkcs12", PayloadVersion: 1,
				PayloadIdentifier: id + ".identity", PayloadUUID: identityUUID,
				PayloadDisplayName: "MDM Identity",
			},
			PayloadContent: opts.PKCS12.Data,
			Password:       opts.PKCS12.Password,
		}
	}
	mdmp := mdmPayload{
		payloadHeader: payloadHeader{
			PayloadType: "com.apple.mdm", PayloadVersion: 1,
			PayloadIdentifier: id + ".mdm", PayloadUUID: mdm.NewUUID(),
			PayloadDisplayName: "Mobile Device Management",
		},
		ServerURL:               opts.ServerURL,
		CheckInURL:              opts.CheckInURL,
		Topic:                   opts.Topic,
		IdentityCertificateUUID: identityUUID,
		// PicoMDM authenticates devices by the CMS signature in the
		// Mdm-Signature header, so devices must sign every message.
		SignMessage:         true,
		CheckOutWhenRemoved: true,
		AccessRights:        rights,
		ServerCapabilities:  caps,
	}
	top := configuration{
		payloadHeader: payloadHeader{
			PayloadType: "Configuration", PayloadVersion: 1,
			PayloadIdentifier: id, PayloadUUID: mdm.NewUUID(),
			PayloadDisplayName: name,
		},
		PayloadOrganization: opts.Organization,
		PayloadDescription:  opts.Description,
		PayloadContent:      []any{identity, mdmp},
	}
	b, err := plist.MarshalIndent(top, "\t")
	if err != nil {
		return nil, fmt.Errorf("profile: encoding: %w", err)
	}
	return b, nil
}

// checkURL requires raw to be an absolute http(s) URL; missing is the
// error for an empty one (nil makes an empty URL invalid too).
func checkURL(what, raw string, missing error) error {
	if raw == "" && missing != nil {
		return missing
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("profile: %s %q is not an absolute http(s) URL", what, raw)
	}
	return nil
}

// parseSubject turns /O=Example/CN=Device into the SCEP payload's subject
// form, an array of RDNs each an array of [OID-or-name, value] pairs.
func parseSubject(s string) ([][][]string, error) {
	var rdns [][][]string
	for part := range strings.SplitSeq(strings.TrimPrefix(s, "/"), "/") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("profile: SCEP subject %q: want /KEY=value/… (e.g. /O=Example/CN=Device)", s)
		}
		rdns = append(rdns, [][]string{{k, v}})
	}
	return rdns, nil
}
