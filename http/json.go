package http

import (
	"encoding/json"
	"log/slog"
	"net/http"
)

// WriteJSON answers with status and v encoded as JSON. If v cannot be
// encoded, it answers 500 with a generic JSON error instead.
func WriteJSON(w http.ResponseWriter, r *http.Request, logger *slog.Logger, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		logError(r, logger, "encoding JSON response", http.StatusInternalServerError, err)
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal server error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		orDefault(logger).DebugContext(requestContext(r), "writing JSON response", "err", err)
	}
}
