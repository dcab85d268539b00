package mdm

import (
	"context"
	"crypto/x509"
)

// Request is one MDM request as the service chain sees it: who sent it
// (the verified identity certificate and the resolved enrollment ID) and
// in what context. HTTP handlers build it; services and storage read it.
type Request struct {
	// Context is the request's context; never nil once built by NewRequest.
	Context context.Context
	// EnrollID is the enrollment the message is for, resolved from the
	// message's identifying keys.
	*EnrollID
	// Certificate is the device's verified identity certificate; nil for
	// migration requests, which carry none.
	Certificate *x509.Certificate
	// Params holds URL query parameters of the request, passed on to
	// webhooks as url_params.
	Params map[string]string
}

// NewRequest returns a Request for ctx and cert.
func NewRequest(ctx context.Context, cert *x509.Certificate) *Request {
	if ctx == nil {
		ctx = context.Background()
	}
	return &Request{Context: ctx, Certificate: cert}
}

// Clone returns a shallow copy of r with ctx as its context.
func (r *Request) Clone(ctx context.Context) *Request {
	c := *r
	c.Context = ctx
	return &c
}
