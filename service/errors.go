package service

import (
	"fmt"
	"net/http"
)

// StatusError asks the HTTP layer to answer with a specific status code
// (e.g. 410 for a declined UserAuthenticate). The error text is logged, never
// sent to the device.
type StatusError struct {
	Status int
	Err    error
}

// NewStatusError returns a *StatusError with status and err.
func NewStatusError(status int, err error) *StatusError {
	return &StatusError{Status: status, Err: err}
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: %v", http.StatusText(e.Status), e.Err)
}

// Unwrap returns the underlying error.
func (e *StatusError) Unwrap() error { return e.Err }
