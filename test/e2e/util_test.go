package e2e

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/picomdm/picomdm/test/device"
)

func asStatus(err error, target **device.StatusError) bool { return errors.As(err, target) }

// captureServer starts a server that records the last request body into
// *got and answers 200, and returns its URL.
func captureServer(t *testing.T, got *[]byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*got, _ = io.ReadAll(r.Body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
