package apns

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/push"
)

// TestRefusalReason: a wrapped *Error is a push.Refusal whose reason is
// APNs' own, or the status text when APNs gave none or an implausibly long
// one (metrics label pushes by it).
func TestRefusalReason(t *testing.T) {
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{&Error{Status: 410, Reason: ReasonUnregistered}, "Unregistered"},
		{&Error{Status: 503}, "Service Unavailable"},
		{&Error{Status: 400, Reason: strings.Repeat("x", maxRefusalReason)}, strings.Repeat("x", maxRefusalReason)},
		{&Error{Status: 400, Reason: strings.Repeat("x", maxRefusalReason+1)}, "Bad Request"},
	} {
		var refusal push.Refusal
		if !errors.As(fmt.Errorf("push to A: %w", tc.err), &refusal) {
			t.Fatalf("%v: errors.As finds no push.Refusal", tc.err)
		}
		if got := refusal.RefusalReason(); got != tc.want {
			t.Errorf("%v: RefusalReason() = %q, want %q", tc.err, got, tc.want)
		}
	}
}
