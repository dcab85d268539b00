package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/picomdm/picomdm/storage"
)

// Repush counts what the re-push sweep does (package push/repush): its
// rounds and the pushes it sends. It implements repush.Observer. Build it
// with Registry.RegisterRepush.
type Repush struct {
	rounds   *prometheus.CounterVec
	duration prometheus.Histogram
	due      prometheus.Gauge
	pushes   *prometheus.CounterVec
}

// Round result labels of picomdm_repush_rounds_total.
const (
	// RepushRoundOK labels a round that completed.
	RepushRoundOK = "ok"
	// RepushRoundError labels a round that failed (storage or the push
	// service as a whole).
	RepushRoundError = "error"
)

// RegisterRepush adds the picomdm_repush_* metrics and returns the
// observer that feeds them. It panics if called twice on one Registry.
func (r *Registry) RegisterRepush() *Repush {
	m := &Repush{
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "repush_rounds_total",
			Help: "Re-push sweep rounds run on this replica, by result (ok, error).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "repush_round_duration_seconds",
			Help:    "How long a re-push sweep round took, pushes included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		due: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "repush_due",
			Help: "Enrollments the last re-push round on this replica found due (at most -repush-max: a value stuck there means the sweep lags).",
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "repush_pushes_total",
			Help: "Pushes sent by the re-push sweep, by result (as picomdm_pushes_total: success, an APNs reason, no_push_info, no_push_cert, error).",
		}, []string{"result"}),
	}
	r.reg.MustRegister(m.rounds, m.duration, m.due, m.pushes)
	m.rounds.WithLabelValues(RepushRoundOK)
	m.rounds.WithLabelValues(RepushRoundError)
	m.pushes.WithLabelValues(PushSuccess)
	return m
}

// ObserveRepushRound counts one sweep round that took took, found due
// enrollments due and ended with err.
func (m *Repush) ObserveRepushRound(took time.Duration, due int, err error) {
	result := RepushRoundOK
	if err != nil {
		result = RepushRoundError
	}
	m.rounds.WithLabelValues(result).Inc()
	m.duration.Observe(took.Seconds())
	m.due.Set(float64(due))
}

// ObserveRepush counts one push the sweep sent, classified by PushResult.
func (m *Repush) ObserveRepush(err error) {
	m.pushes.WithLabelValues(PushResult(err)).Inc()
}

// RecordPushes times storage.RepushStore.RecordPushes.
func (s *Store) RecordPushes(ctx context.Context, records []storage.PushRecord) (err error) {
	defer func(start time.Time) { s.observe("RecordPushes", start, err) }(time.Now())
	return s.Store.RecordPushes(ctx, records)
}

// DueForRepush times storage.RepushStore.DueForRepush.
func (s *Store) DueForRepush(ctx context.Context, now time.Time, limit int) (_ []storage.PushRecord, err error) {
	defer func(start time.Time) { s.observe("DueForRepush", start, err) }(time.Now())
	return s.Store.DueForRepush(ctx, now, limit)
}
