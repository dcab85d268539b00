package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WebhookCounts are a webhook's delivery counters: events delivered,
// retries, events dropped, and the events waiting now with the bytes they
// hold.
type WebhookCounts struct {
	Delivered, Retries, Dropped uint64
	QueueLen                    int
	QueueBytes                  int64
}

// WebhookStats reads a webhook's counters. A closure over
// (*webhook.Webhook).Stats fits.
type WebhookStats func() WebhookCounts

// RegisterWebhook adds the picomdm_webhook_* metrics, read from stats at
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
		"Webhook delivery attempts repeated after a failed one.", nil, nil)
	webhookDropped = prometheus.NewDesc(namespace+"_webhook_dropped_total",
		"Webhook events given up (queue full, retry window over, or shutdown).", nil, nil)
	webhookQueue = prometheus.NewDesc(namespace+"_webhook_queue_length",
		"Webhook events waiting for delivery.", nil, nil)
	webhookQueueBytes = prometheus.NewDesc(namespace+"_webhook_queue_bytes",
		"Bytes of the webhook events queued or being delivered (bounded by -webhook-queue-bytes).", nil, nil)
)

// webhookCollector reads all five values in one Stats call per scrape, so
// they are consistent with each other.
type webhookCollector struct {
	stats WebhookStats
}

func (c *webhookCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- webhookDelivered
	ch <- webhookRetries
	ch <- webhookDropped
	ch <- webhookQueue
	ch <- webhookQueueBytes
}

func (c *webhookCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	ch <- prometheus.MustNewConstMetric(webhookDelivered, prometheus.CounterValue, float64(st.Delivered))
	ch <- prometheus.MustNewConstMetric(webhookRetries, prometheus.CounterValue, float64(st.Retries))
	ch <- prometheus.MustNewConstMetric(webhookDropped, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(webhookQueue, prometheus.GaugeValue, float64(st.QueueLen))
	ch <- prometheus.MustNewConstMetric(webhookQueueBytes, prometheus.GaugeValue, float64(st.QueueBytes))
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
	if timeout <= 0 {
		timeout = DefaultPushCertTimeout
	}
	r.reg.MustRegister(&pushCertCollector{expiries: expiries, timeout: timeout, now: time.Now})
}

var pushCertExpiry = prometheus.NewDesc(namespace+"_push_cert_expiry_seconds",
	"Seconds until the topic's APNs push certificate expires (negative once expired).",
	[]string{"topic"}, nil)

type pushCertCollector struct {
	expiries PushCertExpiries
	timeout  time.Duration
	now      func() time.Time
}

func (c *pushCertCollector) Describe(ch chan<- *prometheus.Desc) { ch <- pushCertExpiry }

func (c *pushCertCollector) Collect(ch chan<- prometheus.Metric) {
	// Collect gets no context from the scrape; the timeout keeps a slow
	// storage from holding the scrape forever.
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	byTopic, err := c.expiries(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(pushCertExpiry, err)
		return
	}
	now := c.now()
	for topic, notAfter := range byTopic {
		ch <- prometheus.MustNewConstMetric(pushCertExpiry, prometheus.GaugeValue,
			notAfter.Sub(now).Seconds(), topic)
	}
}
