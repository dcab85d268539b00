package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/mdm/commands"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage"
)

// DefaultPageLimit is the page size of the inspection listings when the
// request gives no limit.
const DefaultPageLimit = 100

// The ServeMux patterns of the inspection API. Each names one path and
// serves every method documented for it (GET/HEAD, DELETE), answering 405
// with an Allow header and a JSON error to others, so that one
// docs/openapi.yaml path item corresponds to one pattern.
const (
	RouteEnrollments   = "/v1/enrollments"
	RouteEnrollment    = "/v1/enrollments/{id}"
	RouteQueue         = "/v1/queue/{id}"
	RouteQueuedCommand = "/v1/queue/{id}/{command_uuid}"
	RouteCommand       = "/v1/commands/{command_uuid}"
	RouteCommandResult = "/v1/commands/{command_uuid}/results/{id}"
	RouteCertificates  = "/v1/enrollments/{id}/certificates"
	RouteCertificate   = "/v1/enrollments/{id}/certificates/{hash}"
)

// InspectionStore is what the inspection API reads and edits: the
// enrollments, queues and commands, and the identity certificates
// cert-auth associated with device channels.
type InspectionStore interface {
	storage.InspectionStore
	storage.CertAuthInspector
}

// EnrollmentJSON is one enrollment as the inspection API shows it.
// Timestamps are RFC 3339 (UTC); unknown ones are null.
type EnrollmentJSON struct {
	ID                   string  `json:"id"`
	Type                 string  `json:"type"`
	ParentID             *string `json:"parent_id"` // null for a device channel
	SerialNumber         string  `json:"serial_number,omitempty"`
	Topic                string  `json:"topic"`
	Enabled              bool    `json:"enabled"`
	TokenUpdateTally     int     `json:"token_update_tally"`
	EnrolledAt           *string `json:"enrolled_at"`
	LastSeenAt           *string `json:"last_seen_at"`
	PushTokenValid       bool    `json:"push_token_valid"`
	IdentityCertNotAfter *string `json:"identity_cert_not_after"`
	PendingCommands      int     `json:"pending_commands"`
}

// CertificateJSON is one identity certificate associated with a device
// channel: the cert-auth hash (lower-case hex SHA-256 of its DER), its
// expiry and when it was associated (null if unknown).
type CertificateJSON struct {
	Hash         string  `json:"hash"`
	NotAfter     *string `json:"not_after"`
	AssociatedAt *string `json:"associated_at"`
}

// CertificatesResponse is the answer of GET
// /v1/enrollments/{id}/certificates.
type CertificatesResponse struct {
	ID           string            `json:"id"`
	Certificates []CertificateJSON `json:"certificates"`
}

// EnrollmentDetailJSON is the answer of GET /v1/enrollments/{id}: the
// enrollment and, for a device channel, its user channels (always an
// array, empty for a user channel).
type EnrollmentDetailJSON struct {
	EnrollmentJSON
	UserChannels []EnrollmentJSON `json:"user_channels"`
}

// EnrollmentsResponse is the answer of GET /v1/enrollments. NextCursor is
// "" after the last page.
type EnrollmentsResponse struct {
	Enrollments []EnrollmentJSON `json:"enrollments"`
	NextCursor  string           `json:"next_cursor"`
}

// QueuedCommandJSON is one pending command of an enrollment.
type QueuedCommandJSON struct {
	CommandUUID  string  `json:"command_uuid"`
	RequestType  string  `json:"request_type"`
	EnqueuedAt   *string `json:"enqueued_at"`
	Status       *string `json:"status"` // null or "NotNow"
	NotNowCount  int     `json:"not_now_count"`
	LastNotNowAt *string `json:"last_not_now_at"`
}

// QueueResponse is the answer of GET /v1/queue/{id}.
type QueueResponse struct {
	ID       string              `json:"id"`
	Commands []QueuedCommandJSON `json:"commands"`
}

// CommandStateJSON is one enrollment's state for a command. Result is the
// raw plist of its last report (base64 in JSON), absent while pending.
type CommandStateJSON struct {
	ID          string  `json:"id"`
	State       string  `json:"state"`
	NotNowCount int     `json:"not_now_count"`
	EnqueuedAt  *string `json:"enqueued_at"`
	AnsweredAt  *string `json:"answered_at"`
	Result      []byte  `json:"result,omitempty"`
}

// CommandResponse is the answer of GET /v1/commands/{command_uuid}: the
// command (its raw plist base64 in JSON) and a page of its per-enrollment
// states. NextCursor is "" after the last page.
type CommandResponse struct {
	CommandUUID string             `json:"command_uuid"`
	RequestType string             `json:"request_type"`
	EnqueuedAt  *string            `json:"enqueued_at"`
	Command     []byte             `json:"command"`
	Enrollments []CommandStateJSON `json:"enrollments"`
	NextCursor  string             `json:"next_cursor"`
}

// InspectionRoutes returns the inspection API's handlers keyed by their
// ServeMux pattern (the Route constants), to be registered behind the
// API's basic auth:
//
//   - GET /v1/enrollments[?type=&enabled=&serial=&topic=&device_id=&seen_before=&seen_after=&cursor=&limit=]:
//     a page of enrollments, {"enrollments": [...], "next_cursor": "..."}.
//   - GET /v1/enrollments/{id}: one enrollment, with user_channels for a
//     device channel; 404 if unknown.
//   - GET /v1/queue/{id}: {"id", "commands": [...]}, the pending commands
//     in delivery order; DELETE clears them, {"cleared": n}; 404 for an
//     unknown enrollment.
//   - DELETE /v1/queue/{id}/{command_uuid}: cancels one pending command,
//     {"cancelled": true}; 409 if already answered, 404 if never queued.
//   - GET /v1/commands/{command_uuid}[?cursor=&limit=]: the command and a
//     page of its per-enrollment states; 404 if unknown.
//   - GET /v1/commands/{command_uuid}/results/{id}: the raw result plist
//     (application/xml); 404 while pending or if unknown. With Accept
//     preferring application/json, commands.ResultJSON of it instead
//     (application/json); 500 if it has no JSON form.
//   - GET /v1/enrollments/{id}/certificates: the identity certificates
//     cert-auth associated with device channel id, {"id", "certificates":
//     [{"hash", "not_after", "associated_at"}]}; 404 for an unknown
//     enrollment, 400 for a user channel (its device's certificate
//     speaks for it).
//   - DELETE /v1/enrollments/{id}/certificates/{hash}: cuts that identity,
//     {"deleted": true}: requests signed with the certificate are refused
//     from then on, until the device enrolls again; 404 if not
//     associated, 400 for a malformed hash.
//
// A bad filter, limit or cursor gets 400. It panics if store is nil.
func InspectionRoutes(store InspectionStore, logger *slog.Logger) map[string]http.Handler {
	if store == nil {
		panic("http/api: nil InspectionStore")
	}
	h := &inspector{store: store, logger: orDefault(logger)}
	return map[string]http.Handler{
		RouteEnrollments:   h.methods(h.listEnrollments, nil),
		RouteEnrollment:    h.methods(h.getEnrollment, nil, "id"),
		RouteQueue:         h.methods(h.getQueue, h.clearQueue, "id"),
		RouteQueuedCommand: h.methods(nil, h.cancelCommand, "id", "command_uuid"),
		RouteCommand:       h.methods(h.getCommand, nil, "command_uuid"),
		RouteCommandResult: h.methods(h.getCommandResult, nil, "command_uuid", "id"),
		RouteCertificates:  h.methods(h.getCertificates, nil, "id"),
		RouteCertificate:   h.methods(nil, h.deleteCertificate, "id", "hash"),
	}
}

type inspector struct {
	store  InspectionStore
	logger *slog.Logger
}

// inspectFunc serves one method of an inspection route. vals are the
// route's path values (the names given to methods, in order), none empty.
// It returns the 200 JSON answer, or the error to answer with; neither
// means it wrote the response itself.
type inspectFunc func(w http.ResponseWriter, r *http.Request, vals []string) (any, error)

// methods dispatches GET and HEAD to get and DELETE to del (either may be
// nil), answering 405 to anything else, after reading the path values
// names (404 if one is empty); it writes what they return.
func (h *inspector) methods(get, del inspectFunc, names ...string) http.Handler {
	var allow []string
	if get != nil {
		allow = append(allow, http.MethodGet, http.MethodHead)
	}
	if del != nil {
		allow = append(allow, http.MethodDelete)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var serve inspectFunc
		switch {
		case get != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			serve = get
		case del != nil && r.Method == http.MethodDelete:
			serve = del
		default:
			methodNotAllowed(w, r, h.logger, allow)
			return
		}
		vals, err := pathValues(r, names...)
		var resp any
		if err == nil {
			resp, err = serve(w, r, vals)
		}
		switch {
		case err != nil:
			picohttp.WriteAPIError(w, r, h.logger, err)
		case resp != nil:
			picohttp.WriteJSON(w, r, h.logger, http.StatusOK, resp)
		}
	})
}

// badRequest is a 400 saying what is wrong with the request.
func badRequest(format string, args ...any) error {
	return service.NewStatusError(http.StatusBadRequest, fmt.Errorf(format, args...))
}

// errNoPathValue is the 404 for a path whose wildcard is empty.
var errNoPathValue = fmt.Errorf("empty path segment: %w", storage.ErrNotFound)

// pathValues returns r's path values for names, failing if any is empty.
func pathValues(r *http.Request, names ...string) ([]string, error) {
	vals := make([]string, len(names))
	for i, name := range names {
		if vals[i] = r.PathValue(name); vals[i] == "" {
			return nil, errNoPathValue
		}
	}
	return vals, nil
}

// page parses the cursor and limit query parameters.
func page(r *http.Request) (storage.Page, error) {
	q := r.URL.Query()
	p := storage.Page{Cursor: q.Get("cursor"), Limit: DefaultPageLimit}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > storage.MaxPageLimit {
			return p, badRequest("limit %q: want an integer from 1 to %d", s, storage.MaxPageLimit)
		}
		p.Limit = n
	}
	return p, nil
}

var enrollTypes = []mdm.EnrollType{mdm.Device, mdm.User, mdm.UserEnrollmentDevice, mdm.UserEnrollment, mdm.SharedIPad}

// enrollmentFilter parses the filters of GET /v1/enrollments.
func enrollmentFilter(r *http.Request) (storage.EnrollmentFilter, error) {
	q := r.URL.Query()
	f := storage.EnrollmentFilter{
		Serial:   q.Get("serial"),
		Topic:    q.Get("topic"),
		DeviceID: q.Get("device_id"),
	}
	if s := q.Get("type"); s != "" {
		f.Type = mdm.EnrollType(s)
		known := false
		for _, t := range enrollTypes {
			known = known || t == f.Type
		}
		if !known {
			return f, badRequest("type %q: want one of %q", s, enrollTypes)
		}
	}
	if s := q.Get("enabled"); s != "" {
		var b bool
		switch s {
		case "true":
			b = true
		case "false":
		default:
			return f, badRequest("enabled %q: want true or false", s)
		}
		f.Enabled = &b
	}
	for _, tf := range []struct {
		name string
		t    *time.Time
	}{{"seen_before", &f.SeenBefore}, {"seen_after", &f.SeenAfter}} {
		if s := q.Get(tf.name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return f, badRequest("%s %q: want an RFC 3339 time", tf.name, s)
			}
			*tf.t = t
		}
	}
	return f, nil
}

// timeJSON renders t as RFC 3339 in UTC, or nil (null) if it is zero.
func timeJSON(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339Nano)
	return &s
}

func enrollmentJSON(e *storage.EnrollmentInfo) EnrollmentJSON {
	var parent *string
	if e.ParentID != "" {
		p := e.ParentID
		parent = &p
	}
	return EnrollmentJSON{
		ID:                   e.ID,
		Type:                 string(e.Type),
		ParentID:             parent,
		SerialNumber:         e.SerialNumber,
		Topic:                e.Topic,
		Enabled:              e.Enabled,
		TokenUpdateTally:     e.TokenUpdateTally,
		EnrolledAt:           timeJSON(e.EnrolledAt),
		LastSeenAt:           timeJSON(e.LastSeenAt),
		PushTokenValid:       e.PushTokenValid,
		IdentityCertNotAfter: timeJSON(e.IdentityCertNotAfter),
		PendingCommands:      e.PendingCommands,
	}
}

func (h *inspector) listEnrollments(_ http.ResponseWriter, r *http.Request, _ []string) (any, error) {
	f, err := enrollmentFilter(r)
	if err != nil {
		return nil, err
	}
	p, err := page(r)
	if err != nil {
		return nil, err
	}
	infos, next, err := h.store.ListEnrollments(r.Context(), f, p)
	if err != nil {
		return nil, fmt.Errorf("listing enrollments: %w", err)
	}
	resp := &EnrollmentsResponse{Enrollments: make([]EnrollmentJSON, 0, len(infos)), NextCursor: next}
	for i := range infos {
		resp.Enrollments = append(resp.Enrollments, enrollmentJSON(&infos[i]))
	}
	return resp, nil
}

func (h *inspector) getEnrollment(_ http.ResponseWriter, r *http.Request, vals []string) (any, error) {
	id := vals[0]
	info, err := h.store.RetrieveEnrollment(r.Context(), id)
	if err != nil {
		return nil, fmt.Errorf("retrieving enrollment: %w", err)
	}
	resp := &EnrollmentDetailJSON{EnrollmentJSON: enrollmentJSON(info), UserChannels: []EnrollmentJSON{}}
	if info.ParentID == "" && !info.Type.IsUserChannel() {
		// A device channel: list its user channels, every page.
		p := storage.Page{Limit: storage.MaxPageLimit}
		for {
			infos, next, err := h.store.ListEnrollments(r.Context(), storage.EnrollmentFilter{DeviceID: id}, p)
			if err != nil {
				return nil, fmt.Errorf("listing user channels: %w", err)
			}
			for i := range infos {
				if infos[i].ID != id {
					resp.UserChannels = append(resp.UserChannels, enrollmentJSON(&infos[i]))
				}
			}
			if next == "" || next == p.Cursor {
				break
			}
			p.Cursor = next
		}
	}
	return resp, nil
}

func (h *inspector) getQueue(_ http.ResponseWriter, r *http.Request, vals []string) (any, error) {
	cmds, err := h.store.RetrieveQueue(r.Context(), vals[0])
	if err != nil {
		return nil, fmt.Errorf("retrieving queue: %w", err)
	}
	resp := &QueueResponse{ID: vals[0], Commands: make([]QueuedCommandJSON, 0, len(cmds))}
	for _, c := range cmds {
		qc := QueuedCommandJSON{
			CommandUUID:  c.CommandUUID,
			RequestType:  c.RequestType,
			EnqueuedAt:   timeJSON(c.EnqueuedAt),
			NotNowCount:  c.NotNowCount,
			LastNotNowAt: timeJSON(c.LastNotNowAt),
		}
		if c.Status != "" {
			status := c.Status
			qc.Status = &status
		}
		resp.Commands = append(resp.Commands, qc)
	}
	return resp, nil
}

func (h *inspector) clearQueue(_ http.ResponseWriter, r *http.Request, vals []string) (any, error) {
	n, err := h.store.ClearQueue(r.Context(), vals[0])
	if err != nil {
		return nil, fmt.Errorf("clearing queue: %w", err)
	}
	h.logger.InfoContext(r.Context(), "queue cleared", "id", vals[0], "cleared", n)
	return map[string]int{"cleared": n}, nil
}

func (h *inspector) cancelCommand(_ http.ResponseWriter, r *http.Request, vals []string) (any, error) {
	if err := h.store.CancelCommand(r.Context(), vals[0], vals[1]); err != nil {
		return nil, fmt.Errorf("cancelling command: %w", err)
	}
	h.logger.InfoContext(r.Context(), "command cancelled", "id", vals[0], "command_uuid", vals[1])
	return map[string]bool{"cancelled": true}, nil
}

func (h *inspector) getCommand(_ http.ResponseWriter, r *http.Request, vals []string) (any, error) {
	p, err := page(r)
	if err != nil {
		return nil, err
	}
	cmd, err := h.store.RetrieveCommand(r.Context(), vals[0])
	if err != nil {
		return nil, fmt.Errorf("retrieving command: %w", err)
	}
	states, next, err := h.store.ListCommandStates(r.Context(), vals[0], p)
	if err != nil {
		return nil, fmt.Errorf("listing command states: %w", err)
	}
	resp := &CommandResponse{
		CommandUUID: cmd.CommandUUID,
		RequestType: cmd.RequestType,
		EnqueuedAt:  timeJSON(cmd.EnqueuedAt),
		Command:     cmd.Raw,
		Enrollments: make([]CommandStateJSON, 0, len(states)),
		NextCursor:  next,
	}
	for _, s := range states {
		resp.Enrollments = append(resp.Enrollments, CommandStateJSON{
			ID:          s.EnrollmentID,
			State:       s.State,
			NotNowCount: s.NotNowCount,
			EnqueuedAt:  timeJSON(s.EnqueuedAt),
			AnsweredAt:  timeJSON(s.AnsweredAt),
			Result:      s.Result,
		})
	}
	return resp, nil
}

// errNoResult is the 404 for a command an enrollment has not answered.
var errNoResult = fmt.Errorf("no result yet: %w", storage.ErrNotFound)

func (h *inspector) getCommandResult(w http.ResponseWriter, r *http.Request, vals []string) (any, error) {
	state, err := h.store.RetrieveCommandResult(r.Context(), vals[0], vals[1])
	if err == nil && len(state.Result) == 0 {
		err = errNoResult
	}
	if err != nil {
		return nil, fmt.Errorf("retrieving command result: %w", err)
	}
	w.Header().Add("Vary", "Accept")
	if !prefersJSON(r.Header.Values("Accept")) {
		writeBody(w, r, h.logger, "application/xml", state.Result)
		return nil, nil
	}
	b, err := commands.ResultJSON(state.Result)
	if err != nil {
		// The device's plist was stored as it came and is still served
		// raw. A 500 whatever err wraps (a parse error would map to 400):
		// the request was fine, the stored result is not.
		return nil, service.NewStatusError(http.StatusInternalServerError, fmt.Errorf(
			"converting the result to JSON (ask without Accept: application/json for the raw plist): %w", err))
	}
	writeBody(w, r, h.logger, "application/json", b)
	return nil, nil
}

// errUserChannelCerts is the 400 for certificates asked of a user channel.
var errUserChannelCerts = badRequest("a user channel has no certificates of its own: ask its device channel")

func (h *inspector) getCertificates(_ http.ResponseWriter, r *http.Request, vals []string) (any, error) {
	id := vals[0]
	certs, err := h.store.RetrieveCertHashes(r.Context(), id)
	if err != nil {
		return nil, fmt.Errorf("retrieving certificates: %w", err)
	}
	if len(certs) == 0 {
		// None: say whether the enrollment exists at all. (A device that
		// authenticated but never sent a TokenUpdate has certificates
		// but no enrollment yet, so this is asked only when there are
		// none.)
		info, err := h.store.RetrieveEnrollment(r.Context(), id)
		if err == nil && info.Type.IsUserChannel() {
			err = errUserChannelCerts
		}
		if err != nil {
			return nil, fmt.Errorf("retrieving certificates: %w", err)
		}
	}
	resp := &CertificatesResponse{ID: id, Certificates: make([]CertificateJSON, 0, len(certs))}
	for _, c := range certs {
		resp.Certificates = append(resp.Certificates, CertificateJSON{
			Hash:         c.Hash,
			NotAfter:     timeJSON(c.NotAfter),
			AssociatedAt: timeJSON(c.AssociatedAt),
		})
	}
	return resp, nil
}

// validCertHash reports whether s is a cert-auth hash: 64 lower-case hex
// digits.
func validCertHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (h *inspector) deleteCertificate(_ http.ResponseWriter, r *http.Request, vals []string) (any, error) {
	id, hash := vals[0], vals[1]
	if !validCertHash(hash) {
		return nil, badRequest("certificate hash: want 64 lower-case hex digits (SHA-256 of the DER)")
	}
	if err := h.store.DeleteCertHash(r.Context(), id, hash); err != nil {
		return nil, fmt.Errorf("deleting certificate: %w", err)
	}
	h.logger.InfoContext(r.Context(), "identity certificate removed", "enrollment_id", id, "cert_hash", hash)
	return map[string]bool{"deleted": true}, nil
}
