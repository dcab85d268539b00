package api

import (
	"log/slog"
	"net/http"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
)

// MigrationHandler serves /migration (with the -migration flag): the body
// is a raw check-in plist (Authenticate, TokenUpdate, SetBootstrapToken…)
// exported by another MDM server, dispatched to svc as if a device had sent
// it, but without a device certificate (mdm.Request.Certificate is nil), so
// svc must not require one. Answers 200 (with whatever bytes svc answers,
// usually none), or a JSON error with the status StatusFor gives: 400 for
// an undecodable plist or unknown MessageType, 413 for an oversized body.
// It panics if svc is nil.
func MigrationHandler(svc service.Checkin, logger *slog.Logger) http.Handler {
	if svc == nil {
		panic("http/api: nil migration service")
	}
	logger = orDefault(logger)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := picohttp.ReadBody(w, r, picohttp.DefaultMaxBodySize)
		if err != nil {
			picohttp.WriteAPIError(w, r, logger, err)
			return
		}
		req := mdm.NewRequest(r.Context(), nil)
		req.Params = picohttp.URLParams(r)
		resp, err := service.CheckinRequest(svc, req, body)
		if err != nil {
			picohttp.WriteAPIError(w, r, logger, err)
			return
		}
		if len(resp) > 0 {
			w.Header().Set("Content-Type", "application/xml")
		}
		w.WriteHeader(http.StatusOK)
		if _, err := w.Write(resp); err != nil {
			logger.DebugContext(r.Context(), "writing migration response", "err", err)
		}
	})
}
