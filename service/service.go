// Package service defines the service chain every MDM request passes
// through: the interfaces each link implements and the dispatch from a
// decoded request body to the right method. The links themselves live in
// sub-packages (core, certauth, dump, multi, webhook…) and wrap each other
// like HTTP middleware.
package service

import (
	"github.com/picomdm/picomdm/mdm"
)

// Checkin handles the check-in messages of Apple's check-in protocol.
type Checkin interface {
	Authenticate(r *mdm.Request, msg *mdm.Authenticate) error
	TokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error
	CheckOut(r *mdm.Request, msg *mdm.CheckOut) error
	// UserAuthenticate returns the bytes to answer with (a DigestChallenge
	// plist, or nil for an empty 200).
	UserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) ([]byte, error)
	SetBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error
	// GetBootstrapToken returns the escrowed token, or nil for none.
	GetBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error)
	// DeclarativeManagement returns the body to answer with.
	DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error)
	// GetToken returns the token to answer with.
	GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error)
}

// CommandAndReportResults handles Apple's command protocol: it takes a
// device's report and answers with the next command, or nil for none.
type CommandAndReportResults interface {
	CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error)
}

// CheckinAndCommandService is one whole link of the service chain.
type CheckinAndCommandService interface {
	Checkin
	CommandAndReportResults
}
