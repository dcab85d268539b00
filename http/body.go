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
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
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
