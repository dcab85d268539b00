package mdm

import "testing"

func TestContentType(t *testing.T) {
	for body, want := range map[string]string{
		`<?xml version="1.0"?><plist/>`: "application/xml",
		"bplist00...":                   "application/xml",
		`{"SyncTokens":{}}`:             "application/json",
		"\n  [1]":                       "application/json",
	} {
		if got := contentType([]byte(body)); got != want {
			t.Errorf("contentType(%q) = %q, want %q", body, got, want)
		}
	}
}
