package api

import (
	"context"
	"log/slog"
	"net/http"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/push"
)

// errNoPushResult is the per-ID error for an ID the Pusher did not report
// on.
const errNoPushResult = "push: no result for this ID"

// pushTo pushes to ids and records the outcome in resp: per-ID results and
// errors in resp.Status, a failure of the whole call in resp.PushError. A
// nil pusher fails every ID with push.ErrNotConfigured.
func pushTo(ctx context.Context, logger *slog.Logger, pusher push.Pusher, ids []string, resp *Response) {
	if pusher == nil {
		for _, id := range ids {
			resp.id(id).PushError = push.ErrNotConfigured.Error()
		}
		return
	}
	results, err := pusher.Push(ctx, ids)
	if err != nil {
		logger.ErrorContext(ctx, "push failed", "ids", len(ids), "err", err)
		resp.PushError = err.Error()
		return
	}
	for _, id := range ids {
		switch res := results[id]; {
		case res == nil:
			resp.id(id).PushError = errNoPushResult
		case res.Err != nil:
			logger.DebugContext(ctx, "push to enrollment failed", "id", id, "err", res.Err)
			resp.id(id).PushError = res.Err.Error()
		default:
			resp.id(id).PushResult = res.APNsID
		}
	}
}

// PushHandler serves /v1/push/ID[,ID…], mounted with http.StripPrefix so
// that the path it sees is the comma-separated enrollment IDs (NanoMDM's
// path form); with no IDs in the path and Content-Type application/json
// (POST /v1/push), the body names them instead: {"targets": ["ID", …]}, at
// most MaxTargetsBodySize bytes. Every ID must pass
// mdm.CheckEnrollmentID; at most WithMaxIDs IDs (DefaultMaxIDs) per call.
//
// It pushes to each and answers {"status": {ID: {"push_result": apns-id}
// or {"push_error": "..."}}}: 200 if every push succeeded, 207 if some
// failed, 500 if all did; 400 for no IDs, too many, an invalid one or a
// body that does not decode (nothing is pushed then); 413 for an
// oversized body. A nil pusher answers push.ErrNotConfigured for every ID.
func PushHandler(pusher push.Pusher, logger *slog.Logger, opts ...Option) http.Handler {
	logger = orDefault(logger)
	o := newOptions(opts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids, err := o.pushRequest(w, r)
		if err != nil {
			picohttp.WriteAPIError(w, r, logger, err)
			return
		}
		resp := new(Response)
		pushTo(r.Context(), logger, pusher, ids, resp)
		picohttp.WriteJSON(w, r, logger, resp.statusCode(ids), resp)
	})
}

// pushRequest returns the checked IDs a push names, in either form.
func (o *options) pushRequest(w http.ResponseWriter, r *http.Request) ([]string, error) {
	if !isTargetsBody(r) {
		return o.pathIDs(r.URL.Path)
	}
	var req pushRequest
	if err := readTargets(w, r, &req); err != nil {
		return nil, err
	}
	return o.bodyIDs(req.Targets)
}
