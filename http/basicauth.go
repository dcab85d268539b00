package http

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"slices"
)

// apiUsers are the basic-auth user names the API accepts: NanoMDM's, for
// drop-in compatibility, and PicoMDM's own.
var apiUsers = []string{"nanomdm", "picomdm"}

// BasicAuth returns middleware admitting only requests that authenticate
// with HTTP basic auth as user "nanomdm" or "picomdm" and apiKey as the
// password.
// Others get 401 with a WWW-Authenticate challenge and
// {"error":"unauthorized"}. It panics if apiKey is empty: an empty key
// would let anyone in.
func BasicAuth(apiKey string) func(http.Handler) http.Handler {
	if apiKey == "" {
		panic("http: BasicAuth with an empty API key")
	}
	// Comparing fixed-size digests keeps the comparison constant-time
	// regardless of the length of what the client sent.
	want := sha256.Sum256([]byte(apiKey))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			user, password, ok := r.BasicAuth()
			got := sha256.Sum256([]byte(password))
			if !ok || !slices.Contains(apiUsers, user) || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="picomdm"`)
				WriteJSON(w, r, nil, http.StatusUnauthorized, &ErrorResponse{Error: "unauthorized"})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
