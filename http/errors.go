package http

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/picomdm/picomdm/http/auth"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage"
)

// StatusFor maps an error from anywhere below a handler to the HTTP status
// to answer with. It is the only such mapping in PicoMDM:
//
//	*service.StatusError        its Status (e.g. 410 for a declined UserAuthenticate)
//	*http.MaxBytesError         413
//	*mdm.ParseError             400 (undecodable plist, unknown MessageType, empty Status…)
//	*auth.Error                 400 (missing, undecodable or unverifiable identity)
//	storage.ErrBadCursor        400
//	storage.ErrCommandExists    409
//	storage.ErrAlreadyAnswered  409
//	storage.ErrNotFound         404
//	anything else (and nil)     500
//
// A nil error has no status of its own; it maps to 500 so that a caller
// that forgot to check is loud rather than successful.
func StatusFor(err error) int {
	var (
		statusErr *service.StatusError
		tooLarge  *http.MaxBytesError
		parseErr  *mdm.ParseError
		authErr   *auth.Error
	)
	switch {
	// An explicit status wins over whatever it wraps.
	case errors.As(err, &statusErr):
		if statusErr.Status < 100 || statusErr.Status > 999 {
			return http.StatusInternalServerError
		}
		return statusErr.Status
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &parseErr), errors.As(err, &authErr), errors.Is(err, storage.ErrBadCursor):
		return http.StatusBadRequest
	case errors.Is(err, storage.ErrCommandExists), errors.Is(err, storage.ErrAlreadyAnswered):
		return http.StatusConflict
	case errors.Is(err, storage.ErrNotFound):
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// WriteDeviceError logs err with its status and answers a device with the
// status alone: devices act on the code, and an error text could leak
// internals. A 401 is never sent on the device path (it can make a device
// drop its enrollment); it is turned into a 500, a retryable failure.
func WriteDeviceError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	status := StatusFor(err)
	if status == http.StatusUnauthorized {
		status = http.StatusInternalServerError
	}
	logError(r, logger, "mdm request failed", status, err)
	w.WriteHeader(status)
}

// ErrorResponse is the JSON body of a failed API request.
type ErrorResponse struct {
	Error string `json:"error"`
}

// WriteAPIError logs err with its status and answers an API client with
// that status and {"error": "<err text>"}.
func WriteAPIError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	WriteAPIErrorBody(w, r, logger, err, &ErrorResponse{Error: err.Error()})
}

// WriteAPIErrorBody is WriteAPIError with a JSON body of the caller's own
// (for endpoints whose error shape carries more than "error").
func WriteAPIErrorBody(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error, body any) {
	status := StatusFor(err)
	logError(r, logger, "api request failed", status, err)
	WriteJSON(w, r, logger, status, body)
}

// logError logs a failed request: server faults at error level, the
// client's mistakes (4xx) at info, as they are routine (a declined
// UserAuthenticate, a device with a stale certificate).
func logError(r *http.Request, logger *slog.Logger, msg string, status int, err error) {
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	attrs := []slog.Attr{slog.Int("status", status), slog.Any("err", err)}
	if r != nil {
		attrs = append(attrs, slog.String("method", r.Method), slog.String("path", r.URL.Path))
	}
	orDefault(logger).LogAttrs(requestContext(r), level, msg, attrs...)
}

func orDefault(logger *slog.Logger) *slog.Logger {
	if logger == nil {
		return slog.Default()
	}
	return logger
}
