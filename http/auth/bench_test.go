package auth_test

import (
	"testing"

	"github.com/micromdm/plist"
	"github.com/picomdm/picomdm/http/auth"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/test/device"
)

// benchDevice is a simulated device with a key of type k, issued by ca, and
// the signed bodies of the two messages a device sends most: a TokenUpdate
// check-in and an Acknowledged command report.
type benchDevice struct {
	name      string
	dev       *device.Device
	tokenBody []byte
	tokenSig  string
	ackBody   []byte
	ackSig    string
}

func newBenchDevices(b *testing.B, ca *device.CA) []*benchDevice {
	b.Helper()
	var out []*benchDevice
	for _, k := range []struct {
		name string
		kind device.KeyType
	}{{"RSA2048", device.RSA2048}, {"ECDSAP256", device.ECDSAP256}} {
		dev, err := device.New(ca, "http://mdm.invalid/mdm", device.WithKeyType(k.kind))
		if err != nil {
			b.Fatal(err)
		}
		bd := &benchDevice{name: k.name, dev: dev}
		bd.tokenBody = marshal(b, &mdm.TokenUpdate{
			Enrollment:  mdm.Enrollment{UDID: dev.UDID},
			MessageType: mdm.MessageType{MessageType: mdm.MessageTokenUpdate},
			Push:        mdm.Push{PushMagic: dev.PushMagic, Token: dev.Token, Topic: dev.Topic},
			UnlockToken: dev.UnlockToken,
		})
		bd.ackBody = marshal(b, &mdm.CommandResults{
			Enrollment:  mdm.Enrollment{UDID: dev.UDID},
			CommandUUID: "0F6B3E0C-3C0B-4E8A-9A39-2D0C6B1A4F11",
			Status:      mdm.StatusAcknowledged,
		})
		if bd.tokenSig, err = dev.SignBody(bd.tokenBody); err != nil {
			b.Fatal(err)
		}
		if bd.ackSig, err = dev.SignBody(bd.ackBody); err != nil {
			b.Fatal(err)
		}
		out = append(out, bd)
	}
	return out
}

func marshal(b *testing.B, v any) []byte {
	b.Helper()
	body, err := plist.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkSignatureCert checks the Mdm-Signature of a realistic request:
// base64, CMS parsing, digest and signature verification.
func BenchmarkSignatureCert(b *testing.B) {
	ca, err := device.NewCA()
	if err != nil {
		b.Fatal(err)
	}
	for _, bd := range newBenchDevices(b, ca) {
		for _, m := range []struct {
			name string
			body []byte
			sig  string
		}{{"TokenUpdate", bd.tokenBody, bd.tokenSig}, {"Acknowledged", bd.ackBody, bd.ackSig}} {
			b.Run(bd.name+"/"+m.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := auth.SignatureCert(m.sig, m.body); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkVerify verifies a device certificate against the device CA, as
// every request does once its certificate is known: remembered from an
// earlier request (the default), and with the cache off.
func BenchmarkVerify(b *testing.B) {
	ca, err := device.NewCA()
	if err != nil {
		b.Fatal(err)
	}
	cached, err := auth.NewVerifier(ca.CertPEM(), nil)
	if err != nil {
		b.Fatal(err)
	}
	uncached, err := auth.NewVerifier(ca.CertPEM(), nil, auth.WithVerifyCache(0, 0))
	if err != nil {
		b.Fatal(err)
	}
	for _, bd := range newBenchDevices(b, ca) {
		for name, v := range map[string]*auth.X509Verifier{"cached": cached, "uncached": uncached} {
			b.Run(bd.name+"/"+name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := v.Verify(bd.dev.Cert); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkIdentityAndDecode is the per-request work below the service
// chain: check the signature, verify the certificate, decode the plist.
func BenchmarkIdentityAndDecode(b *testing.B) {
	ca, err := device.NewCA()
	if err != nil {
		b.Fatal(err)
	}
	v, err := auth.NewVerifier(ca.CertPEM(), nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, bd := range newBenchDevices(b, ca) {
		b.Run(bd.name+"/TokenUpdate", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				cert, err := auth.SignatureCert(bd.tokenSig, bd.tokenBody)
				if err != nil {
					b.Fatal(err)
				}
				if err := v.Verify(cert); err != nil {
					b.Fatal(err)
				}
				if _, err := mdm.DecodeCheckin(bd.tokenBody); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bd.name+"/Acknowledged", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				cert, err := auth.SignatureCert(bd.ackSig, bd.ackBody)
				if err != nil {
					b.Fatal(err)
				}
				if err := v.Verify(cert); err != nil {
					b.Fatal(err)
				}
				if _, err := mdm.DecodeCommandResults(bd.ackBody); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHeaderCert decodes an RFC 9440 Client-Cert header.
func BenchmarkHeaderCert(b *testing.B) {
	ca, err := device.NewCA()
	if err != nil {
		b.Fatal(err)
	}
	bd := newBenchDevices(b, ca)[0]
	value := bd.dev.CertHeaderValue(device.CertHeaderRFC9440)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := auth.HeaderCert(value); err != nil {
			b.Fatal(err)
		}
	}
}
