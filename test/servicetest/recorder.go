// Package servicetest holds test doubles for the service chain.
package servicetest

import (
	"sync"

	"github.com/micromdm/plist"
	"github.com/picomdm/picomdm/mdm"
)

// Recorder is a service.CheckinAndCommandService that records the name of
// every method called and the requests it saw, and answers with Err (and,
// for commands, Next).
type Recorder struct {
	mu       sync.Mutex
	calls    []string
	requests []*mdm.Request
	// Err is returned by every method.
	Err error
	// Next is the command CommandAndReportResults returns.
	Next *mdm.Command
	// Called, if set, is invoked (outside the lock) after each call.
	Called func(method string)
}

func (r *Recorder) add(method string, req *mdm.Request) error {
	r.mu.Lock()
	r.calls = append(r.calls, method)
	r.requests = append(r.requests, req)
	called := r.Called
	r.mu.Unlock()
	if called != nil {
		called(method)
	}
	return r.Err
}

// Calls returns the method names called so far, in order.
func (r *Recorder) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// Requests returns the requests seen so far, in order.
func (r *Recorder) Requests() []*mdm.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*mdm.Request(nil), r.requests...)
}

// Authenticate implements service.Checkin.
func (r *Recorder) Authenticate(req *mdm.Request, _ *mdm.Authenticate) error {
	return r.add("Authenticate", req)
}

// TokenUpdate implements service.Checkin.
func (r *Recorder) TokenUpdate(req *mdm.Request, _ *mdm.TokenUpdate) error {
	return r.add("TokenUpdate", req)
}

// CheckOut implements service.Checkin.
func (r *Recorder) CheckOut(req *mdm.Request, _ *mdm.CheckOut) error {
	return r.add("CheckOut", req)
}

// UserAuthenticate implements service.Checkin.
func (r *Recorder) UserAuthenticate(req *mdm.Request, _ *mdm.UserAuthenticate) ([]byte, error) {
	return nil, r.add("UserAuthenticate", req)
}

// SetBootstrapToken implements service.Checkin.
func (r *Recorder) SetBootstrapToken(req *mdm.Request, _ *mdm.SetBootstrapToken) error {
	return r.add("SetBootstrapToken", req)
}

// GetBootstrapToken implements service.Checkin; it answers a fixed token.
func (r *Recorder) GetBootstrapToken(req *mdm.Request, _ *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	return &mdm.BootstrapToken{BootstrapToken: []byte("token")}, r.add("GetBootstrapToken", req)
}

// DeclarativeManagement implements service.Checkin.
func (r *Recorder) DeclarativeManagement(req *mdm.Request, _ *mdm.DeclarativeManagement) ([]byte, error) {
	return []byte(`{}`), r.add("DeclarativeManagement", req)
}

// GetToken implements service.Checkin.
func (r *Recorder) GetToken(req *mdm.Request, _ *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	return &mdm.GetTokenResponse{TokenData: []byte("data")}, r.add("GetToken", req)
}

// CommandAndReportResults implements service.CommandAndReportResults.
func (r *Recorder) CommandAndReportResults(req *mdm.Request, _ *mdm.CommandResults) (*mdm.Command, error) {
	return r.Next, r.add("CommandAndReportResults", req)
}

// NewCommand returns a decoded command with the given UUID and request
// type, with its Raw plist.
func NewCommand(uuid, requestType string) *mdm.Command {
	raw, err := plist.Marshal(map[string]interface{}{
		"CommandUUID": uuid,
		"Command":     map[string]interface{}{"RequestType": requestType},
	})
	if err != nil {
		panic(err)
	}
	cmd, err := mdm.DecodeCommand(raw)
	if err != nil {
		panic(err)
	}
	return cmd
}
