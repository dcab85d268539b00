package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/storage"
)

// The ServeMux patterns of the webhook outbox API.
const (
	RouteWebhookEvents         = "/v1/webhook/events"
	RouteWebhookEvent          = "/v1/webhook/events/{id}"
	RouteWebhookEventRedeliver = "/v1/webhook/events/{id}/redeliver"
)

// WebhookEventStore is what the webhook outbox API reads and edits: the
// durable outbox's events.
type WebhookEventStore interface {
	ListEvents(ctx context.Context, state string, p storage.Page) ([]storage.OutboxEvent, string, error)
	RedeliverEvent(ctx context.Context, id string) error
	DropEvent(ctx context.Context, id string) error
}

// WebhookEventJSON is one outbox event as the API shows it. Body is the
// exact JSON the receiver is (or was) sent, base64 in JSON; timestamps
// are RFC 3339 (UTC), next_attempt_at null when the event is due at once.
type WebhookEventJSON struct {
	EventID       string  `json:"event_id"`
	EnrollmentID  string  `json:"enrollment_id"`
	Topic         string  `json:"topic"`
	CreatedAt     *string `json:"created_at"`
	Attempts      int     `json:"attempts"`
	NextAttemptAt *string `json:"next_attempt_at"`
	LastError     string  `json:"last_error"`
	State         string  `json:"state"`
	Body          []byte  `json:"body"`
}

// WebhookEventsResponse is the answer of GET /v1/webhook/events.
// NextCursor is "" after the last page.
type WebhookEventsResponse struct {
	Events     []WebhookEventJSON `json:"events"`
	NextCursor string             `json:"next_cursor"`
}

// WebhookEventRoutes returns the webhook outbox API's handlers keyed by
// their ServeMux pattern (the RouteWebhook constants), to be registered
// behind the API's basic auth:
//
//   - GET /v1/webhook/events[?state=failed|pending&cursor=&limit=]: a page
//     of the events in state (default failed: those set aside after the
//     receiver refused them), oldest first, {"events": [...],
//     "next_cursor": "..."}.
//   - POST /v1/webhook/events/{id}/redeliver: makes set-aside event id
//     pending again, in its original place among its enrollment's events,
//     {"redelivered": true}; 404 if no failed event has that ID.
//   - DELETE /v1/webhook/events/{id}: deletes event id whatever its
//     state, {"dropped": true}; 404 if there is none.
//
// A bad state, limit or cursor gets 400. It panics if store is nil.
func WebhookEventRoutes(store WebhookEventStore, logger *slog.Logger) map[string]http.Handler {
	if store == nil {
		panic("http/api: nil WebhookEventStore")
	}
	h := &webhookEvents{store: store, logger: orDefault(logger)}
	return map[string]http.Handler{
		RouteWebhookEvents:         only(h.logger, h.list, http.MethodGet, http.MethodHead),
		RouteWebhookEvent:          only(h.logger, h.drop, http.MethodDelete),
		RouteWebhookEventRedeliver: only(h.logger, h.redeliver, http.MethodPost),
	}
}

type webhookEvents struct {
	store  WebhookEventStore
	logger *slog.Logger
}

func (h *webhookEvents) list(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	switch state {
	case "":
		state = storage.OutboxFailed
	case storage.OutboxFailed, storage.OutboxPending:
	default:
		picohttp.WriteAPIError(w, r, h.logger, badRequest("state %q: want %s or %s", state, storage.OutboxFailed, storage.OutboxPending))
		return
	}
	p, err := page(r)
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, err)
		return
	}
	events, next, err := h.store.ListEvents(r.Context(), state, p)
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, fmt.Errorf("listing webhook events: %w", err))
		return
	}
	resp := &WebhookEventsResponse{Events: make([]WebhookEventJSON, 0, len(events)), NextCursor: next}
	for _, ev := range events {
		resp.Events = append(resp.Events, WebhookEventJSON{
			EventID:       ev.ID,
			EnrollmentID:  ev.EnrollmentID,
			Topic:         ev.Topic,
			CreatedAt:     timeJSON(ev.CreatedAt),
			Attempts:      ev.Attempts,
			NextAttemptAt: timeJSON(ev.NextAttemptAt),
			LastError:     ev.LastError,
			State:         ev.State,
			Body:          ev.Body,
		})
	}
	picohttp.WriteJSON(w, r, h.logger, http.StatusOK, resp)
}

func (h *webhookEvents) redeliver(w http.ResponseWriter, r *http.Request) {
	vals, err := pathValues(r, "id")
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, err)
		return
	}
	if err := h.store.RedeliverEvent(r.Context(), vals[0]); err != nil {
		picohttp.WriteAPIError(w, r, h.logger, fmt.Errorf("redelivering webhook event: %w", err))
		return
	}
	h.logger.InfoContext(r.Context(), "webhook event redelivered", "event_id", vals[0])
	picohttp.WriteJSON(w, r, h.logger, http.StatusOK, map[string]bool{"redelivered": true})
}

func (h *webhookEvents) drop(w http.ResponseWriter, r *http.Request) {
	vals, err := pathValues(r, "id")
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, err)
		return
	}
	if err := h.store.DropEvent(r.Context(), vals[0]); err != nil {
		picohttp.WriteAPIError(w, r, h.logger, fmt.Errorf("dropping webhook event: %w", err))
		return
	}
	h.logger.InfoContext(r.Context(), "webhook event dropped", "event_id", vals[0])
	picohttp.WriteJSON(w, r, h.logger, http.StatusOK, map[string]bool{"dropped": true})
}
