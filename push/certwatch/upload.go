package certwatch

import (
	"context"
	"fmt"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// countLimit is the page UploadWarnings counts an expiring topic's
// enrollments in: enough to say how many there are for a small fleet, and
// "at least" that for a larger one, at the cost of one small page.
const countLimit = 100

// UploadStore is what UploadWarnings reads: the stored push certificates
// and the enrollments' topics. Every storage.Store is one.
type UploadStore interface {
	storage.PushCertStore
	storage.InspectionStore
}

// UploadWarnings checks a push certificate for topic that was just
// uploaded, at now, and returns one warning per reason to think it was
// made with Create instead of Renew in Apple's portal: no enabled
// enrollment uses topic, while another stored topic, whose certificate
// expires within Window (or has expired), has enabled enrollments. Those
// devices stay on the old topic, which cannot be pushed once its
// certificate expires; only renewing that certificate keeps them. It
// returns nil when there is no reason to warn. The warnings are advice:
// the upload stands either way.
func UploadWarnings(ctx context.Context, store UploadStore, topic string, now time.Time) ([]string, error) {
	infos, err := store.RetrievePushCertInfos(ctx)
	if err != nil {
		return nil, fmt.Errorf("retrieving push certificate expiries: %w", err)
	}
	var expiring []Warning
	for _, warn := range ExpiryWarnings(infos, now) {
		if warn.Topic != topic {
			expiring = append(expiring, warn)
		}
	}
	if len(expiring) == 0 {
		return nil, nil
	}
	if n, _, err := countEnabled(ctx, store, topic, 1); err != nil {
		return nil, err
	} else if n > 0 {
		return nil, nil // topic is in use: a renewal, or a second tenant
	}
	var out []string
	for _, old := range expiring {
		n, more, err := countEnabled(ctx, store, old.Topic, countLimit)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			continue
		}
		count := fmt.Sprintf("%d enrollments use", n)
		switch {
		case more:
			count = fmt.Sprintf("at least %d enrollments use", n)
		case n == 1:
			count = "1 enrollment uses"
		}
		expires := "expires on " + formatTime(old.NotAfter) + " (in " + formatLeft(old.left) + ")"
		if old.Expired() {
			expires = "expired on " + formatTime(old.NotAfter)
		}
		out = append(out, fmt.Sprintf("topic %s has no enrolled devices, while %s topic %s, whose push certificate %s: "+
			"this looks like a new push certificate (Create) instead of a renewal (Renew) of %s's certificate. "+
			"Devices enrolled on %s stay on it and cannot be pushed once its certificate expires; they would have to enroll again to move to %s. "+
			"Renew %s's certificate in Apple's Push Certificates Portal instead and upload that; the certificate for %s was stored anyway",
			topic, count, old.Topic, expires, old.Topic, old.Topic, topic, old.Topic, topic))
	}
	return out, nil
}

// countEnabled counts the enabled enrollments on topic, up to limit, and
// reports whether there are more.
func countEnabled(ctx context.Context, store storage.InspectionStore, topic string, limit int) (int, bool, error) {
	enabled := true
	page, next, err := store.ListEnrollments(ctx, storage.EnrollmentFilter{Topic: topic, Enabled: &enabled}, storage.Page{Limit: limit})
	if err != nil {
		return 0, false, fmt.Errorf("listing enrollments on topic %s: %w", topic, err)
	}
	return len(page), next != "", nil
}
