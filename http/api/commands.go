package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/mdm/commands"
	"github.com/picomdm/picomdm/push"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage"
)

// The ServeMux patterns of the typed command API. The schema patterns are
// more specific than RouteCommand's, so they win: a command whose
// CommandUUID is "schema" cannot be shown at GET /v1/commands/schema, and
// POST /v1/commands refuses that CommandUUID.
const (
	RouteCommands       = "/v1/commands"
	RouteCommandSchemas = "/v1/commands/schema"
	RouteCommandSchema  = "/v1/commands/schema/{request_type}"
)

// reservedCommandUUID is the one CommandUUID RouteCommandSchemas hides.
const reservedCommandUUID = "schema"

// MaxCommandsBodySize bounds the JSON body of POST /v1/commands: 1 MiB,
// room for a profile of about 750 KiB in base64, or some 25,000
// UUID-sized targets. Larger ones go through POST /v1/enqueue.
const MaxCommandsBodySize int64 = 1 << 20

// CommandsRequest is the JSON body of POST /v1/commands.
type CommandsRequest struct {
	// Targets are the enrollment IDs to queue the command for.
	Targets []string `json:"targets"`
	// Command is the command dictionary with Apple's key names,
	// RequestType included, validated by commands.FromJSON.
	Command json.RawMessage `json:"command"`
	// CommandUUID is the command's CommandUUID; empty: a fresh one.
	CommandUUID string `json:"command_uuid,omitempty"`
	// NoPush queues without pushing.
	NoPush bool `json:"nopush,omitempty"`
}

// SchemaResponse is the answer of GET /v1/commands/schema: every command
// Apple documents, sorted by RequestType.
type SchemaResponse struct {
	Commands []commands.Spec `json:"commands"`
}

// CommandRoutes returns the typed command API's handlers keyed by their
// ServeMux pattern (the Route constants above), to be registered behind
// the API's basic auth:
//
//   - POST /v1/commands: body CommandsRequest (Content-Type
//     application/json, at most MaxCommandsBodySize). The command is
//     validated and converted by commands.BuildJSON, then queued for the
//     targets exactly as EnqueueHandler queues a raw plist (same store
//     call, push unless nopush, same answer and status codes). 400
//     {"error": "<key path>: <reason>"} for a command that breaks its
//     schema (e.g. "command.Settings[2].Item: required"), 400 for a body
//     that is not one JSON object of those fields, no targets, too many
//     (WithMaxIDs) or an invalid one, an invalid or reserved
//     command_uuid; 413 beyond the size limit; 415 for another
//     Content-Type (a cross-site form cannot send JSON without a CORS
//     preflight, which the server never grants).
//   - GET /v1/commands/schema: SchemaResponse.
//   - GET /v1/commands/schema/{request_type}: that commands.Spec; 404 for
//     a RequestType Apple does not document.
//
// The GETs answer HEAD too; other methods get 405. It panics if store is
// nil; a nil pusher fails every push with push.ErrNotConfigured.
func CommandRoutes(store storage.CommandEnqueuer, pusher push.Pusher, logger *slog.Logger, opts ...Option) map[string]http.Handler {
	if store == nil {
		panic("http/api: nil CommandEnqueuer")
	}
	h := &commandsAPI{
		enqueuer: enqueuer{store: store, pusher: pusher, logger: orDefault(logger)},
		opts:     newOptions(opts),
	}
	return map[string]http.Handler{
		RouteCommands:       only(h.logger, h.post, http.MethodPost),
		RouteCommandSchemas: only(h.logger, h.schemas, http.MethodGet, http.MethodHead),
		RouteCommandSchema:  only(h.logger, h.schema, http.MethodGet, http.MethodHead),
	}
}

type commandsAPI struct {
	enqueuer
	opts *options
}

// only passes requests with one of methods to serve and answers 405 (with
// an Allow header and a JSON error) to others.
func only(logger *slog.Logger, serve http.HandlerFunc, methods ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(methods, r.Method) {
			serve(w, r)
			return
		}
		methodNotAllowed(w, r, logger, methods)
	})
}

// methodNotAllowed answers 405 with an Allow header and a JSON error.
func methodNotAllowed(w http.ResponseWriter, r *http.Request, logger *slog.Logger, allow []string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	picohttp.WriteAPIError(w, r, logger, service.NewStatusError(http.StatusMethodNotAllowed,
		fmt.Errorf("method %s not allowed", r.Method)))
}

// errNotJSON is the 415 for a POST /v1/commands body of another type.
var errNotJSON = service.NewStatusError(http.StatusUnsupportedMediaType,
	errors.New("POST /v1/commands takes Content-Type: application/json"))

// errNoCommand is the 400 for a body without a command.
var errNoCommand = &commands.PathError{Path: "command", Reason: "required"}

func (h *commandsAPI) post(w http.ResponseWriter, r *http.Request) {
	ids, raw, noPush, err := h.commandsRequest(w, r)
	if err != nil {
		var pathErr *commands.PathError
		if errors.As(err, &pathErr) {
			// The key path alone, as the client wrote it.
			picohttp.WriteAPIErrorBody(w, r, h.logger, service.NewStatusError(http.StatusBadRequest, err),
				&picohttp.ErrorResponse{Error: pathErr.Error()})
			return
		}
		picohttp.WriteAPIError(w, r, h.logger, err)
		return
	}
	h.enqueue(w, r, ids, raw, noPush)
}

// commandsRequest reads and checks a POST /v1/commands body and builds its
// command plist: the checked IDs, the plist, and nopush. Schema
// violations are *commands.PathError.
func (h *commandsAPI) commandsRequest(w http.ResponseWriter, r *http.Request) (ids []string, raw []byte, noPush bool, err error) {
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "application/json" {
		return nil, nil, false, errNotJSON
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, MaxCommandsBodySize)
	}
	var req CommandsRequest
	if err := readTargets(w, r, &req); err != nil {
		return nil, nil, false, err
	}
	if ids, err = h.opts.bodyIDs(req.Targets); err != nil {
		return nil, nil, false, err
	}
	if len(req.Command) == 0 || string(req.Command) == "null" {
		return nil, nil, false, errNoCommand
	}
	if req.CommandUUID != "" {
		if err := mdm.CheckCommandUUID(req.CommandUUID); err != nil {
			reason := err.Error()
			var invalid *mdm.InvalidIDError
			if errors.As(err, &invalid) {
				reason = invalid.Reason
			}
			return nil, nil, false, &commands.PathError{Path: "command_uuid", Reason: reason}
		}
		if req.CommandUUID == reservedCommandUUID {
			return nil, nil, false, &commands.PathError{Path: "command_uuid",
				Reason: strconv.Quote(reservedCommandUUID) + " is reserved (GET /v1/commands/schema)"}
		}
	}
	raw, _, _, err = commands.BuildJSON(req.Command, req.CommandUUID)
	if err != nil {
		var pathErr *commands.PathError
		if errors.As(err, &pathErr) {
			return nil, nil, false, err
		}
		return nil, nil, false, fmt.Errorf("building the command plist: %w", err)
	}
	return ids, raw, req.NoPush, nil
}

// schemaJSON is the encoded SchemaResponse, made on first use: the schema
// never changes while the process runs.
var schemaJSON = sync.OnceValues(func() ([]byte, error) {
	b, err := json.Marshal(&SchemaResponse{Commands: commands.Specs()})
	return append(b, '\n'), err
})

func (h *commandsAPI) schemas(w http.ResponseWriter, r *http.Request) {
	b, err := schemaJSON()
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, fmt.Errorf("encoding the command schema: %w", err))
		return
	}
	writeBody(w, r, h.logger, "application/json", b)
}

func (h *commandsAPI) schema(w http.ResponseWriter, r *http.Request) {
	vals, err := pathValues(r, "request_type")
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, err)
		return
	}
	spec, ok := commands.Lookup(vals[0])
	if !ok {
		picohttp.WriteAPIError(w, r, h.logger, service.NewStatusError(http.StatusNotFound,
			fmt.Errorf("%w %q", commands.ErrUnknownRequestType, vals[0])))
		return
	}
	picohttp.WriteJSON(w, r, h.logger, http.StatusOK, spec)
}

// writeBody answers 200 with body as contentType, its Content-Length set
// (HEAD gets the headers alone).
func writeBody(w http.ResponseWriter, r *http.Request, logger *slog.Logger, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := w.Write(body); err != nil {
		logger.DebugContext(r.Context(), "writing response body", "err", err)
	}
}
