package api_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	picohttp "github.com/picomdm/picomdm/http"
	"github.com/picomdm/picomdm/http/api"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/testpki"
)

// pushCertServer mounts PushCertHandler the way cmd/picomdm does.
func pushCertServer(store storage.PushCertStore) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/pushcert", picohttp.BasicAuth(apiKey)(api.PushCertHandler(store, quiet)))
	return mux
}

var oidUID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// pushCertWithKey returns a PEM push certificate for topic, valid for a
// year, and its key, PEM-encoded as keyType: "PRIVATE KEY" (PKCS #8),
// "RSA PRIVATE KEY" (PKCS #1) or "EC PRIVATE KEY" (SEC 1), the forms
// openssl writes.
func pushCertWithKey(t *testing.T, topic, keyType string) (certPEM, keyPEM []byte, notAfter time.Time) {
	t.Helper()
	notAfter = time.Now().Add(365 * 24 * time.Hour).Truncate(time.Second)
	certPEM, keyPEM = pushCert(t, topic, keyType, notAfter)
	return certPEM, keyPEM, notAfter
}

// pushCert returns a self-signed PEM push certificate for topic expiring
// at notAfter, the way Apple names it (CN "APSP:<uuid>", the topic in the
// UID attribute), and its key PEM-encoded as keyType (an RSA key for "RSA
// PRIVATE KEY", ECDSA otherwise).
func pushCert(t *testing.T, topic, keyType string, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	opts := []testpki.Option{
		testpki.Validity(notAfter.Add(-366*24*time.Hour), notAfter),
		testpki.Template(func(c *x509.Certificate) {
			c.Subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: oidUID, Value: topic}}
		}),
	}
	if keyType == "RSA PRIVATE KEY" {
		opts = append(opts, testpki.RSA())
	}
	id := testpki.SelfSigned(t, "APSP:"+storagetest.NewUUID(), opts...)
	return id.PEM(), id.KeyPEM(t, keyType)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// wantError asserts a JSON {"error": ...} body mentioning want.
func wantError(t *testing.T, body []byte, want string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	msg, ok := m["error"].(string)
	if !ok || len(m) != 1 {
		t.Fatalf("error body %s, want exactly {\"error\": ...}", body)
	}
	if !strings.Contains(msg, want) {
		t.Fatalf("error %q does not say %q", msg, want)
	}
}

func TestPushCertPut(t *testing.T) {
	topic := storagetest.NewTopic()
	cert, key, notAfter := pushCertWithKey(t, topic, "PRIVATE KEY")
	otherCert, otherKey, _ := pushCertWithKey(t, topic, "PRIVATE KEY")
	ecCert, ecKey, _ := pushCertWithKey(t, topic, "EC PRIVATE KEY")
	rsaCert, rsaKey, _ := pushCertWithKey(t, topic, "RSA PRIVATE KEY")
	nonMDM, nonMDMKey, _ := pushCertWithKey(t, "com.example.not-mdm", "PRIVATE KEY")
	noTopic, noTopicKey := storagetest.NewPushCert("")
	crlf := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")) }
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("opaque ciphertext")})
	legacyEncrypted := pem.EncodeToMemory(&pem.Block{
		Type:    "RSA PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"},
		Bytes:   []byte("opaque ciphertext"),
	})
	badCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	badKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not DER")})

	for _, tc := range []struct {
		name      string
		body      []byte
		wantTopic string // 200 when set
		wantErr   string // 400 mentioning this when set
		// wantNotAfter, when set, is the certificate's expiry.
		wantNotAfter time.Time
	}{
		{name: "cert then key", body: cat(cert, key), wantTopic: topic, wantNotAfter: notAfter},
		{name: "key then cert", body: cat(key, cert), wantTopic: topic},
		{name: "concatenated without newline", body: cat(bytes.TrimRight(cert, "\n"), bytes.TrimRight(key, "\n")), wantTopic: topic},
		{name: "key concatenated before cert without newline", body: cat(bytes.TrimRight(key, "\n"), cert), wantTopic: topic},
		{name: "CRLF line endings", body: crlf(cat(cert, key)), wantTopic: topic},
		{name: "text around the blocks", body: cat([]byte("Bag Attributes\n  friendlyName: APSP\n"), cert, []byte("subject=...\n"), key), wantTopic: topic},
		{name: "EC PRIVATE KEY", body: cat(ecCert, ecKey), wantTopic: topic},
		{name: "RSA PRIVATE KEY", body: cat(rsaCert, rsaKey), wantTopic: topic},
		{name: "400 mismatched pair", body: cat(cert, otherKey), wantErr: "does not belong to the certificate"},
		{name: "400 mismatched pair, other order", body: cat(otherKey, cert), wantErr: "does not belong to the certificate"},
		{name: "400 encrypted PKCS #8 key", body: cat(cert, encrypted), wantErr: "encrypted"},
		{name: "400 encrypted legacy key", body: cat(legacyEncrypted, cert), wantErr: "encrypted"},
		{name: "400 missing key", body: cert, wantErr: "no PEM private key"},
		{name: "400 missing cert", body: key, wantErr: "no PEM certificate"},
		{name: "400 two keys", body: cat(cert, key, otherKey), wantErr: "2 private keys"},
		{name: "400 non-MDM topic", body: cat(nonMDM, nonMDMKey), wantErr: `does not start with "com.apple.mgmt"`},
		{name: "400 no topic", body: cat(noTopic, noTopicKey), wantErr: "not an MDM push certificate"},
		{name: "400 garbage", body: []byte("this is not PEM at all"), wantErr: "no PEM certificate or private key"},
		{name: "400 empty body", body: nil, wantErr: "no PEM certificate or private key"},
		{name: "400 certificate does not parse", body: cat(badCert, key), wantErr: "certificate does not parse"},
		{name: "400 key does not parse", body: cat(cert, badKey), wantErr: "private key does not parse"},
		{name: "400 cert and key of other files", body: cat(otherCert, key), wantErr: "does not belong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := inmem.New()
			rec := do(t, pushCertServer(store), http.MethodPut, "/v1/pushcert", tc.body, true)
			if tc.wantErr != "" {
				if rec.Code != http.StatusBadRequest {
					t.Fatalf("status %d, want 400; body %s", rec.Code, rec.Body)
				}
				wantError(t, rec.Body.Bytes(), tc.wantErr)
				if _, _, err := store.RetrievePushCert(context.Background(), topic); err == nil {
					t.Fatal("a refused certificate was stored")
				}
				return
			}
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, want 200; body %s", rec.Code, rec.Body)
			}
			var got api.PushCertResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if tc.wantTopic != "" {
				if got.Topic != tc.wantTopic {
					t.Fatalf("topic %q, want %q", got.Topic, tc.wantTopic)
				}
			}
			parsed, err := time.Parse(time.RFC3339, got.NotAfter)
			if err != nil {
				t.Fatalf("not_after %q is not RFC 3339: %v", got.NotAfter, err)
			}
			if !tc.wantNotAfter.IsZero() && !parsed.Equal(tc.wantNotAfter) {
				t.Fatalf("not_after %v, want %v", parsed, tc.wantNotAfter)
			}
			if _, _, err := store.RetrievePushCert(context.Background(), got.Topic); err != nil {
				t.Fatalf("stored certificate: %v", err)
			}
		})
	}
}

func TestPushCertReplaceAndTopics(t *testing.T) {
	ctx := context.Background()
	store := inmem.New()
	h := pushCertServer(store)
	topicA, topicB := storagetest.NewTopic(), storagetest.NewTopic()
	certA, keyA, notAfterA := pushCertWithKey(t, topicA, "PRIVATE KEY")
	certB, keyB := storagetest.NewPushCert(topicB)
	for _, body := range [][]byte{cat(certA, keyA), cat(keyB, certB)} {
		if rec := do(t, h, http.MethodPut, "/v1/pushcert", body, true); rec.Code != http.StatusOK {
			t.Fatalf("PUT: %d %s", rec.Code, rec.Body)
		}
	}
	_, tokenA, err := store.RetrievePushCert(ctx, topicA)
	if err != nil {
		t.Fatal(err)
	}

	// Both topics side by side.
	rec := do(t, h, http.MethodGet, "/v1/pushcert?topic="+topicA, nil, true)
	want := `{"topic":"` + topicA + `","not_after":"` + notAfterA.UTC().Format(time.RFC3339) + `"}`
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != want {
		t.Fatalf("GET A: %d %s, want 200 %s", rec.Code, rec.Body, want)
	}
	if rec := do(t, h, http.MethodGet, "/v1/pushcert?topic="+topicB, nil, true); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), topicB) {
		t.Fatalf("GET B: %d %s", rec.Code, rec.Body)
	}

	// A refused upload leaves the topic's certificate alone...
	_, otherKey, _ := pushCertWithKey(t, topicA, "PRIVATE KEY")
	if rec := do(t, h, http.MethodPut, "/v1/pushcert", cat(certA, otherKey), true); rec.Code != http.StatusBadRequest {
		t.Fatalf("mismatched PUT: %d %s", rec.Code, rec.Body)
	}
	if _, token, _ := store.RetrievePushCert(ctx, topicA); token != tokenA {
		t.Fatal("a refused upload replaced the certificate")
	}
	// ... and a good one replaces it, changing its stale token.
	renewed, renewedKey, _ := pushCertWithKey(t, topicA, "PRIVATE KEY")
	if rec := do(t, h, http.MethodPut, "/v1/pushcert", cat(renewed, renewedKey), true); rec.Code != http.StatusOK {
		t.Fatalf("renewal PUT: %d %s", rec.Code, rec.Body)
	}
	if stale, err := store.IsPushCertStale(ctx, topicA, tokenA); err != nil || !stale {
		t.Fatalf("after renewal, old token stale = %v, %v; want true", stale, err)
	}
}

func TestPushCertGetErrors(t *testing.T) {
	h := pushCertServer(inmem.New())
	for _, tc := range []struct {
		name, method, path string
		authed             bool
		want               int
		wantErr            string
	}{
		{"400 without topic", http.MethodGet, "/v1/pushcert", true, http.StatusBadRequest, "missing topic"},
		{"400 empty topic", http.MethodGet, "/v1/pushcert?topic=", true, http.StatusBadRequest, "missing topic"},
		{"404 unknown topic", http.MethodGet, "/v1/pushcert?topic=com.apple.mgmt.External.unknown", true, http.StatusNotFound, "not found"},
		{"405 POST", http.MethodPost, "/v1/pushcert", true, http.StatusMethodNotAllowed, "not allowed"},
		{"401 without credentials", http.MethodGet, "/v1/pushcert?topic=x", false, http.StatusUnauthorized, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, h, tc.method, tc.path, nil, tc.authed)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.want, rec.Body)
			}
			wantError(t, rec.Body.Bytes(), tc.wantErr)
		})
	}
}

func TestPushCertOversized(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 1<<20+1)
	rec := do(t, pushCertServer(inmem.New()), http.MethodPut, "/v1/pushcert", body, true)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", rec.Code)
	}
}
