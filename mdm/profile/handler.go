package profile

import (
	"bytes"
	"net/http"
	"time"
)

// ContentType is the media type a device's browser installs as a
// configuration profile.
const ContentType = "application/x-apple-aspen-config"

// NewHandler returns a handler that serves profile (signed or not) to GET
// and HEAD requests with ContentType, answering 405 to other methods. The
// bytes are fixed at construction: sign once at start-up, not per request.
func NewHandler(profile []byte) http.Handler {
	if len(profile) == 0 {
		panic("profile: NewHandler with an empty profile")
	}
	body := bytes.Clone(profile)
	modified := time.Now()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		w.Header().Set("Content-Disposition", `attachment; filename="enroll.mobileconfig"`)
		http.ServeContent(w, r, "", modified, bytes.NewReader(body))
	})
}
