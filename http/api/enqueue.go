package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/push"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage"
)

// errNothingToDo is the 400 for an empty body with nopush.
var errNothingToDo = service.NewStatusError(http.StatusBadRequest, errors.New("no command and nopush: nothing to do"))

// EnqueueHandler serves /v1/enqueue/ID[,ID…][?nopush=1], mounted with
// http.StripPrefix so that the path it sees is the comma-separated
// enrollment IDs (NanoMDM's path form). The body is a raw command plist,
// which must carry CommandUUID and Command.RequestType; it is queued
// byte-exact for every ID with one store call, then, unless nopush has any
// non-empty value, pushed to the IDs it was queued for. An empty body just
// pushes.
//
// With no IDs in the path and Content-Type application/json (POST
// /v1/enqueue), the body names them instead (the body form, for calls
// whose IDs do not fit in a request header): {"targets": ["ID", …],
// "plist": "<base64 of the raw command plist>", "nopush": false}, at most
// MaxTargetsBodySize bytes. Either form is otherwise handled alike.
//
// Every ID must pass mdm.CheckEnrollmentID and the CommandUUID
// mdm.CheckCommandUUID; at most WithMaxIDs IDs (DefaultMaxIDs) per call.
// Nothing is stored or pushed unless the whole request is valid.
//
// Answers (JSON, see Response): 200 all good, 207 some IDs failed, 500 all
// failed or the store failed; 400 for no IDs, too many, an invalid one, an
// unparseable or incomplete command, a body form that does not decode, or
// an empty command with nopush; 409 for a CommandUUID that already exists;
// 413 for an oversized body or command. It panics if store is nil; a nil
// pusher fails every push with push.ErrNotConfigured.
func EnqueueHandler(store storage.CommandEnqueuer, pusher push.Pusher, logger *slog.Logger, opts ...Option) http.Handler {
	if store == nil {
		panic("http/api: nil CommandEnqueuer")
	}
	e := &enqueuer{store: store, pusher: pusher, logger: orDefault(logger)}
	o := newOptions(opts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids, body, noPush, err := o.enqueueRequest(w, r)
		if err != nil {
			picohttp.WriteAPIError(w, r, e.logger, err)
			return
		}
		noPush = noPush || r.URL.Query().Get("nopush") != ""
		if len(body) == 0 {
			if noPush {
				picohttp.WriteAPIError(w, r, e.logger, errNothingToDo)
				return
			}
			resp := new(Response)
			pushTo(r.Context(), e.logger, e.pusher, ids, resp)
			picohttp.WriteJSON(w, r, e.logger, resp.statusCode(ids), resp)
			return
		}
		e.enqueue(w, r, ids, body, noPush)
	})
}

// enqueuer queues commands the one way both /v1/enqueue and /v1/commands
// do.
type enqueuer struct {
	store  storage.CommandEnqueuer
	pusher push.Pusher
	logger *slog.Logger
}

// enqueue queues raw, a command plist, byte-exact for the checked ids
// with one store call, pushes to the IDs it was queued for unless noPush,
// and answers with the Response and status EnqueueHandler documents.
func (e *enqueuer) enqueue(w http.ResponseWriter, r *http.Request, ids []string, raw []byte, noPush bool) {
	resp := &Response{NoPush: noPush}
	cmd, err := mdm.DecodeCommand(raw)
	if err != nil {
		resp.Error, resp.CommandError = err.Error(), err.Error()
		picohttp.WriteAPIErrorBody(w, r, e.logger, err, resp)
		return
	}
	resp.CommandUUID, resp.RequestType = cmd.CommandUUID, cmd.RequestType()
	idErrs, err := e.store.EnqueueCommand(r.Context(), ids, cmd)
	if err != nil {
		resp.Error, resp.CommandError = err.Error(), err.Error()
		picohttp.WriteAPIErrorBody(w, r, e.logger, err, resp)
		return
	}
	queued := make([]string, 0, len(ids))
	for _, id := range ids {
		if idErr := idErrs[id]; idErr != nil {
			resp.id(id).CommandError = idErr.Error()
			continue
		}
		queued = append(queued, id)
	}
	if !resp.NoPush && len(queued) > 0 {
		pushTo(r.Context(), e.logger, e.pusher, queued, resp)
	}
	picohttp.WriteJSON(w, r, e.logger, resp.statusCode(ids), resp)
}

// enqueueRequest reads what an enqueue names, in either form: the checked
// IDs, the raw command (nil or empty: push only) and the body form's
// nopush. The path form's IDs are checked before its body is read.
func (o *options) enqueueRequest(w http.ResponseWriter, r *http.Request) (ids []string, command []byte, noPush bool, err error) {
	if !isTargetsBody(r) {
		if ids, err = o.pathIDs(r.URL.Path); err != nil {
			return nil, nil, false, err
		}
		command, err = picohttp.ReadBody(w, r, picohttp.DefaultMaxBodySize)
		return ids, command, false, err
	}
	var req enqueueRequest
	if err := readTargets(w, r, &req); err != nil {
		return nil, nil, false, err
	}
	if ids, err = o.bodyIDs(req.Targets); err != nil {
		return nil, nil, false, err
	}
	// The command is bounded as the path form's body is.
	if int64(len(req.Plist)) > picohttp.DefaultMaxBodySize {
		return nil, nil, false, fmt.Errorf("the JSON body's plist: %w", &http.MaxBytesError{Limit: picohttp.DefaultMaxBodySize})
	}
	return ids, req.Plist, req.NoPush, nil
}
