// Package auth establishes who sent an MDM request: it extracts the device's
// identity certificate (from the Mdm-Signature header, or from a header a
// TLS-terminating proxy sets), verifies it against the enrollment CA, and
// computes the hash cert-auth associates with an enrollment.
//
// Every failure is an *Error; the HTTP layer answers devices 400 for it
// (never 401, which can make a device drop its enrollment).
package auth

import (
	"errors"
)

// Kinds of identity failure; an *Error wraps exactly one of them, so callers
// can branch with errors.Is.
var (
	// ErrNoIdentity says the request carried no identity certificate.
	ErrNoIdentity = errors.New("auth: no identity certificate")
	// ErrMalformed says the identity could not be decoded: bad base64,
	// CMS, PEM or DER, or a signature without exactly one signer.
	ErrMalformed = errors.New("auth: malformed identity")
	// ErrBadSignature says the CMS signature does not verify over the
	// request body.
	ErrBadSignature = errors.New("auth: signature does not verify over the body")
	// ErrUntrusted says the certificate does not chain to the CA.
	ErrUntrusted = errors.New("auth: certificate does not chain to the CA")
	// ErrKeyUsage says the certificate (or its chain) is not valid for
	// client authentication.
	ErrKeyUsage = errors.New("auth: certificate not valid for client authentication")
	// ErrExpired says the certificate (or its chain) is outside its
	// validity period, or was outside it when the signature was made.
	ErrExpired = errors.New("auth: certificate outside its validity period")
)

// Error is an identity failure: Kind is one of the Err* kinds above, Err the
// underlying cause (may be nil).
type Error struct {
	Kind error
	Err  error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err == nil {
		return e.Kind.Error()
	}
	return e.Kind.Error() + ": " + e.Err.Error()
}

// Unwrap returns the kind and the cause, so errors.Is matches either.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

func fail(kind, cause error) *Error { return &Error{Kind: kind, Err: cause} }
