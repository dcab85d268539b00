package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
)

// DefaultMaxIDs is how many enrollment IDs one enqueue or push call may
// name unless WithMaxIDs says otherwise (-max-ids): enough for the largest
// fleets' multi-target commands, while bounding what one call costs.
const DefaultMaxIDs = 100000

// MaxTargetsBodySize bounds the JSON body of the body form of the enqueue
// and push endpoints: 16 MiB holds 100,000 UUID-sized IDs (about 4 MB)
// next to a command of several MiB (base64 makes it a third larger). The
// command it carries is bounded as the path form's body is, by
// DefaultMaxBodySize of github.com/picomdm/picomdm/http.
const MaxTargetsBodySize int64 = 16 << 20

// Option configures EnqueueHandler and PushHandler.
type Option func(*options)

type options struct {
	maxIDs int
}

// WithMaxIDs caps how many enrollment IDs one call may name; more is a
// 400 and nothing is queued or pushed. n <= 0 means DefaultMaxIDs.
func WithMaxIDs(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxIDs = n
		}
	}
}

func newOptions(opts []Option) *options {
	o := &options{maxIDs: DefaultMaxIDs}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// errNoIDs is the 400 for a call naming no enrollment.
var errNoIDs = service.NewStatusError(http.StatusBadRequest, errors.New(
	`no enrollment IDs: name them in the URL path (…/ID,ID) or POST {"targets": ["ID", …]} with Content-Type: application/json`))

// tooManyIDs is the 400 for a call naming more than max IDs.
func tooManyIDs(max int) error {
	return service.NewStatusError(http.StatusBadRequest,
		fmt.Errorf("more than %d enrollment IDs in one call (-max-ids)", max))
}

// badID is the 400 for an enrollment ID mdm.CheckEnrollmentID refuses; its
// text names the ID (cut if huge).
func badID(err error) error { return service.NewStatusError(http.StatusBadRequest, err) }

// pathIDs returns the comma-separated enrollment IDs of the path left
// after http.StripPrefix, in order, without empty or repeated ones. It
// fails, before splitting the rest, at the first ID past o.maxIDs or the
// first ID mdm.CheckEnrollmentID refuses, and without any ID.
func (o *options) pathIDs(path string) ([]string, error) {
	var ids []string
	seen := make(map[string]bool)
	given := 0
	for id := range strings.SplitSeq(path, ",") {
		if id == "" {
			continue
		}
		if given++; given > o.maxIDs {
			return nil, tooManyIDs(o.maxIDs)
		}
		if err := mdm.CheckEnrollmentID(id); err != nil {
			return nil, badID(err)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, errNoIDs
	}
	return ids, nil
}

// bodyIDs checks the targets of a JSON body: at most o.maxIDs entries,
// every one an ID mdm.CheckEnrollmentID accepts (so no empty one), at
// least one. It returns them in order without repeats.
func (o *options) bodyIDs(targets []string) ([]string, error) {
	if len(targets) > o.maxIDs {
		return nil, tooManyIDs(o.maxIDs)
	}
	if len(targets) == 0 {
		return nil, errNoIDs
	}
	ids := make([]string, 0, len(targets))
	seen := make(map[string]bool, len(targets))
	for _, id := range targets {
		if err := mdm.CheckEnrollmentID(id); err != nil {
			return nil, badID(err)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// isTargetsBody reports whether r uses the body form: no IDs in the path
// (after http.StripPrefix) and a JSON Content-Type. Anything else is
// NanoMDM's path form.
func isTargetsBody(r *http.Request) bool {
	if r.URL.Path != "" {
		return false
	}
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mediaType == "application/json"
}

// enqueueRequest is the JSON body of the body form of /v1/enqueue. The
// names match the targets of the planned /v1/commands.
type enqueueRequest struct {
	// Targets are the enrollment IDs.
	Targets []string `json:"targets"`
	// Plist is the raw command plist (base64 in JSON); empty only pushes.
	Plist []byte `json:"plist"`
	// NoPush queues without pushing, as ?nopush=1 does.
	NoPush bool `json:"nopush"`
}

// pushRequest is the JSON body of the body form of /v1/push.
type pushRequest struct {
	Targets []string `json:"targets"`
}

// maxJSONErrorBytes bounds the decoder's error text in an answer: it may
// quote the client's input (an unknown field's name).
const maxJSONErrorBytes = 200

// readTargets decodes r's JSON body into v: one object, no unknown fields
// (a misspelt "nopush" must not push), nothing after it, at most
// MaxTargetsBodySize bytes. An oversized body is a *http.MaxBytesError
// (413); any other failure a 400.
func readTargets(w http.ResponseWriter, r *http.Request, v any) error {
	if r.Body == nil {
		return errNoIDs
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxTargetsBodySize))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// One JSON value only: anything after it but white space is an
		// error, as the whole body is the request.
		if _, next := dec.Token(); next != io.EOF {
			err = errors.New("data after the JSON object")
			if next != nil {
				err = next
			}
		}
	}
	if err == nil {
		return nil
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return fmt.Errorf("reading the JSON body: %w", tooLarge)
	}
	text := err.Error()
	if len(text) > maxJSONErrorBytes {
		text = strings.ToValidUTF8(text[:maxJSONErrorBytes], "") + "…"
	}
	return service.NewStatusError(http.StatusBadRequest, fmt.Errorf("decoding the JSON body: %s", text))
}
