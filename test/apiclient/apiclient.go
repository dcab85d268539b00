// Package apiclient is a minimal client of PicoMDM's (and NanoMDM's) API
// for tests and tools: enqueue commands, send pushes, build commands.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/picomdm/picomdm/mdm"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/micromdm/plist"
)

// APIUser is the HTTP Basic auth user name the API expects; the password
// is the server's -api key.
const APIUser = "nanomdm"

// maxResponse bounds how much of an API answer is read.
const maxResponse = 16 << 20

// MaxPathBytes is the longest escaped ID list Enqueue and Push put in the
// URL path (NanoMDM's form, which every NanoMDM-compatible server takes);
// longer lists go in a JSON body (PicoMDM's body form), as servers keep
// request headers, URL included, to about 1 MiB (Go's default).
const MaxPathBytes = 512 << 10

// Client calls one server's API with an API key over an HTTP client of
// its own (so a load generator can keep many connections open). The zero
// HTTP field means http.DefaultClient.
type Client struct {
	// BaseURL is the server's base URL, e.g. "http://127.0.0.1:9000".
	BaseURL string
	// APIKey is the server's -api key.
	APIKey string
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
}

// Enqueue PUTs rawCommand to baseURL's /v1/enqueue/ for the enrollment
// IDs, with ?nopush=1 if noPush, and returns the status code and the
// (JSON) response body. A non-2xx status is not an error here. See
// Client.Enqueue for IDs too many for the path.
func Enqueue(ctx context.Context, baseURL, apiKey string, ids []string, rawCommand []byte, noPush bool) (status int, body []byte, err error) {
	return (&Client{BaseURL: baseURL, APIKey: apiKey}).Enqueue(ctx, ids, rawCommand, noPush)
}

// Push asks baseURL's /v1/push/ to push to the enrollment IDs and returns
// the status code and the (JSON) response body.
func Push(ctx context.Context, baseURL, apiKey string, ids []string) (status int, body []byte, err error) {
	return (&Client{BaseURL: baseURL, APIKey: apiKey}).Push(ctx, ids)
}

// Enqueue PUTs rawCommand to /v1/enqueue/ for the enrollment IDs, with
// ?nopush=1 if noPush, and returns the status code and the (JSON) response
// body. A non-2xx status is not an error here. IDs that do not fit in
// MaxPathBytes of path are sent as EnqueueTargets does instead.
func (c *Client) Enqueue(ctx context.Context, ids []string, rawCommand []byte, noPush bool) (status int, body []byte, err error) {
	path, ok := pathIDs(ids)
	if !ok {
		return c.EnqueueTargets(ctx, ids, rawCommand, noPush)
	}
	u := c.url("/v1/enqueue/") + path
	if noPush {
		u += "?nopush=1"
	}
	return c.do(ctx, http.MethodPut, u, rawCommand)
}

// Push asks /v1/push/ to push to the enrollment IDs and returns the status
// code and the (JSON) response body. IDs that do not fit in MaxPathBytes
// of path are sent as PushTargets does instead.
func (c *Client) Push(ctx context.Context, ids []string) (status int, body []byte, err error) {
	path, ok := pathIDs(ids)
	if !ok {
		return c.PushTargets(ctx, ids)
	}
	return c.do(ctx, http.MethodGet, c.url("/v1/push/")+path, nil)
}

// EnqueueTargets queues rawCommand for the enrollment IDs with PicoMDM's
// body form: POST /v1/enqueue with {"targets": ids, "plist": rawCommand
// (base64), "nopush": noPush}. It returns the status code and the (JSON)
// response body; a non-2xx status is not an error here.
func (c *Client) EnqueueTargets(ctx context.Context, ids []string, rawCommand []byte, noPush bool) (status int, body []byte, err error) {
	return c.postJSON(ctx, "/v1/enqueue", struct {
		Targets []string `json:"targets"`
		Plist   []byte   `json:"plist,omitempty"`
		NoPush  bool     `json:"nopush,omitempty"`
	}{ids, rawCommand, noPush})
}

// PushTargets pushes to the enrollment IDs with PicoMDM's body form: POST
// /v1/push with {"targets": ids}.
func (c *Client) PushTargets(ctx context.Context, ids []string) (status int, body []byte, err error) {
	return c.postJSON(ctx, "/v1/push", struct {
		Targets []string `json:"targets"`
	}{ids})
}

func (c *Client) postJSON(ctx context.Context, path string, v any) (int, []byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, nil, fmt.Errorf("apiclient: encoding %s body: %w", path, err)
	}
	return c.send(ctx, http.MethodPost, c.url(path), "application/json", b)
}

// PutPushCert uploads a push certificate and its private key (PEM, in one
// body) to /v1/pushcert.
func (c *Client) PutPushCert(ctx context.Context, certAndKeyPEM []byte) (status int, body []byte, err error) {
	return c.do(ctx, http.MethodPut, strings.TrimRight(c.BaseURL, "/")+"/v1/pushcert", certAndKeyPEM)
}

// Migrate PUTs a raw check-in plist (Authenticate, TokenUpdate, …) to
// /migration, the endpoint servers run with -migration expose.
func (c *Client) Migrate(ctx context.Context, checkin []byte) (status int, body []byte, err error) {
	return c.do(ctx, http.MethodPut, strings.TrimRight(c.BaseURL, "/")+"/migration", checkin)
}

// url joins the base URL and path.
func (c *Client) url(path string) string { return strings.TrimRight(c.BaseURL, "/") + path }

// pathIDs returns the comma-separated, path-escaped IDs, and false if they
// are longer than MaxPathBytes.
func pathIDs(ids []string) (string, bool) {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(url.PathEscape(id))
		if b.Len() > MaxPathBytes {
			return "", false
		}
	}
	return b.String(), true
}

func (c *Client) do(ctx context.Context, method, u string, body []byte) (int, []byte, error) {
	return c.send(ctx, method, u, "", body)
}

func (c *Client) send(ctx context.Context, method, u, contentType string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return 0, nil, fmt.Errorf("apiclient: building request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.SetBasicAuth(APIUser, c.APIKey)
	client := c.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("apiclient: %w", err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return resp.StatusCode, respBody, fmt.Errorf("apiclient: reading response: %w", err)
	}
	return resp.StatusCode, respBody, nil
}

// NewCommand returns a random CommandUUID and a command plist with it:
// {CommandUUID, Command: {RequestType, fields…}}, the shape of Apple's
// command payloads. It panics if fields hold a value plist cannot encode.
func NewCommand(requestType string, fields map[string]any) (uuid string, raw []byte) {
	uuid = mdm.NewUUID()
	command := map[string]any{"RequestType": requestType}
	for k, v := range fields {
		command[k] = v
	}
	raw, err := plist.MarshalIndent(map[string]any{
		"CommandUUID": uuid,
		"Command":     command,
	}, "\t")
	if err != nil {
		panic(fmt.Sprintf("apiclient: encoding %s command: %v", requestType, err))
	}
	return uuid, raw
}
