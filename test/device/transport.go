package device

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/smallstep/pkcs7"
)

// Content types devices send: check-ins and command reports.
const (
	ContentTypeCheckin = "application/x-apple-aspen-mdm-checkin"
	ContentTypeReport  = "application/x-apple-aspen-mdm"
)

// SignatureHeader carries a device's detached CMS signature of the body.
const SignatureHeader = "Mdm-Signature"

// maxResponse bounds how much of a server answer is read.
const maxResponse = 64 << 20

// StatusError is returned by the protocol methods when the server answers
// with anything but 200.
type StatusError struct {
	// Code is the HTTP status code.
	Code int
	// Body is the response body.
	Body []byte
}

// Error implements error.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("server answered %d %s", e.Code, http.StatusText(e.Code))
	if body := strings.TrimSpace(string(e.Body)); body != "" {
		if len(body) > 200 {
			body = body[:200] + "…"
		}
		msg += ": " + body
	}
	return msg
}

// SignBody returns the Mdm-Signature header value for body, as a device
// with SignMessage set computes it: the standard base64 of a DER CMS
// SignedData, detached (no content), signed with SHA-256 by the device's
// key, carrying the device certificate.
func (d *Device) SignBody(body []byte) (string, error) {
	if d.Cert == nil || d.Key == nil {
		return "", errors.New("device: no identity to sign with")
	}
	sd, err := pkcs7.NewSignedData(body)
	if err != nil {
		return "", fmt.Errorf("device: signing: %w", err)
	}
	// Set per message: pkcs7's package-wide default is SHA-1.
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(d.Cert, d.Key, pkcs7.SignerInfoConfig{}); err != nil {
		return "", fmt.Errorf("device: signing: %w", err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		return "", fmt.Errorf("device: signing: %w", err)
	}
	return base64.StdEncoding.EncodeToString(der), nil
}

// CertHeaderValue returns the device certificate encoded as form, the
// value a device in cert-header mode sends.
func (d *Device) CertHeaderValue(form CertHeaderForm) string {
	if form == CertHeaderEscapedPEM {
		return escapeAll(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.Cert.Raw})))
	}
	return ":" + base64.StdEncoding.EncodeToString(d.Cert.Raw) + ":"
}

// escapeAll percent-encodes every byte outside RFC 3986's unreserved set,
// like nginx does for $ssl_client_escaped_cert ('+' and '/' included, so
// both query and path unescaping give the PEM back).
func escapeAll(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// NewRequest builds the PUT a device sends to url: the body with
// contentType, the Mdm-Signature header if sign is true, and the cert
// header if the device is in cert-header mode. Tests can alter it before
// sending it with their own client.
func (d *Device) NewRequest(ctx context.Context, url, contentType string, body []byte, sign bool) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("device: building request: %w", err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "MDM/1.0")
	if sign {
		sig, err := d.SignBody(body)
		if err != nil {
			return nil, err
		}
		req.Header.Set(SignatureHeader, sig)
	}
	if d.certHeader != "" {
		req.Header.Set(d.certHeader, d.CertHeaderValue(d.certHeaderForm))
	}
	return req, nil
}

// Send PUTs body to url like NewRequest and returns the status code and
// the response body. A non-200 status is not an error here.
func (d *Device) Send(ctx context.Context, url, contentType string, body []byte, sign bool) (status int, respBody []byte, err error) {
	req, err := d.NewRequest(ctx, url, contentType, body, sign)
	if err != nil {
		return 0, nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("device: %w", err)
	}
	defer resp.Body.Close()
	respBody, err = io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return resp.StatusCode, respBody, fmt.Errorf("device: reading response: %w", err)
	}
	return resp.StatusCode, respBody, nil
}

// exchange sends a protocol message with the device's configured identity
// and turns a non-200 answer into a *StatusError.
func (d *Device) exchange(ctx context.Context, url, contentType string, body []byte) ([]byte, error) {
	status, resp, err := d.Send(ctx, url, contentType, body, d.sign)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, &StatusError{Code: status, Body: resp}
	}
	return resp, nil
}
