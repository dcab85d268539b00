// Package api serves PicoMDM's operator API: enqueueing commands, pushing
// enrollments, migrating enrollments in, and the version. Its JSON shapes
// and paths are NanoMDM's, so existing tooling works unchanged; its status
// codes follow DESIGN §3 (200 all good, 207 some IDs failed, 500 all
// failed, 4xx for a request that is itself wrong).
//
// The handlers do not authenticate: the caller wraps the ones that need it
// in BasicAuth from github.com/picomdm/picomdm/http.
package api

import (
	"log/slog"
	"net/http"

	picohttp "github.com/picomdm/picomdm/http"
)

// IDStatus is the outcome for one enrollment ID. Errors are rendered as
// their text.
type IDStatus struct {
	// PushResult is the apns-id of a successful push.
	PushResult string `json:"push_result,omitempty"`
	// PushError says why pushing to this ID failed.
	PushError string `json:"push_error,omitempty"`
	// CommandError says why the command was not queued for this ID.
	CommandError string `json:"command_error,omitempty"`
}

func (s *IDStatus) failed() bool { return s.PushError != "" || s.CommandError != "" }

// Response is the JSON body of the push and enqueue endpoints, field for
// field NanoMDM's, plus the "error" every PicoMDM API error carries.
type Response struct {
	// Status holds the per-ID outcomes, keyed by enrollment ID.
	Status map[string]*IDStatus `json:"status,omitempty"`
	// NoPush is set when the request asked not to push.
	NoPush bool `json:"no_push,omitempty"`
	// PushError says why the whole push failed.
	PushError string `json:"push_error,omitempty"`
	// CommandError says why the command could not be queued at all.
	CommandError string `json:"command_error,omitempty"`
	// CommandUUID and RequestType echo the enqueued command.
	CommandUUID string `json:"command_uuid,omitempty"`
	RequestType string `json:"request_type,omitempty"`
	// Error is set when the request itself failed (4xx, or a 500 before
	// any ID was handled).
	Error string `json:"error,omitempty"`
}

// id returns the status entry of id, creating it.
func (resp *Response) id(id string) *IDStatus {
	if resp.Status == nil {
		resp.Status = make(map[string]*IDStatus)
	}
	s := resp.Status[id]
	if s == nil {
		s = new(IDStatus)
		resp.Status[id] = s
	}
	return s
}

// statusCode applies DESIGN §3 to the outcome for ids: 500 when the whole
// push or enqueue failed or every ID failed, 207 when some did, else 200.
func (resp *Response) statusCode(ids []string) int {
	if resp.PushError != "" || resp.CommandError != "" {
		return http.StatusInternalServerError
	}
	failed := 0
	for _, id := range ids {
		if s := resp.Status[id]; s != nil && s.failed() {
			failed++
		}
	}
	switch {
	case failed == 0:
		return http.StatusOK
	case failed == len(ids):
		return http.StatusInternalServerError
	}
	return http.StatusMultiStatus
}

func orDefault(logger *slog.Logger) *slog.Logger {
	if logger == nil {
		return slog.Default()
	}
	return logger
}

// VersionHandler answers {"version": version}. It needs no authentication.
func VersionHandler(version string) http.Handler {
	body := struct {
		Version string `json:"version"`
	}{version}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		picohttp.WriteJSON(w, r, nil, http.StatusOK, &body)
	})
}
