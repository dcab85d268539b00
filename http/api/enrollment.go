package api

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	picohttp "github.com/picomdm/picomdm/http"
	httpenroll "github.com/picomdm/picomdm/http/enroll"
	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/mdm/profile"
	"github.com/picomdm/picomdm/service"
	"github.com/picomdm/picomdm/service/enroll"
	"github.com/picomdm/picomdm/service/scepca"
	"github.com/picomdm/picomdm/storage"
)

// The ServeMux patterns of the enrollment API (the built-in SCEP CA's
// challenges and certificates, and enrollment profiles).
const (
	RouteChallenges      = "/v1/enrollment/challenges"
	RouteChallenge       = "/v1/enrollment/challenges/{id}"
	RouteIssuedCerts     = "/v1/enrollment/certificates"
	RouteIssuedCert      = "/v1/enrollment/certificates/{serial}"
	RouteEnrollProfile   = "/v1/enrollment/profile"
	maxChallengeBodySize = 4 << 10
)

// ChallengeRequest is the optional body of POST
// /v1/enrollment/challenges: ttl is a Go duration ("2h", "30m"; default
// 24h, at most 2160h), note is free text (at most 255 bytes).
type ChallengeRequest struct {
	TTL  string `json:"ttl,omitempty"`
	Note string `json:"note,omitempty"`
}

// ChallengeJSON is one one-time challenge. Challenge, the password, is
// only in the answer that minted it; state is valid, used, revoked or
// expired.
type ChallengeJSON struct {
	ID        string  `json:"id"`
	Challenge string  `json:"challenge,omitempty"`
	Note      string  `json:"note"`
	State     string  `json:"state"`
	CreatedAt *string `json:"created_at"`
	ExpiresAt *string `json:"expires_at"`
	UsedAt    *string `json:"used_at"`
	RevokedAt *string `json:"revoked_at"`
}

// ChallengesResponse is a page of challenges.
type ChallengesResponse struct {
	Challenges []ChallengeJSON `json:"challenges"`
	NextCursor string          `json:"next_cursor"`
}

// IssuedCertJSON is one certificate the built-in CA issued. hash is the
// cert-auth hash (as in /v1/enrollments/{id}/certificates); challenge_id is
// null when the static challenge was used; pem is only in the answer for
// one certificate.
type IssuedCertJSON struct {
	Serial      string  `json:"serial"`
	Subject     string  `json:"subject"`
	Hash        string  `json:"hash"`
	NotBefore   *string `json:"not_before"`
	NotAfter    *string `json:"not_after"`
	IssuedAt    *string `json:"issued_at"`
	ChallengeID *string `json:"challenge_id"`
	PEM         string  `json:"pem,omitempty"`
}

// IssuedCertsResponse is a page of issued certificates.
type IssuedCertsResponse struct {
	Certificates []IssuedCertJSON `json:"certificates"`
	NextCursor   string           `json:"next_cursor"`
}

// EnrollmentRoutes returns the enrollment API's handlers by pattern:
//
//   - POST /v1/enrollment/challenges [{"ttl","note"}]: 201 with a new
//     one-time challenge, its password included (shown only here).
//   - GET /v1/enrollment/challenges[?cursor=&limit=]: a page, no passwords.
//   - GET /v1/enrollment/challenges/{id}; DELETE revokes it (200 with the
//     revoked challenge; a used one stays used).
//   - GET /v1/enrollment/certificates[?cursor=&limit=]: the certificates
//     the built-in CA issued, in issue order; GET
//     /v1/enrollment/certificates/{serial} one, with its PEM.
//   - GET /v1/enrollment/profile[?challenge=…][&any=param…]: an
//     enrollment profile carrying challenge, or a fresh one-time challenge
//     when none is given; every other parameter is added to ServerURL's
//     query (webhook url_params).
//
// builder may be nil when the server makes no profiles (no -public-url):
// the profile route is then absent.
func EnrollmentRoutes(store storage.SCEPStore, builder httpenroll.ProfileBuilder, logger *slog.Logger) map[string]http.Handler {
	if store == nil {
		panic("api: EnrollmentRoutes with a nil store")
	}
	h := &enrollmentAPI{store: store, builder: builder, logger: pmlog.Or(logger), now: time.Now}
	routes := map[string]http.Handler{
		RouteChallenges:  h.dispatch(map[string]http.HandlerFunc{http.MethodGet: h.listChallenges, http.MethodPost: h.mintChallenge}),
		RouteChallenge:   h.dispatch(map[string]http.HandlerFunc{http.MethodGet: h.getChallenge, http.MethodDelete: h.revokeChallenge}),
		RouteIssuedCerts: h.dispatch(map[string]http.HandlerFunc{http.MethodGet: h.listCerts}),
		RouteIssuedCert:  h.dispatch(map[string]http.HandlerFunc{http.MethodGet: h.getCert}),
	}
	if builder != nil {
		routes[RouteEnrollProfile] = h.dispatch(map[string]http.HandlerFunc{http.MethodGet: h.profile})
	}
	return routes
}

type enrollmentAPI struct {
	store   storage.SCEPStore
	builder httpenroll.ProfileBuilder
	logger  *slog.Logger
	now     func() time.Time
}

// dispatch serves each method of handlers (GET also answers HEAD) and
// answers 405 to others.
func (h *enrollmentAPI) dispatch(handlers map[string]http.HandlerFunc) http.Handler {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete} {
		if handlers[m] != nil || (m == http.MethodHead && handlers[http.MethodGet] != nil) {
			allow = append(allow, m)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := r.Method
		if m == http.MethodHead {
			m = http.MethodGet
		}
		if fn := handlers[m]; fn != nil {
			fn(w, r)
			return
		}
		methodNotAllowed(w, r, h.logger, allow)
	})
}

func challengeJSON(c *storage.SCEPChallenge, now time.Time) ChallengeJSON {
	return ChallengeJSON{
		ID: c.ID, Note: c.Note, State: scepca.ChallengeState(c, now),
		CreatedAt: timeJSON(c.CreatedAt), ExpiresAt: timeJSON(c.ExpiresAt),
		UsedAt: timeJSON(c.UsedAt), RevokedAt: timeJSON(c.RevokedAt),
	}
}

func (h *enrollmentAPI) mintChallenge(w http.ResponseWriter, r *http.Request) {
	var req ChallengeRequest
	r.Body = http.MaxBytesReader(w, r.Body, maxChallengeBodySize)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, fmt.Errorf("reading body: %w", err))
		return
	}
	if len(body) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			picohttp.WriteAPIError(w, r, h.logger, badRequest("body: want {\"ttl\": \"24h\", \"note\": \"…\"}: %v", err))
			return
		}
	}
	var ttl time.Duration
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil {
			picohttp.WriteAPIError(w, r, h.logger, badRequest("ttl %q: want a duration such as 24h", req.TTL))
			return
		}
	}
	now := h.now()
	pw, c, err := scepca.MintChallenge(r.Context(), h.store, now, ttl, req.Note)
	if err != nil {
		if errors.Is(err, scepca.ErrBadChallengeRequest) {
			err = service.NewStatusError(http.StatusBadRequest, err)
		}
		picohttp.WriteAPIError(w, r, h.logger, err)
		return
	}
	h.logger.InfoContext(r.Context(), "SCEP challenge minted", "challenge_id", c.ID, "expires_at", c.ExpiresAt)
	resp := challengeJSON(c, now)
	resp.Challenge = pw
	w.Header().Set("Cache-Control", "no-store")
	picohttp.WriteJSON(w, r, h.logger, http.StatusCreated, resp)
}

func (h *enrollmentAPI) listChallenges(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, err)
		return
	}
	cs, next, err := h.store.ListSCEPChallenges(r.Context(), p)
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, fmt.Errorf("listing challenges: %w", err))
		return
	}
	now := h.now()
	resp := &ChallengesResponse{Challenges: make([]ChallengeJSON, 0, len(cs)), NextCursor: next}
	for i := range cs {
		resp.Challenges = append(resp.Challenges, challengeJSON(&cs[i], now))
	}
	picohttp.WriteJSON(w, r, h.logger, http.StatusOK, resp)
}

func (h *enrollmentAPI) getChallenge(w http.ResponseWriter, r *http.Request) {
	vals, err := pathValues(r, "id")
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, err)
		return
	}
	c, err := h.store.RetrieveSCEPChallenge(r.Context(), vals[0])
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, fmt.Errorf("challenge: %w", err))
		return
	}
	picohttp.WriteJSON(w, r, h.logger, http.StatusOK, challengeJSON(c, h.now()))
}

func (h *enrollmentAPI) revokeChallenge(w http.ResponseWriter, r *http.Request) {
	vals, err := pathValues(r, "id")
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, err)
		return
	}
	now := h.now()
	if err := h.store.RevokeSCEPChallenge(r.Context(), vals[0], now.UTC().Truncate(time.Millisecond)); err != nil {
		picohttp.WriteAPIError(w, r, h.logger, fmt.Errorf("revoking challenge: %w", err))
		return
	}
	c, err := h.store.RetrieveSCEPChallenge(r.Context(), vals[0])
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, fmt.Errorf("challenge: %w", err))
		return
	}
	h.logger.InfoContext(r.Context(), "SCEP challenge revoked", "challenge_id", c.ID)
	picohttp.WriteJSON(w, r, h.logger, http.StatusOK, challengeJSON(c, now))
}

func issuedCertJSON(c *storage.SCEPCert) IssuedCertJSON {
	out := IssuedCertJSON{
		Serial: c.Serial, Subject: c.Subject, Hash: c.CertHash,
		NotBefore: timeJSON(c.NotBefore), NotAfter: timeJSON(c.NotAfter), IssuedAt: timeJSON(c.IssuedAt),
	}
	if c.ChallengeID != "" {
		id := c.ChallengeID
		out.ChallengeID = &id
	}
	return out
}

func (h *enrollmentAPI) listCerts(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, err)
		return
	}
	cs, next, err := h.store.ListSCEPCerts(r.Context(), p)
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, fmt.Errorf("listing issued certificates: %w", err))
		return
	}
	resp := &IssuedCertsResponse{Certificates: make([]IssuedCertJSON, 0, len(cs)), NextCursor: next}
	for i := range cs {
		resp.Certificates = append(resp.Certificates, issuedCertJSON(&cs[i]))
	}
	picohttp.WriteJSON(w, r, h.logger, http.StatusOK, resp)
}

func (h *enrollmentAPI) getCert(w http.ResponseWriter, r *http.Request) {
	vals, err := pathValues(r, "serial")
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, err)
		return
	}
	c, err := h.store.RetrieveSCEPCert(r.Context(), vals[0])
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, fmt.Errorf("issued certificate: %w", err))
		return
	}
	out := issuedCertJSON(c)
	out.PEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}))
	picohttp.WriteJSON(w, r, h.logger, http.StatusOK, out)
}

func (h *enrollmentAPI) profile(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		// Headers only: building the profile would mint a challenge.
		w.Header().Set("Content-Type", profile.ContentType)
		w.Header().Set("Cache-Control", "no-store")
		return
	}
	q := r.URL.Query()
	req := enroll.Request{Challenge: q.Get("challenge"), OneTime: true, Note: "profile from the API"}
	q.Del("challenge")
	if len(q) > 0 {
		req.Params = q
	}
	p, err := h.builder.Profile(r.Context(), req)
	if err != nil {
		picohttp.WriteAPIError(w, r, h.logger, httpenroll.StatusFor(err))
		return
	}
	if p.Challenge != nil {
		w.Header().Set("X-Challenge-Id", p.Challenge.ID)
	}
	httpenroll.WriteProfile(w, r, p)
}
