package api

import (
	"mime"
	"strconv"
	"strings"
)

// prefersJSON reads the Accept header values of a request for a command
// result, which is served as the raw plist (application/xml) or as JSON
// (application/json), and reports whether JSON is preferred (RFC 9110
// §12.5.1): each offer takes the quality of the most specific media range
// matching it, and JSON wins only with a higher quality, or the same
// quality from a more specific range (so "application/json, */*" is JSON
// and "*/*", "application/*" or no Accept at all is the plist). Ranges
// that match neither are ignored, as is a malformed one.
func prefersJSON(accept []string) bool {
	type match struct {
		q           float64
		specificity int // 3 exact, 2 type/*, 1 */*, 0 none
	}
	var jsonMatch, xmlMatch match
	for _, header := range accept {
		for part := range strings.SplitSeq(header, ",") {
			mediaType, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if s, ok := params["q"]; ok {
				if q, err = strconv.ParseFloat(s, 64); err != nil || q < 0 || q > 1 {
					continue
				}
			}
			for _, offer := range []struct {
				mediaType string
				best      *match
			}{{"application/json", &jsonMatch}, {"application/xml", &xmlMatch}} {
				spec := 0
				switch mediaType {
				case offer.mediaType:
					spec = 3
				case "application/*":
					spec = 2
				case "*/*":
					spec = 1
				}
				if spec > offer.best.specificity {
					*offer.best = match{q: q, specificity: spec}
				}
			}
		}
	}
	switch {
	case jsonMatch.specificity == 0 || jsonMatch.q == 0:
		return false
	case jsonMatch.q != xmlMatch.q:
		return jsonMatch.q > xmlMatch.q
	}
	return jsonMatch.specificity > xmlMatch.specificity
}
