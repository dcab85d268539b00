package metrics

import (
	"cmp"
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/picomdm/picomdm/storage"
)

// WebhookCounts are a webhook's delivery counters, for this process:
// events the receiver accepted, failed attempts scheduled again, events
// set aside, events that could not be stored in the outbox, and events
// the outbox trim deleted.
type WebhookCounts struct {
	Delivered, Retries, SetAside, StoreFailed, Trimmed uint64
}

// WebhookStats reads a webhook's counters. A closure over
// (*webhook.Webhook).Stats fits.
type WebhookStats func() WebhookCounts

// RegisterWebhook adds the picomdm_webhook_* counters, read from stats at
// every scrape. It panics if stats is nil or a webhook is already
// registered.
func (r *Registry) RegisterWebhook(stats WebhookStats) {
	if stats == nil {
		panic("metrics: RegisterWebhook with nil stats")
	}
	r.reg.MustRegister(&webhookCollector{stats: stats})
}

var (
	webhookDelivered = prometheus.NewDesc(namespace+"_webhook_deliveries_total",
		"Webhook events the receiver accepted.", nil, nil)
	webhookRetries = prometheus.NewDesc(namespace+"_webhook_retries_total",
		"Webhook delivery attempts that failed and were scheduled again.", nil, nil)
	webhookSetAside = prometheus.NewDesc(namespace+"_webhook_set_aside_total",
		"Webhook events set aside (refused by the receiver, or unreachable past -webhook-retry-for).", nil, nil)
	webhookStoreFailed = prometheus.NewDesc(namespace+"_webhook_store_failures_total",
		"Webhook events that could not be stored in the outbox (lost).", nil, nil)
	webhookTrimmed = prometheus.NewDesc(namespace+"_webhook_outbox_trimmed_total",
		"Webhook events the outbox trim deleted (set-aside past -webhook-failed-retention, or over -webhook-outbox-max-events).", nil, nil)
)

// webhookCollector reads all values in one Stats call per scrape, so they
// are consistent with each other.
type webhookCollector struct {
	stats WebhookStats
}

func (c *webhookCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- webhookDelivered
	ch <- webhookRetries
	ch <- webhookSetAside
	ch <- webhookStoreFailed
	ch <- webhookTrimmed
}

func (c *webhookCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	ch <- prometheus.MustNewConstMetric(webhookDelivered, prometheus.CounterValue, float64(st.Delivered))
	ch <- prometheus.MustNewConstMetric(webhookRetries, prometheus.CounterValue, float64(st.Retries))
	ch <- prometheus.MustNewConstMetric(webhookSetAside, prometheus.CounterValue, float64(st.SetAside))
	ch <- prometheus.MustNewConstMetric(webhookStoreFailed, prometheus.CounterValue, float64(st.StoreFailed))
	ch <- prometheus.MustNewConstMetric(webhookTrimmed, prometheus.CounterValue, float64(st.Trimmed))
}

// OutboxStats reads the webhook outbox's summary; a closure over
// storage.OutboxStore.OutboxStats fits.
type OutboxStats func(ctx context.Context) (storage.OutboxStats, error)

// DefaultOutboxTimeout bounds the OutboxStats call of one scrape.
const DefaultOutboxTimeout = 5 * time.Second

// RegisterOutbox adds picomdm_webhook_outbox_events{state} (pending,
// failed) and picomdm_webhook_outbox_oldest_pending_age_seconds (0 when
// nothing is pending), read from stats at every scrape with timeout (a
// non-positive timeout means DefaultOutboxTimeout); these describe the
// shared outbox, so every replica reports the same values. When stats
// fails, the scrape reports the error and serves every other metric. It
// panics if stats is nil or an outbox is already registered.
func (r *Registry) RegisterOutbox(stats OutboxStats, timeout time.Duration) {
	if stats == nil {
		panic("metrics: RegisterOutbox with nil stats")
	}
	r.reg.MustRegister(&readCollector[storage.OutboxStats]{
		descs:   []*prometheus.Desc{outboxEvents, outboxOldestAge},
		read:    stats,
		timeout: cmp.Or(max(timeout, 0), DefaultOutboxTimeout),
		emit: func(ch chan<- prometheus.Metric, st storage.OutboxStats) {
			ch <- prometheus.MustNewConstMetric(outboxEvents, prometheus.GaugeValue, float64(st.Pending), storage.OutboxPending)
			ch <- prometheus.MustNewConstMetric(outboxEvents, prometheus.GaugeValue, float64(st.Failed), storage.OutboxFailed)
			age := 0.0
			if !st.OldestPending.IsZero() {
				age = max(time.Since(st.OldestPending).Seconds(), 0)
			}
			ch <- prometheus.MustNewConstMetric(outboxOldestAge, prometheus.GaugeValue, age)
		},
	})
}

var (
	outboxEvents = prometheus.NewDesc(namespace+"_webhook_outbox_events",
		"Webhook events in the outbox, by state (pending: waiting for delivery; failed: set aside).",
		[]string{"state"}, nil)
	outboxOldestAge = prometheus.NewDesc(namespace+"_webhook_outbox_oldest_pending_age_seconds",
		"Age of the oldest pending webhook event (0 when none is pending).", nil, nil)
)

// readCollector reads a T (from storage) at every scrape, within timeout,
// and emits metrics of descs from it. A failed read is reported as an
// invalid metric of descs[0], and the rest of the scrape is served.
type readCollector[T any] struct {
	descs   []*prometheus.Desc
	read    func(context.Context) (T, error)
	timeout time.Duration
	emit    func(chan<- prometheus.Metric, T)
}

func (c *readCollector[T]) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *readCollector[T]) Collect(ch chan<- prometheus.Metric) {
	// Collect gets no context from the scrape; the timeout keeps a slow
	// storage from holding the scrape forever.
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	v, err := c.read(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.descs[0], err)
		return
	}
	c.emit(ch, v)
}

// PushCertExpiries returns the NotAfter of every stored push certificate,
// by topic.
type PushCertExpiries func(ctx context.Context) (map[string]time.Time, error)

// DefaultPushCertTimeout bounds the PushCertExpiries call of one scrape.
const DefaultPushCertTimeout = 5 * time.Second

// RegisterPushCertExpiry adds picomdm_push_cert_expiry_seconds{topic}:
// seconds until the topic's push certificate expires (negative once it
// has), read from expiries at every scrape with timeout (a non-positive
// timeout means DefaultPushCertTimeout). When expiries fails, the scrape
// reports the error and serves every other metric. It panics if expiries
// is nil or one is already registered.
func (r *Registry) RegisterPushCertExpiry(expiries PushCertExpiries, timeout time.Duration) {
	if expiries == nil {
		panic("metrics: RegisterPushCertExpiry with nil expiries")
	}
	r.reg.MustRegister(&readCollector[map[string]time.Time]{
		descs:   []*prometheus.Desc{pushCertExpiry},
		read:    expiries,
		timeout: cmp.Or(max(timeout, 0), DefaultPushCertTimeout),
		emit: func(ch chan<- prometheus.Metric, byTopic map[string]time.Time) {
			now := time.Now()
			for topic, notAfter := range byTopic {
				ch <- prometheus.MustNewConstMetric(pushCertExpiry, prometheus.GaugeValue,
					notAfter.Sub(now).Seconds(), topic)
			}
		},
	})
}

var pushCertExpiry = prometheus.NewDesc(namespace+"_push_cert_expiry_seconds",
	"Seconds until the topic's APNs push certificate expires (negative once expired).",
	[]string{"topic"}, nil)
