package api

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/mdm/pemkey"
	"github.com/picomdm/picomdm/push/certwatch"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/storage"
)

// mdmTopicPrefix starts the topic of every MDM push certificate Apple
// issues ("com.apple.mgmt.External.<uuid>").
const mdmTopicPrefix = "com.apple.mgmt"

// maxPushCertBody bounds a PUT /v1/pushcert body: a certificate, a chain
// and a key are a few KiB.
const maxPushCertBody = 1 << 20

// PushCertResponse is the JSON answer of /v1/pushcert, NanoMDM's shape.
type PushCertResponse struct {
	// Topic is the certificate's APNs topic (its Subject UID).
	Topic string `json:"topic"`
	// NotAfter is when the certificate expires, RFC 3339.
	NotAfter string `json:"not_after"`
	// Warnings, on a PUT only, say why the upload looks like a mistake
	// (certwatch.UploadWarnings: a new certificate made with Create where
	// another topic's expiring one needed Renew). The certificate was
	// stored anyway. Omitted when there is nothing to say.
	Warnings []string `json:"warnings,omitempty"`
}

func pushCertResponse(topic string, leaf *x509.Certificate) *PushCertResponse {
	return &PushCertResponse{Topic: topic, NotAfter: leaf.NotAfter.UTC().Format(time.RFC3339)}
}

// badPushCert is the 400 for a PUT body that is not a usable push
// certificate and key.
func badPushCert(format string, args ...any) error {
	return service.NewStatusError(http.StatusBadRequest, fmt.Errorf(format, args...))
}

// errNoTopicParam is the 400 for a GET without ?topic=.
var errNoTopicParam = service.NewStatusError(http.StatusBadRequest, errors.New("missing topic query parameter"))

// PushCertHandler serves /v1/pushcert:
//
//   - PUT stores an APNs MDM push certificate. The body holds the PEM
//     certificate and its unencrypted PEM private key, in either order
//     (concatenated files are fine, with or without a newline between).
//     The topic comes from the certificate's Subject UID and must start
//     with "com.apple.mgmt". 200 {"topic": ..., "not_after": RFC 3339};
//     400 {"error": ...} for a body without a certificate or a key, an
//     encrypted key, a key that is not the certificate's, a certificate
//     that is not an MDM push certificate, or anything that is not PEM.
//     Storing replaces the topic's previous certificate; push services of
//     every replica pick the new one up on their next staleness check.
//     When store is also a storage.InspectionStore (every backend is),
//     the answer carries "warnings" (logged too) if no enabled enrollment
//     uses the new topic while another topic with enrollments has a
//     certificate expiring within 30 days: the usual sign of a
//     certificate made with Create instead of Renew in Apple's portal.
//   - GET ?topic=T answers the same shape for T's stored certificate; 400
//     without topic, 404 for an unknown topic.
//
// Other methods get 405. It panics if store is nil.
func PushCertHandler(store storage.PushCertStore, logger *slog.Logger) http.Handler {
	if store == nil {
		panic("http/api: nil PushCertStore")
	}
	logger = orDefault(logger)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPut:
			putPushCert(w, r, store, logger)
		case http.MethodGet, http.MethodHead:
			getPushCert(w, r, store, logger)
		default:
			w.Header().Set("Allow", "GET, HEAD, PUT")
			picohttp.WriteAPIError(w, r, logger, service.NewStatusError(http.StatusMethodNotAllowed,
				fmt.Errorf("method %s not allowed", r.Method)))
		}
	})
}

func putPushCert(w http.ResponseWriter, r *http.Request, store storage.PushCertStore, logger *slog.Logger) {
	body, err := picohttp.ReadBody(w, r, maxPushCertBody)
	if err != nil {
		picohttp.WriteAPIError(w, r, logger, err)
		return
	}
	certPEM, keyPEM, leaf, err := parsePushCert(body)
	if err != nil {
		picohttp.WriteAPIError(w, r, logger, err)
		return
	}
	topic, err := storage.TopicFromCert(leaf)
	if err != nil {
		picohttp.WriteAPIError(w, r, logger, badPushCert("not an MDM push certificate: %w", err))
		return
	}
	if !strings.HasPrefix(topic, mdmTopicPrefix) {
		picohttp.WriteAPIError(w, r, logger, badPushCert("not an MDM push certificate: topic %q does not start with %q", topic, mdmTopicPrefix))
		return
	}
	if err := store.StorePushCert(r.Context(), certPEM, keyPEM); err != nil {
		picohttp.WriteAPIError(w, r, logger, fmt.Errorf("storing push certificate: %w", err))
		return
	}
	logger.InfoContext(r.Context(), "push certificate stored", "topic", topic, "not_after", leaf.NotAfter)
	resp := pushCertResponse(topic, leaf)
	resp.Warnings = uploadWarnings(r.Context(), store, topic, logger)
	picohttp.WriteJSON(w, r, logger, http.StatusOK, resp)
}

// uploadWarnings returns, and logs, what certwatch.UploadWarnings has to
// say about the upload of topic's certificate: nothing for a store that
// cannot list enrollments. A failed check is a warning of its own, never
// a failed upload (the certificate is stored by then).
func uploadWarnings(ctx context.Context, store storage.PushCertStore, topic string, logger *slog.Logger) []string {
	s, ok := store.(certwatch.UploadStore)
	if !ok {
		return nil
	}
	warnings, err := certwatch.UploadWarnings(ctx, s, topic, time.Now())
	if err != nil {
		logger.WarnContext(ctx, "push certificate upload: checking for a Create instead of Renew failed", "topic", topic, "err", err)
		return []string{"could not check whether this certificate should have been a renewal of another topic's expiring one (see the server log)"}
	}
	for _, warning := range warnings {
		logger.WarnContext(ctx, "push certificate upload looks like Create instead of Renew", "topic", topic, "warning", warning)
	}
	return warnings
}

func getPushCert(w http.ResponseWriter, r *http.Request, store storage.PushCertStore, logger *slog.Logger) {
	topic := r.URL.Query().Get("topic")
	if topic == "" {
		picohttp.WriteAPIError(w, r, logger, errNoTopicParam)
		return
	}
	cert, _, err := store.RetrievePushCert(r.Context(), topic)
	if err != nil {
		picohttp.WriteAPIError(w, r, logger, fmt.Errorf("retrieving push certificate: %w", err))
		return
	}
	leaf := cert.Leaf
	if leaf == nil && len(cert.Certificate) > 0 {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			picohttp.WriteAPIError(w, r, logger, fmt.Errorf("parsing stored push certificate: %w", err))
			return
		}
	}
	if leaf == nil {
		picohttp.WriteAPIError(w, r, logger, errors.New("stored push certificate is empty"))
		return
	}
	picohttp.WriteJSON(w, r, logger, http.StatusOK, pushCertResponse(topic, leaf))
}

// parsePushCert finds the certificate (the first CERTIFICATE block, with
// any further ones as its chain) and the private key in body, checks that
// they pair, and returns them re-encoded as PEM with the parsed leaf.
// Every failure is a 400 saying what is wrong with the upload.
func parsePushCert(body []byte) (certPEM, keyPEM []byte, leaf *x509.Certificate, err error) {
	// pem.Decode wants each BEGIN line on a line of its own, and files
	// pasted together often lack the newline between them.
	body = bytes.ReplaceAll(body, []byte("-----BEGIN "), []byte("\n-----BEGIN "))
	var keyBlock *pem.Block
	var certs, keys int
	for rest := body; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Type == "CERTIFICATE":
			if certs == 0 {
				if leaf, err = x509.ParseCertificate(block.Bytes); err != nil {
					return nil, nil, nil, badPushCert("certificate does not parse: %w", err)
				}
			}
			certs++
			certPEM = append(certPEM, pem.EncodeToMemory(block)...)
		case pemkey.IsEncrypted(block):
			return nil, nil, nil, badPushCert("the private key is encrypted: upload it unencrypted (e.g. openssl pkey -in key.pem -out plain-key.pem)")
		case pemkey.IsKey(block):
			keys++
			keyBlock = block
		}
	}
	switch {
	case certs == 0 && keys == 0:
		return nil, nil, nil, badPushCert("no PEM certificate or private key in the body: want the push certificate and its unencrypted private key, PEM-encoded")
	case certs == 0:
		return nil, nil, nil, badPushCert("no PEM certificate in the body")
	case keys == 0:
		return nil, nil, nil, badPushCert("no PEM private key in the body")
	case keys > 1:
		return nil, nil, nil, badPushCert("%d private keys in the body: want one", keys)
	}
	key, err := pemkey.ParseBlock(keyBlock)
	if err != nil {
		return nil, nil, nil, badPushCert("private key does not parse: %w", err)
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, nil, nil, badPushCert("the private key does not belong to the certificate")
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: keyBlock.Type, Bytes: keyBlock.Bytes})
	// What every backend will do with the pair: it must work.
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, nil, nil, badPushCert("certificate and key are not a usable pair: %w", err)
	}
	return certPEM, keyPEM, leaf, nil
}
