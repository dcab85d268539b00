// Package apiclient is a minimal client of PicoMDM's (and NanoMDM's) API
// for tests and tools: enqueue commands, send pushes, build commands.
package apiclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
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
// (JSON) response body. A non-2xx status is not an error here.
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
// body. A non-2xx status is not an error here.
func (c *Client) Enqueue(ctx context.Context, ids []string, rawCommand []byte, noPush bool) (status int, body []byte, err error) {
	u := c.endpoint("/v1/enqueue/", ids)
	if noPush {
		u += "?nopush=1"
	}
	return c.do(ctx, http.MethodPut, u, rawCommand)
}

// Push asks /v1/push/ to push to the enrollment IDs and returns the status
// code and the (JSON) response body.
func (c *Client) Push(ctx context.Context, ids []string) (status int, body []byte, err error) {
	return c.do(ctx, http.MethodGet, c.endpoint("/v1/push/", ids), nil)
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

// endpoint joins the base URL, path and the comma-separated, path-escaped
// IDs.
func (c *Client) endpoint(path string, ids []string) string {
	escaped := make([]string, len(ids))
	for i, id := range ids {
		escaped[i] = url.PathEscape(id)
	}
	return strings.TrimRight(c.BaseURL, "/") + path + strings.Join(escaped, ",")
}

func (c *Client) do(ctx context.Context, method, u string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return 0, nil, fmt.Errorf("apiclient: building request: %w", err)
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
	uuid = newUUID()
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

// newUUID returns a random (version 4) UUID in upper case.
func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails since Go 1.24
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
