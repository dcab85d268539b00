package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Instrument returns h counting its requests in picomdm_http_requests_total
// and timing them in picomdm_http_request_duration_seconds, labelled with
// route (the pattern h is registered at, never the request path, which
// may carry enrollment IDs) and the status code. It panics if h is nil.
func (r *Registry) Instrument(route string, h http.Handler) http.Handler {
	if h == nil {
		panic("metrics: Instrument with a nil handler")
	}
	labels := prometheus.Labels{"route": route}
	// promhttp's wrappers keep the writer's optional interfaces (Flusher,
	// Hijacker…) that the MDM and proxy handlers may rely on.
	return promhttp.InstrumentHandlerDuration(r.httpDuration.MustCurryWith(labels),
		promhttp.InstrumentHandlerCounter(r.httpRequests.MustCurryWith(labels), h))
}
