package device

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/picomdm/picomdm/mdm"
)

// DefaultTopic is the push topic devices report unless WithTopic says
// otherwise. A real device reports the topic of its MDM payload, which is
// the UID of the server's push certificate subject.
const DefaultTopic = "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000"

// DefaultDrainLimit is how many commands Drain accepts in one exchange
// before giving up with ErrDrainLimit, unless WithDrainLimit says otherwise.
const DefaultDrainLimit = 1000

// defaultClient keeps more idle connections per host than
// http.DefaultTransport (2), so a fleet polling one server reuses its
// connections instead of reconnecting.
var defaultClient = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 1024
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{Transport: t, Timeout: 60 * time.Second}
}()

// CertHeaderForm is how a device in cert-header mode encodes its
// certificate in the header (see WithCertHeader).
type CertHeaderForm int

const (
	// CertHeaderRFC9440 is RFC 9440's Client-Cert form: ":base64(DER):".
	CertHeaderRFC9440 CertHeaderForm = iota
	// CertHeaderEscapedPEM is URL-escaped PEM, as nginx's
	// $ssl_client_escaped_cert passes it on.
	CertHeaderEscapedPEM
)

// Device is one simulated MDM channel of an Apple device: a device
// channel, or a user channel derived from one with UserChannel,
// SharedIPadUser or (for User Enrollment) UserChannel on a device made
// WithUserEnrollment.
//
// The exported fields are what the device reports; tests may change them
// between requests, e.g. to spoof another device's UDID or to present
// another certificate. Methods may be called from several goroutines as
// long as the fields are not changed meanwhile.
type Device struct {
	// Enrollment identifiers; which are set depends on the channel kind
	// (see ID).
	UDID             string
	UserID           string
	UserShortName    string
	UserLongName     string
	EnrollmentID     string
	EnrollmentUserID string

	// Push details reported in TokenUpdate; each channel has its own
	// Token and PushMagic.
	Token     []byte
	PushMagic string
	Topic     string
	// UnlockToken is reported in the device channel's TokenUpdate.
	UnlockToken []byte

	// What Authenticate reports about the hardware.
	SerialNumber string
	DeviceName   string
	Model        string
	ModelName    string
	ProductName  string
	OSVersion    string
	BuildVersion string

	// Cert is the identity certificate the device signs with (or sends in
	// the cert header); Key is its private key.
	Cert *x509.Certificate
	Key  crypto.Signer

	// ServerURL receives command reports and, unless CheckinURL is set,
	// check-ins.
	ServerURL string
	// CheckinURL, if set, receives check-ins (servers run with -checkin).
	CheckinURL string

	client         *http.Client
	sign           bool
	certHeader     string
	certHeaderForm CertHeaderForm
	drainLimit     int
	parent         *Device
}

// Option configures New.
type Option func(*config)

type config struct {
	keyType        KeyType
	client         *http.Client
	checkinURL     string
	sign           bool
	certHeader     string
	certHeaderForm CertHeaderForm
	topic          string
	userEnrollment bool
	udid           string
	cert           *x509.Certificate
	key            crypto.Signer
	issueOpts      []IssueOption
	drainLimit     int
}

// WithKeyType sets the kind of key the device's identity gets (default
// RSA2048).
func WithKeyType(k KeyType) Option { return func(c *config) { c.keyType = k } }

// WithHTTPClient sets the HTTP client the device sends with.
func WithHTTPClient(client *http.Client) Option { return func(c *config) { c.client = client } }

// WithCheckinURL sends check-ins to url instead of the server URL, for
// servers run with -checkin.
func WithCheckinURL(url string) Option { return func(c *config) { c.checkinURL = url } }

// WithCertHeader makes the device send its certificate in header name,
// encoded as form, the way a TLS-terminating proxy passes a client
// certificate on, and stop signing bodies. A later WithSigning(true) turns
// signing back on, so that both are sent.
func WithCertHeader(name string, form CertHeaderForm) Option {
	return func(c *config) {
		c.certHeader, c.certHeaderForm, c.sign = name, form, false
	}
}

// WithSigning turns the Mdm-Signature header on (the default) or off.
func WithSigning(sign bool) Option { return func(c *config) { c.sign = sign } }

// WithTopic sets the push topic the device reports (default DefaultTopic).
func WithTopic(topic string) Option { return func(c *config) { c.topic = topic } }

// WithUserEnrollment makes the device a User Enrollment (BYOD) device: it
// reports an EnrollmentID instead of a UDID, and no serial number.
func WithUserEnrollment() Option { return func(c *config) { c.userEnrollment = true } }

// WithUDID sets the device's UDID instead of a random one (with
// WithUserEnrollment: its EnrollmentID).
func WithUDID(udid string) Option { return func(c *config) { c.udid = udid } }

// WithIdentity makes the device use cert and key instead of getting a new
// identity from the CA; New then accepts a nil CA. Two devices sharing one
// identity is how tests provoke cert-auth refusals.
func WithIdentity(cert *x509.Certificate, key crypto.Signer) Option {
	return func(c *config) { c.cert, c.key = cert, key }
}

// WithIssueOptions passes opts to CA.Issue for the device's certificate,
// e.g. to give it an expired one.
func WithIssueOptions(opts ...IssueOption) Option {
	return func(c *config) { c.issueOpts = append(c.issueOpts, opts...) }
}

// WithDrainLimit sets how many commands Drain accepts in one exchange
// (default, and for n <= 0, DefaultDrainLimit).
func WithDrainLimit(n int) Option { return func(c *config) { c.drainLimit = n } }

// New returns a device channel with a new identity issued by ca, a random
// UDID (or EnrollmentID), serial number, push token, PushMagic and
// UnlockToken, that talks to the MDM server at serverURL. Options are
// applied in order.
func New(ca *CA, serverURL string, opts ...Option) (*Device, error) {
	cfg := config{keyType: RSA2048, client: defaultClient, sign: true, topic: DefaultTopic, drainLimit: DefaultDrainLimit}
	for _, opt := range opts {
		opt(&cfg)
	}
	if serverURL == "" {
		return nil, errors.New("device: empty server URL")
	}
	if cfg.client == nil {
		return nil, errors.New("device: nil HTTP client")
	}
	if cfg.drainLimit <= 0 {
		cfg.drainLimit = DefaultDrainLimit
	}
	d := &Device{
		Token:          randomBytes(32),
		PushMagic:      mdm.NewUUID(),
		Topic:          cfg.topic,
		UnlockToken:    randomBytes(48),
		DeviceName:     "devsim",
		Model:          "Mac14,2",
		ModelName:      "MacBook Air",
		ProductName:    "Mac14,2",
		OSVersion:      "15.3",
		BuildVersion:   "24D60",
		ServerURL:      serverURL,
		CheckinURL:     cfg.checkinURL,
		client:         cfg.client,
		sign:           cfg.sign,
		certHeader:     cfg.certHeader,
		certHeaderForm: cfg.certHeaderForm,
		drainLimit:     cfg.drainLimit,
	}
	id := cfg.udid
	if id == "" {
		id = mdm.NewUUID()
	}
	if cfg.userEnrollment {
		d.EnrollmentID = id
	} else {
		d.UDID = id
		d.SerialNumber = newSerialNumber()
		d.DeviceName = "devsim-" + d.SerialNumber
	}
	switch {
	case cfg.cert != nil || cfg.key != nil:
		if cfg.cert == nil || cfg.key == nil {
			return nil, errors.New("device: WithIdentity needs both a certificate and a key")
		}
		d.Cert, d.Key = cfg.cert, cfg.key
	case ca == nil:
		return nil, errors.New("device: nil CA")
	default:
		key, err := GenerateKey(cfg.keyType)
		if err != nil {
			return nil, fmt.Errorf("device: generating identity key: %w", err)
		}
		cert, err := ca.Issue(id, key, cfg.issueOpts...)
		if err != nil {
			return nil, err
		}
		d.Cert, d.Key = cert, key
	}
	return d, nil
}

// UserChannel returns the user channel of user userID on this device,
// sharing its identity and server: a macOS user channel (UserID,
// UserShortName, UserLongName), or, on a User Enrollment device, the
// enrollment's user channel (EnrollmentUserID). It has its own push token
// and PushMagic and no UnlockToken.
func (d *Device) UserChannel(userID, shortName, longName string) *Device {
	u := d.newChannel()
	if u.UDID == "" {
		u.EnrollmentUserID = userID
	} else {
		u.UserID = userID
	}
	u.UserShortName, u.UserLongName = shortName, longName
	return u
}

// SharedIPadUser returns the Shared iPad user channel of user shortName on
// this device: UserID mdm.SharedIPadUserID, sharing the device's identity,
// with its own push token and PushMagic.
func (d *Device) SharedIPadUser(shortName string) *Device {
	u := d.newChannel()
	u.UserID = mdm.SharedIPadUserID
	u.UserShortName = shortName
	return u
}

// newChannel copies the device channel's identity, hardware details and
// transport, with fresh push details and no user identifiers.
func (d *Device) newChannel() *Device {
	root := d.DeviceChannel()
	u := *root
	u.UserID, u.UserShortName, u.UserLongName, u.EnrollmentUserID = "", "", "", ""
	u.Token = randomBytes(32)
	u.PushMagic = mdm.NewUUID()
	u.UnlockToken = nil
	u.parent = root
	return &u
}

// DeviceChannel returns the device channel a user channel belongs to, or d
// itself for a device channel.
func (d *Device) DeviceChannel() *Device {
	if d.parent != nil {
		return d.parent
	}
	return d
}

// ID returns the enrollment ID the server should give this channel, per
// DESIGN.md §2: UDID for a device; UDID:UserID for a user channel;
// UDID:UserShortName for a Shared iPad user; EnrollmentID for a User
// Enrollment device; EnrollmentID:EnrollmentUserID for its user. It is
// derived independently of the mdm package, so tests can check the
// server's resolution against it.
func (d *Device) ID() string {
	switch d.Type() {
	case mdm.Device:
		return d.UDID
	case mdm.User:
		return d.UDID + ":" + d.UserID
	case mdm.SharedIPad:
		return d.UDID + ":" + d.UserShortName
	case mdm.UserEnrollment:
		return d.EnrollmentID + ":" + d.EnrollmentUserID
	}
	return d.EnrollmentID
}

// ParentID returns the enrollment ID of the device channel a user channel
// belongs to, or "" for a device channel.
func (d *Device) ParentID() string {
	switch d.Type() {
	case mdm.User, mdm.SharedIPad:
		return d.UDID
	case mdm.UserEnrollment:
		return d.EnrollmentID
	}
	return ""
}

// Type returns the kind of channel the device's identifiers describe, as
// the server should record it.
func (d *Device) Type() mdm.EnrollType {
	switch {
	case d.UDID != "" && d.UserID == "":
		return mdm.Device
	case d.UDID != "" && strings.EqualFold(d.UserID, mdm.SharedIPadUserID):
		return mdm.SharedIPad
	case d.UDID != "":
		return mdm.User
	case d.EnrollmentUserID != "":
		return mdm.UserEnrollment
	}
	return mdm.UserEnrollmentDevice
}

// enrollment returns the identifying keys every message of the channel
// carries.
func (d *Device) enrollment() mdm.Enrollment {
	return mdm.Enrollment{
		UDID:             d.UDID,
		UserID:           d.UserID,
		UserShortName:    d.UserShortName,
		UserLongName:     d.UserLongName,
		EnrollmentID:     d.EnrollmentID,
		EnrollmentUserID: d.EnrollmentUserID,
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails since Go 1.24
	return b
}

// newSerialNumber returns a random 12-character serial number in Apple's
// alphabet (digits and upper-case letters without vowels that read as
// digits).
func newSerialNumber() string {
	const alphabet = "0123456789CDFGHJKLMNPQRTVWXY"
	b := randomBytes(12)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
