package storagetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/test/apnsmock"
)

// The helpers below never take a testing.TB: they are called from the
// goroutines of the concurrency test, where t.Fatal is not allowed. The
// only ways they can fail (the system random source or a plist encoder
// refusing a plain struct) are programming errors, so they panic.

// NewUUID returns a random version 4 UUID in upper case, the form devices
// use for UDIDs and UserIDs and servers for CommandUUIDs.
func NewUUID() string { return mdm.NewUUID() }

// RandomBytes returns n random bytes, for push tokens, unlock tokens and
// bootstrap tokens that must differ between runs against a shared database.
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("storagetest: reading random bytes: %v", err))
	}
	return b
}

// RandomCertHash returns a random lower-case hex SHA-256, the form
// identity-certificate hashes take in a CertAuthStore.
func RandomCertHash() string { return hex.EncodeToString(RandomBytes(32)) }

// NewTopic returns a unique APNs push topic of the form Apple issues for
// MDM push certificates: "com.apple.mgmt.External.<uuid>".
func NewTopic() string { return "com.apple.mgmt.External." + strings.ToLower(NewUUID()) }

func randomSerial() *big.Int {
	return new(big.Int).SetBytes(RandomBytes(16))
}

// selfSigned creates a self-signed certificate for tmpl with a new ECDSA
// P-256 key and returns it with its key.
func selfSigned(tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("storagetest: generating key: %v", err))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(fmt.Sprintf("storagetest: creating certificate: %v", err))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(fmt.Sprintf("storagetest: parsing certificate: %v", err))
	}
	return cert, key
}

// NewIdentityCert returns a self-signed client certificate standing in for
// a device identity certificate (mdm.Request.Certificate). Storage never
// verifies it; it only keeps it (and its NotAfter) and hashes it.
func NewIdentityCert(commonName string) *x509.Certificate {
	// Whole seconds, so backends that store NotAfter at second precision
	// compare equal.
	now := time.Now().Truncate(time.Second)
	cert, _ := selfSigned(&x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return cert
}

// NewPushCert returns a PEM certificate and PEM (PKCS #8) private key shaped
// like an APNs MDM push certificate for topic: the topic is the UID
// attribute of the Subject, which is where storage.TopicFromCert looks.
func NewPushCert(topic string) (certPEM, keyPEM []byte) {
	return apnsmock.NewProviderCertificate(topic)
}

// commandTemplate is a command plist written the way no encoder would
// write it — a comment, uneven indentation, a CRLF, non-ASCII text and
// escaped markup — so that a backend that re-encodes instead of storing
// the bytes fails the byte-exact checks.
const commandTemplate = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" +
	"<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n" +
	"<plist version=\"1.0\">\n" +
	"<dict>\r\n" +
	"    <key>Command</key>\n" +
	"\t<dict>\n" +
	"\t\t<key>RequestType</key>   <string>%s</string>\n" +
	"\t\t<!-- stored byte-exact: this comment must survive -->\n" +
	"\t\t<key>Note</key>\n" +
	"\t\t<string>Grüße ✓ &lt;&amp;&gt; 日本</string>\n" +
	"\t\t<key>Payload</key>\n" +
	"\t\t<data>%s</data>\n" +
	"\t</dict>\n" +
	"  <key>CommandUUID</key>\n" +
	"  <string>%s</string>\n" +
	"</dict>\n" +
	"</plist>\n  "

// NewCommand returns a command with a fresh CommandUUID and the given
// RequestType. Its Raw plist carries random data and unusual formatting so
// that every command's bytes are distinct and must be kept byte for byte.
func NewCommand(requestType string) *mdm.Command {
	return NewCommandWithUUID(NewUUID(), requestType)
}

// NewCommandWithUUID is NewCommand with a given CommandUUID.
func NewCommandWithUUID(commandUUID, requestType string) *mdm.Command {
	payload := base64.StdEncoding.EncodeToString(RandomBytes(48))
	raw := fmt.Sprintf(commandTemplate, requestType, payload, commandUUID)
	cmd, err := mdm.DecodeCommand([]byte(raw))
	if err != nil {
		panic(fmt.Sprintf("storagetest: decoding generated command: %v", err))
	}
	return cmd
}

// Channel is one simulated MDM channel (a device channel or a user channel
// of one) for driving a store: its identifying keys, its resolved
// enrollment ID, its identity certificate and its push info. Its methods
// build requests and check-in messages the way the HTTP layer would: the
// messages are encoded to plist and decoded with the mdm package, so their
// Raw bytes are real.
type Channel struct {
	// Keys are the identifying keys every message of the channel carries.
	Keys mdm.Enrollment
	// EnrollID is Keys resolved with mdm.Enrollment.Resolve.
	EnrollID *mdm.EnrollID
	// Cert is the identity certificate the channel's requests carry; user
	// channels share their device's.
	Cert *x509.Certificate
	// Push is what the channel's next TokenUpdate carries.
	Push mdm.Push
	// SerialNumber is what the device's Authenticate reports.
	SerialNumber string
}

func newChannel(keys mdm.Enrollment, cert *x509.Certificate) *Channel {
	id, err := keys.Resolve()
	if err != nil {
		panic(fmt.Sprintf("storagetest: resolving enrollment keys: %v", err))
	}
	c := &Channel{
		Keys:         keys,
		EnrollID:     id,
		Cert:         cert,
		SerialNumber: "C02" + strings.ToUpper(hex.EncodeToString(RandomBytes(5))),
	}
	c.Push.Topic = "com.apple.mgmt.External.storagetest"
	c.RotatePushToken()
	return c
}

// NewDevice returns a device channel (enrollment type Device) with a fresh
// random UDID and its own identity certificate.
func NewDevice() *Channel { return NewDeviceWithUDID(NewUUID()) }

// NewDeviceWithUDID returns a device channel with the given UDID, for
// testing enrollment IDs with unusual characters.
func NewDeviceWithUDID(udid string) *Channel {
	return newChannel(mdm.Enrollment{UDID: udid}, NewIdentityCert(udid))
}

// NewUserEnrollmentDevice returns the device channel of a User Enrollment
// (BYOD; enrollment type "User Enrollment (Device)"), identified by a
// fresh EnrollmentID.
func NewUserEnrollmentDevice() *Channel {
	id := NewUUID()
	return newChannel(mdm.Enrollment{EnrollmentID: id}, NewIdentityCert(id))
}

// NewUser returns a new user channel of device channel c with a fresh
// UserID: type User for a UDID device, User Enrollment for a User
// Enrollment device.
func (c *Channel) NewUser() *Channel { return c.NewUserWithID(NewUUID()) }

// NewUserWithID is NewUser with a given UserID (EnrollmentUserID for a
// User Enrollment).
func (c *Channel) NewUserWithID(userID string) *Channel {
	keys := mdm.Enrollment{UDID: c.Keys.UDID, EnrollmentID: c.Keys.EnrollmentID}
	if keys.UDID != "" {
		keys.UserID = userID
		keys.UserShortName = "user-" + hex.EncodeToString(RandomBytes(4))
		keys.UserLongName = "Test User " + userID
	} else {
		keys.EnrollmentUserID = userID
	}
	return newChannel(keys, c.Cert)
}

// NewSharedIPadUser returns a Shared iPad user channel of device channel c
// for the given short name (enrollment ID UDID:shortName).
func (c *Channel) NewSharedIPadUser(shortName string) *Channel {
	keys := mdm.Enrollment{
		UDID:          c.Keys.UDID,
		UserID:        mdm.SharedIPadUserID,
		UserShortName: shortName,
		UserLongName:  "Shared " + shortName,
	}
	return newChannel(keys, c.Cert)
}

// ID returns the channel's enrollment ID.
func (c *Channel) ID() string { return c.EnrollID.ID }

// RotatePushToken gives the channel a new random push token and push magic,
// as a device does when it re-registers with APNs.
func (c *Channel) RotatePushToken() {
	c.Push.Token = RandomBytes(32)
	c.Push.PushMagic = NewUUID()
}

// Request returns a request of the channel, as the HTTP layer builds it.
func (c *Channel) Request() *mdm.Request {
	r := mdm.NewRequest(context.Background(), c.Cert)
	id := *c.EnrollID
	r.EnrollID = &id
	return r
}

// checkin encodes msg and decodes it back as a check-in message, so that
// its Raw bytes are the bytes a device would have sent.
func checkin[T mdm.Checkin](msg T) T {
	raw, err := plist.MarshalIndent(msg, "\t")
	if err != nil {
		panic(fmt.Sprintf("storagetest: encoding %s: %v", msg.Type(), err))
	}
	decoded, err := mdm.DecodeCheckin(raw)
	if err != nil {
		panic(fmt.Sprintf("storagetest: decoding %s: %v", msg.Type(), err))
	}
	return decoded.(T)
}

func messageType(t string) mdm.MessageType { return mdm.MessageType{MessageType: t} }

// Authenticate returns the channel's Authenticate message.
func (c *Channel) Authenticate() *mdm.Authenticate {
	return checkin(&mdm.Authenticate{
		Enrollment:   c.Keys,
		MessageType:  messageType(mdm.MessageAuthenticate),
		Topic:        c.Push.Topic,
		BuildVersion: "23A344",
		DeviceName:   "Test device",
		Model:        "Mac14,2",
		ModelName:    "MacBook Air",
		OSVersion:    "26.0",
		ProductName:  "Mac14,2",
		SerialNumber: c.SerialNumber,
	})
}

// TokenUpdate returns the channel's TokenUpdate message carrying its
// current push info and, if not nil, unlockToken.
func (c *Channel) TokenUpdate(unlockToken []byte) *mdm.TokenUpdate {
	return checkin(&mdm.TokenUpdate{
		Enrollment:  c.Keys,
		MessageType: messageType(mdm.MessageTokenUpdate),
		Push:        c.Push,
		UnlockToken: unlockToken,
	})
}

// SetBootstrapToken returns a SetBootstrapToken message escrowing token.
func (c *Channel) SetBootstrapToken(token []byte) *mdm.SetBootstrapToken {
	return checkin(&mdm.SetBootstrapToken{
		Enrollment:     c.Keys,
		MessageType:    messageType(mdm.MessageSetBootstrapToken),
		BootstrapToken: token,
	})
}

// GetBootstrapToken returns a GetBootstrapToken message.
func (c *Channel) GetBootstrapToken() *mdm.GetBootstrapToken {
	return checkin(&mdm.GetBootstrapToken{
		Enrollment:  c.Keys,
		MessageType: messageType(mdm.MessageGetBootstrapToken),
	})
}

// UserAuthenticate returns a UserAuthenticate message; an empty
// digestResponse makes it the first message of the exchange.
func (c *Channel) UserAuthenticate(digestResponse string) *mdm.UserAuthenticate {
	return checkin(&mdm.UserAuthenticate{
		Enrollment:     c.Keys,
		MessageType:    messageType(mdm.MessageUserAuthenticate),
		DigestResponse: digestResponse,
	})
}

// Report returns the channel's command report for commandUUID with the
// given Status; an Error report carries an ErrorChain, as devices send.
func (c *Channel) Report(commandUUID, status string) *mdm.CommandResults {
	report := &mdm.CommandResults{Enrollment: c.Keys, CommandUUID: commandUUID, Status: status}
	if status == mdm.StatusError {
		report.ErrorChain = []mdm.ErrorChainItem{{
			ErrorCode:            12021,
			ErrorDomain:          "MCMDMErrorDomain",
			LocalizedDescription: "Test failure",
		}}
	}
	raw, err := plist.MarshalIndent(report, "\t")
	if err != nil {
		panic(fmt.Sprintf("storagetest: encoding command report: %v", err))
	}
	decoded, err := mdm.DecodeCommandResults(raw)
	if err != nil {
		panic(fmt.Sprintf("storagetest: decoding command report: %v", err))
	}
	return decoded
}

// Idle returns the channel's Idle report (no CommandUUID): "any work?".
func (c *Channel) Idle() *mdm.CommandResults { return c.Report("", mdm.StatusIdle) }

// Enroll enrolls channels in store as devices do: a device channel sends
// Authenticate, then every channel its first TokenUpdate. Pass device
// channels before their user channels.
func Enroll(tb testing.TB, store storage.Store, channels ...*Channel) {
	tb.Helper()
	for _, c := range channels {
		if !c.EnrollID.Type.IsUserChannel() {
			if err := store.StoreAuthenticate(c.Request(), c.Authenticate()); err != nil {
				tb.Fatalf("Authenticate %s: %v", c.ID(), err)
			}
		}
		if err := store.StoreTokenUpdate(c.Request(), c.TokenUpdate(nil)); err != nil {
			tb.Fatalf("TokenUpdate %s: %v", c.ID(), err)
		}
	}
}
