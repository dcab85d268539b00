package api

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage"
)

// EscrowKeyUnlockURL is Apple's escrow key unlock service, which turns an
// Activation Lock bypass code escrowed by the device into an unlock. See
// Apple's "Creating and using bypass codes".
const EscrowKeyUnlockURL = "https://deviceservices-external.apple.com/deviceservicesworkers/escrowKeyUnlock"

// maxEscrowKeyUnlockForm bounds a POST /v1/escrowkeyunlock body: a handful
// of short fields.
const maxEscrowKeyUnlockForm = 1 << 20

// escrowKeyUnlockTimeout bounds the call to Apple when the caller's client
// sets no timeout of its own.
const escrowKeyUnlockTimeout = 60 * time.Second

// Where each form field goes in the request to Apple, following Apple's
// documentation: the device's identifiers in the URL query, the
// organisation and the key in the form-encoded body.
var (
	escrowKeyUnlockRequired = []string{"topic", "serial", "productType", "escrowKey", "orgName", "guid"}
	escrowKeyUnlockOptional = []string{"imei", "imei2", "meid"}
	escrowKeyUnlockQuery    = []string{"serial", "productType", "imei", "imei2", "meid"}
	escrowKeyUnlockBody     = []string{"orgName", "guid", "escrowKey"}
)

// EscrowKeyUnlockHandler serves POST /v1/escrowkeyunlock: it relays an
// escrow key unlock (Activation Lock bypass) to Apple, authenticated by
// mutual TLS with the push certificate of the enrollment's topic.
//
// The request is a form (application/x-www-form-urlencoded or
// multipart/form-data; query parameters are accepted too) with topic,
// serial, productType, escrowKey, orgName and guid required, and imei,
// imei2 and meid optional. Apple gets a POST to baseURL (default
// EscrowKeyUnlockURL) with serial, productType and any of imei, imei2 and
// meid in the query, and orgName, guid and escrowKey as a form body.
// Apple's status, Content-Type and body are answered unchanged.
//
// Errors are JSON {"error": ...}: 400 "missing fields: a, b" for missing
// required fields, 404 for a topic with no push certificate, 405 for a
// method other than POST, 413 for a body over 1 MiB, 502 when Apple cannot
// be reached.
//
// client's Transport (nil means http.DefaultTransport) must be an
// *http.Transport: each request uses a clone of it presenting the topic's
// certificate. nil client means a default one. It panics if store is nil,
// baseURL does not parse, or the transport is of another kind.
func EscrowKeyUnlockHandler(store storage.PushCertStore, baseURL string, client *http.Client, logger *slog.Logger) http.Handler {
	if store == nil {
		panic("http/api: nil PushCertStore")
	}
	if baseURL == "" {
		baseURL = EscrowKeyUnlockURL
	}
	base, err := url.Parse(baseURL)
	if err != nil || !base.IsAbs() {
		panic(fmt.Sprintf("http/api: bad escrow key unlock URL %q", baseURL))
	}
	if client == nil {
		client = &http.Client{Timeout: escrowKeyUnlockTimeout}
	}
	rt := client.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	transport, ok := rt.(*http.Transport)
	if !ok {
		panic(fmt.Sprintf("http/api: escrow key unlock client transport is %T, not *http.Transport", rt))
	}
	logger = orDefault(logger)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			picohttp.WriteAPIError(w, r, logger, service.NewStatusError(http.StatusMethodNotAllowed,
				fmt.Errorf("method %s not allowed", r.Method)))
			return
		}
		form, err := escrowKeyUnlockForm(w, r)
		if err != nil {
			picohttp.WriteAPIError(w, r, logger, err)
			return
		}
		topic := form.Get("topic")
		cert, _, err := store.RetrievePushCert(r.Context(), topic)
		if err != nil {
			picohttp.WriteAPIError(w, r, logger, fmt.Errorf("retrieving push certificate for topic %q: %w", topic, err))
			return
		}
		// A transport of its own per request: the client certificate is
		// per topic, and unlocks are rare enough that reusing connections
		// is not worth a cache.
		t := transport.Clone()
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = new(tls.Config)
		}
		t.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		defer t.CloseIdleConnections()
		c := *client
		c.Transport = t

		req, err := escrowKeyUnlockRequest(r, base, form)
		if err != nil {
			picohttp.WriteAPIError(w, r, logger, err)
			return
		}
		resp, err := c.Do(req)
		if err != nil {
			picohttp.WriteAPIError(w, r, logger, service.NewStatusError(http.StatusBadGateway,
				fmt.Errorf("escrow key unlock request to Apple: %w", err)))
			return
		}
		defer resp.Body.Close()
		// Never log the escrow key: it unlocks the device.
		logger.InfoContext(r.Context(), "escrow key unlock relayed",
			"topic", topic, "serial", form.Get("serial"), "status", resp.StatusCode)
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(resp.StatusCode)
		if _, err := io.Copy(w, resp.Body); err != nil {
			logger.WarnContext(r.Context(), "relaying escrow key unlock answer", "err", err)
		}
	})
}

// escrowKeyUnlockForm parses the request's form and checks the required
// fields are there.
func escrowKeyUnlockForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxEscrowKeyUnlockForm)
	if err := r.ParseMultipartForm(maxEscrowKeyUnlockForm); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, err
		}
		return nil, service.NewStatusError(http.StatusBadRequest, fmt.Errorf("parsing form: %w", err))
	}
	var missing []string
	for _, name := range escrowKeyUnlockRequired {
		if r.FormValue(name) == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, service.NewStatusError(http.StatusBadRequest,
			fmt.Errorf("missing fields: %s", strings.Join(missing, ", ")))
	}
	form := make(url.Values)
	for _, name := range slices.Concat(escrowKeyUnlockRequired, escrowKeyUnlockOptional) {
		if v := r.FormValue(name); v != "" {
			form.Set(name, v)
		}
	}
	return form, nil
}

// escrowKeyUnlockRequest builds the POST to Apple.
func escrowKeyUnlockRequest(r *http.Request, base *url.URL, form url.Values) (*http.Request, error) {
	u := *base
	query := u.Query()
	for _, name := range escrowKeyUnlockQuery {
		if v := form.Get(name); v != "" {
			query.Set(name, v)
		}
	}
	u.RawQuery = query.Encode()
	body := make(url.Values)
	for _, name := range escrowKeyUnlockBody {
		body.Set(name, form.Get(name))
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, u.String(), strings.NewReader(body.Encode()))
	if err != nil {
		return nil, fmt.Errorf("building escrow key unlock request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req, nil
}
