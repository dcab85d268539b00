package http

import (
	"context"
	"io"
	"net/http"
)

// DefaultMaxBodySize is the request body limit of PicoMDM's handlers unless
// configured otherwise: 10 MiB. Device reports such as
// InstalledApplicationList or CertificateList on a well-stocked Mac run to
// a few MiB, and commands may embed whole profiles; a device refused with
// 413 for a legitimate report would retry it forever, so the limit is
// generous, while still bounding what an unauthenticated client can make
// the server buffer (the Mdm-Signature can only be checked over the whole
// body).
const DefaultMaxBodySize int64 = 10 << 20

// maxPresized is the largest announced body ReadBody allocates for before
// reading it. Larger ones grow with what actually arrives, so that a
// client announcing a large body it does not send cannot make the server
// allocate for it.
const maxPresized = 64 << 10

// ReadBody reads r's whole body, failing with a *http.MaxBytesError (413
// through StatusFor) once it exceeds limit bytes; a limit of 0 or less
// means DefaultMaxBodySize. The limit also tells net/http to close the
// connection rather than drain an oversized body.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultMaxBodySize
	}
	if r.Body == nil {
		return nil, nil
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	n := r.ContentLength
	if n <= 0 || n > limit || n > maxPresized {
		return io.ReadAll(body)
	}
	// The usual case: a small body of announced length, read into a
	// buffer of that size rather than grown to it. One byte more leaves
	// room to see the end (net/http never delivers more than announced; a
	// hand-made request might).
	buf := make([]byte, 0, n+1)
	for {
		m, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		switch {
		case err == io.EOF:
			return buf, nil
		case err != nil:
			return buf, err
		case len(buf) == cap(buf):
			// More than announced: read the rest as io.ReadAll would.
			rest, err := io.ReadAll(body)
			return append(buf, rest...), err
		}
	}
}

// PreAuthBodySize is how much of a device's body ReadBodyAuthenticated
// reads before the sender has shown a valid identity: 1 MiB, so that a
// client without one cannot make the server hold more than about that
// (plus Go's 1 MiB header limit) per connection. Nearly every device
// request is smaller and is read in one go.
const PreAuthBodySize int64 = 1 << 20

// ReadBodyAuthenticated is ReadBody for a body whose sender can be
// identified from the headers alone (the Mdm-Signature's signer, or a
// TLS proxy's certificate header): it reads up to PreAuthBodySize bytes;
// if the body is larger, it calls authenticate and reads the rest (up to
// limit) only if that succeeded, answering authenticate's error otherwise.
func ReadBodyAuthenticated(w http.ResponseWriter, r *http.Request, limit int64, authenticate func() error) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultMaxBodySize
	}
	if limit <= PreAuthBodySize || r.Body == nil || (r.ContentLength >= 0 && r.ContentLength <= PreAuthBodySize) {
		return ReadBody(w, r, limit)
	}
	if err := authenticate(); err != nil {
		return nil, err
	}
	return ReadBody(w, r, limit)
}

func requestContext(r *http.Request) context.Context {
	if r == nil {
		return context.Background()
	}
	return r.Context()
}

// URLParams returns the first value of each URL query parameter of r, or
// nil when there are none: what mdm.Request.Params carries on to webhooks.
func URLParams(r *http.Request) map[string]string {
	if r.URL.RawQuery == "" {
		return nil
	}
	query := r.URL.Query()
	if len(query) == 0 {
		return nil
	}
	params := make(map[string]string, len(query))
	for k, v := range query {
		if len(v) > 0 {
			params[k] = v[0]
		}
	}
	return params
}
