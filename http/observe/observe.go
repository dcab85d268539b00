// Package observe gives every HTTP request a trace ID and carries it, with
// the enrollment ID and command UUID once they are known, in the request
// context's log attributes (see package log), so every line logged for a
// request names it.
package observe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	pmlog "github.com/picomdm/picomdm/log"
)

// TraceHeader is the HTTP header a trace ID arrives in (from a proxy or a
// caller that already has one) and is returned in.
const TraceHeader = "X-Trace-ID"

// Log attribute keys the helpers of this package add.
const (
	// TraceIDKey names the request's trace ID.
	TraceIDKey = "trace_id"
	// EnrollmentIDKey names the enrollment a request is for.
	EnrollmentIDKey = "enrollment_id"
	// CommandUUIDKey names the command a request reports on or delivers.
	CommandUUIDKey = "command_uuid"
)

// traceHeaderKey is TraceHeader in the canonical form net/http keeps
// header names in, so that reading and setting it does not canonicalise
// (and allocate) on every request.
var traceHeaderKey = http.CanonicalHeaderKey(TraceHeader)

// maxTraceIDLen bounds an incoming trace ID: longer ones are replaced, so a
// client cannot make every log line of its request arbitrarily long.
const maxTraceIDLen = 64

type traceKey struct{}

// requestInfo is what Trace keeps in a request's context: its trace ID, and
// the enrollment the request turned out to be for, which the handler notes
// (NoteEnrollmentID) once it has resolved it so that Trace's closing line
// names it too.
type requestInfo struct {
	traceID      string
	enrollmentID atomic.Pointer[string]
}

// Trace returns middleware-wrapped next: every request gets a trace ID, the
// incoming X-Trace-ID if it is sane (1–64 characters of letters, digits,
// '-', '_' or '.'), else 16 random bytes in hex. The ID is sent back in the
// X-Trace-ID response header, stored in the request context (TraceID reads
// it) and added to the context's log attributes as trace_id. When the
// request ends, logger logs it at debug level (method, path, status,
// duration). A nil logger means slog.Default(); a nil next panics.
func Trace(next http.Handler, logger *slog.Logger) http.Handler {
	if next == nil {
		panic("observe: Trace with a nil handler")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(traceHeaderKey)
		if !saneTraceID(id) {
			id = NewTraceID()
		}
		w.Header().Set(traceHeaderKey, id)
		info := &requestInfo{traceID: id}
		ctx := context.WithValue(r.Context(), traceKey{}, info)
		ctx = pmlog.With(ctx, slog.String(TraceIDKey, id))
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		log := pmlog.Or(logger)
		if !log.Enabled(ctx, slog.LevelDebug) {
			return
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", sw.statusOr200()),
			slog.Duration("duration", time.Since(start)),
		}
		if enrollmentID := info.enrollmentID.Load(); enrollmentID != nil {
			attrs = append(attrs, slog.String(EnrollmentIDKey, *enrollmentID))
		}
		log.LogAttrs(ctx, slog.LevelDebug, "http request", attrs...)
	})
}

// TraceID returns the trace ID Trace gave ctx's request, or "" outside one.
func TraceID(ctx context.Context) string {
	if info, ok := ctx.Value(traceKey{}).(*requestInfo); ok {
		return info.traceID
	}
	return ""
}

// NoteEnrollmentID records id as the enrollment the request Trace serves
// in ctx is for, so that Trace's closing "http request" line names it. It
// does nothing outside Trace or for an empty id. Handlers call it once the
// enrollment is resolved; the lines they log themselves get the ID from
// their context's attributes (WithEnrollmentID).
func NoteEnrollmentID(ctx context.Context, id string) {
	if info, ok := ctx.Value(traceKey{}).(*requestInfo); ok && id != "" {
		info.enrollmentID.Store(&id)
	}
}

// WithEnrollmentID returns ctx with enrollment_id=id added to its log
// attributes, and notes it for Trace's closing line (NoteEnrollmentID);
// an empty id leaves ctx as it is. Call it once the enrollment is
// resolved, so later lines name the device. The ID goes into logs only,
// never into metric labels (it is unbounded).
func WithEnrollmentID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	NoteEnrollmentID(ctx, id)
	return pmlog.With(ctx, slog.String(EnrollmentIDKey, id))
}

// WithCommandUUID returns ctx with command_uuid=uuid added to its log
// attributes; an empty uuid leaves ctx as it is.
func WithCommandUUID(ctx context.Context, uuid string) context.Context {
	if uuid == "" {
		return ctx
	}
	return pmlog.With(ctx, slog.String(CommandUUIDKey, uuid))
}

// saneTraceID reports whether id may be logged and echoed as it is.
func saneTraceID(id string) bool {
	if id == "" || len(id) > maxTraceIDLen {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// NewTraceID returns a fresh trace ID: 16 random bytes in hex, as a W3C
// trace-id is.
func NewTraceID() string {
	var b [16]byte
	rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return hex.EncodeToString(b[:])
}

// statusWriter remembers the status a handler answered with. Unwrap lets
// http.ResponseController reach the underlying writer's Flush, Hijack and
// deadlines.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) statusOr200() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
