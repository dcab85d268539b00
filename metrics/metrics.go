// Package metrics exposes PicoMDM's Prometheus metrics: HTTP requests,
// check-ins, command reports, commands enqueued and delivered, pushes,
// webhook delivery, storage latency, push-certificate expiry and build
// info, all named picomdm_*. A Registry owns them; wrappers (Instrument for
// HTTP handlers, Service for the service chain, InstrumentStore for
// storage) feed it, and Handler serves it at /metrics.
//
// No label carries an enrollment ID, a command UUID or any other
// per-device value: label sets stay small and bounded, and nothing secret
// reaches a scrape.
package metrics

import (
	"errors"
	"log/slog"
	"net/http"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/push"
)

// namespace prefixes every metric name.
const namespace = "picomdm"

// Registry holds PicoMDM's metrics and the Prometheus registry that
// serves them. Its methods are safe for concurrent use.
type Registry struct {
	reg    *prometheus.Registry
	logger *slog.Logger

	httpRequests  *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	checkins      *prometheus.CounterVec
	checkinErrors *prometheus.CounterVec
	reports       *prometheus.CounterVec
	enqueued      prometheus.Counter
	delivered     prometheus.Counter
	pushes        *prometheus.CounterVec
	storeDuration *prometheus.HistogramVec
	storeErrors   *prometheus.CounterVec
}

// Option configures New.
type Option func(*Registry)

// WithLogger sets where scrape errors are logged (default slog.Default()).
func WithLogger(logger *slog.Logger) Option { return func(r *Registry) { r.logger = logger } }

// WithoutRuntimeMetrics leaves out the Go runtime (go_*) and process
// (process_*) collectors, e.g. for tests that compare whole scrapes.
func WithoutRuntimeMetrics() Option {
	return func(r *Registry) { r.reg = nil }
}

// New returns a Registry with every PicoMDM metric registered, build info
// set from version and the running Go version, and the Go runtime and
// process collectors.
func New(version string, opts ...Option) *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	runtimeMetrics := true
	for _, opt := range opts {
		opt(r)
		if r.reg == nil {
			runtimeMetrics = false
			r.reg = prometheus.NewRegistry()
		}
	}
	r.logger = pmlog.Or(r.logger)
	if runtimeMetrics {
		r.reg.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
	}

	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   namespace,
		Name:        "build_info",
		Help:        "Always 1; labels name the PicoMDM version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)

	r.httpRequests = counterVec("http_requests_total",
		"HTTP requests served, by route pattern and status code.", "route", "code")
	r.httpDuration = histogramVec("http_request_duration_seconds",
		"HTTP request latency, by route pattern and status code.", prometheus.DefBuckets, "route", "code")
	r.checkins = counterVec("checkins_total",
		"Check-in messages received, by MessageType.", "message_type")
	r.checkinErrors = counterVec("checkin_errors_total",
		"Check-in messages the service chain failed, by MessageType.", "message_type")
	r.reports = counterVec("command_reports_total",
		"Command reports received on the command endpoint, by Status (Idle, Acknowledged, Error, CommandFormatError, NotNow, other).", "status")
	r.enqueued = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "commands_enqueued_total",
		Help: "Commands queued for enrollments (one per enrollment a command was queued for)."})
	r.delivered = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "commands_delivered_total",
		Help: "Commands sent to devices in answer to a command report."})
	r.pushes = counterVec("pushes_total",
		"APNs pushes, by topic and result (success, an APNs reason, no_push_info, no_push_cert, error).", "topic", "result")
	r.storeDuration = histogramVec("storage_operation_duration_seconds",
		"Storage operation latency, by operation (the storage method called).",
		[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}, "operation")
	r.storeErrors = counterVec("storage_operation_errors_total",
		"Storage operations that failed, by operation (storage.ErrNotFound is not a failure).", "operation")

	r.reg.MustRegister(buildInfo, r.httpRequests, r.httpDuration, r.checkins, r.checkinErrors,
		r.reports, r.enqueued, r.delivered, r.pushes, r.storeDuration, r.storeErrors)
	// Pre-create the bounded label values so dashboards and rate() see
	// zeros rather than missing series before the first event.
	for _, typ := range mdm.MessageTypes {
		r.checkins.WithLabelValues(typ)
		r.checkinErrors.WithLabelValues(typ)
	}
	for _, status := range reportStatuses {
		r.reports.WithLabelValues(status)
	}
	return r
}

// counterVec is a picomdm_ counter named name with labels.
func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
}

// histogramVec is a picomdm_ histogram named name with buckets and labels.
func histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels)
}

// Prometheus returns the underlying registry, to register more collectors
// or gather in tests.
func (r *Registry) Prometheus() *prometheus.Registry { return r.reg }

// Handler returns the /metrics handler in the Prometheus exposition
// format. A collector that fails (e.g. the push-certificate query) is
// logged and left out of that scrape; the rest are still served.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(r.logger.Handler(), slog.LevelWarn),
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          r.reg, // adds promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	})
}

// CommandsEnqueued counts n commands queued for enrollments. A store
// wrapped by InstrumentStore already counts its EnqueueCommand calls; call
// this only for commands queued some other way, or they count twice.
func (r *Registry) CommandsEnqueued(n int) {
	if n > 0 {
		r.enqueued.Add(float64(n))
	}
}

// CommandDelivered counts one command sent to a device. Service calls it;
// code that delivers commands outside the service chain may too.
func (r *Registry) CommandDelivered() { r.delivered.Inc() }

// Push result labels besides APNs reasons.
const (
	// PushSuccess labels a push APNs accepted.
	PushSuccess = "success"
	// PushNoPushInfo labels an enrollment with nothing to push to.
	PushNoPushInfo = "no_push_info"
	// PushNoPushCert labels an enrollment whose topic has no certificate.
	PushNoPushCert = "no_push_cert"
	// PushError labels any other failure (network, timeout, cancelled).
	PushError = "error"
)

// ObservePush counts one push to topic with result, which should be
// PushResult of the push's error. topic is the APNs topic (a handful per
// server), never an enrollment ID.
func (r *Registry) ObservePush(topic, result string) {
	r.pushes.WithLabelValues(topic, result).Inc()
}

// PushResult classifies a push's error into a bounded result label:
// PushSuccess for nil, the refusal's reason for a push.Refusal (an APNs
// reason, or the HTTP status text), PushNoPushInfo, PushNoPushCert, else
// PushError.
func PushResult(err error) string {
	var refusal push.Refusal
	switch {
	case err == nil:
		return PushSuccess
	case errors.As(err, &refusal):
		return refusal.RefusalReason()
	case errors.Is(err, push.ErrNoPushInfo):
		return PushNoPushInfo
	case errors.Is(err, push.ErrNoPushCert):
		return PushNoPushCert
	}
	return PushError
}
