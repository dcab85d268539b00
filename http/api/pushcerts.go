package api

import (
	"log/slog"
	"net/http"
	"time"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/storage"
)

// PushCertsResponse is the answer of GET /v1/pushcerts.
type PushCertsResponse struct {
	PushCerts []PushCertResponse `json:"pushcerts"`
}

// PushCertsHandler serves GET /v1/pushcerts: every stored topic with its
// certificate's expiry, sorted by topic.
func PushCertsHandler(store storage.PushCertStore, logger *slog.Logger) http.Handler {
	logger = orDefault(logger)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			picohttp.WriteJSON(w, r, logger, http.StatusMethodNotAllowed, picohttp.ErrorResponse{Error: "method not allowed"})
			return
		}
		infos, err := store.RetrievePushCertInfos(r.Context())
		if err != nil {
			picohttp.WriteAPIError(w, r, logger, err)
			return
		}
		resp := PushCertsResponse{PushCerts: make([]PushCertResponse, 0, len(infos))}
		for _, info := range infos {
			resp.PushCerts = append(resp.PushCerts, PushCertResponse{Topic: info.Topic, NotAfter: info.NotAfter.UTC().Format(time.RFC3339)})
		}
		picohttp.WriteJSON(w, r, logger, http.StatusOK, resp)
	})
}
