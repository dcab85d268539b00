package api

import (
	"errors"
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
// enrollment IDs. The body is a raw command plist, which must carry
// CommandUUID and Command.RequestType; it is queued byte-exact for every
// ID with one store call, then, unless nopush has any non-empty value,
// pushed to the IDs it was queued for. An empty body just pushes.
//
// Answers (JSON, see Response): 200 all good, 207 some IDs failed, 500 all
// failed or the store failed; 400 for a path without IDs, an unparseable
// or incomplete command, or an empty body with nopush; 409 for a
// CommandUUID that already exists; 413 for an oversized body. It panics if
// store is nil; a nil pusher fails every push with push.ErrNotConfigured.
func EnqueueHandler(store storage.CommandEnqueuer, pusher push.Pusher, logger *slog.Logger) http.Handler {
	if store == nil {
		panic("http/api: nil CommandEnqueuer")
	}
	logger = orDefault(logger)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids := enrollmentIDs(r)
		if len(ids) == 0 {
			picohttp.WriteAPIError(w, r, logger, errNoIDs)
			return
		}
		body, err := picohttp.ReadBody(w, r, picohttp.DefaultMaxBodySize)
		if err != nil {
			picohttp.WriteAPIError(w, r, logger, err)
			return
		}
		resp := &Response{NoPush: r.URL.Query().Get("nopush") != ""}
		if len(body) == 0 {
			if resp.NoPush {
				picohttp.WriteAPIError(w, r, logger, errNothingToDo)
				return
			}
			pushTo(r.Context(), logger, pusher, ids, resp)
			picohttp.WriteJSON(w, r, logger, resp.statusCode(ids), resp)
			return
		}

		cmd, err := mdm.DecodeCommand(body)
		if err != nil {
			resp.Error, resp.CommandError = err.Error(), err.Error()
			picohttp.WriteAPIErrorBody(w, r, logger, err, resp)
			return
		}
		resp.CommandUUID, resp.RequestType = cmd.CommandUUID, cmd.RequestType()
		idErrs, err := store.EnqueueCommand(r.Context(), ids, cmd)
		if err != nil {
			resp.Error, resp.CommandError = err.Error(), err.Error()
			picohttp.WriteAPIErrorBody(w, r, logger, err, resp)
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
			pushTo(r.Context(), logger, pusher, queued, resp)
		}
		picohttp.WriteJSON(w, r, logger, resp.statusCode(ids), resp)
	})
}
