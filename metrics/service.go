package metrics

import (
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
)

// reportStatuses are the command-report Status values Apple defines; any
// other value is counted as "other" so a device cannot mint label values.
var reportStatuses = []string{
	mdm.StatusIdle, mdm.StatusAcknowledged, mdm.StatusError,
	mdm.StatusCommandFormatError, mdm.StatusNotNow, statusOther,
}

const statusOther = "other"

// Service returns a link of the service chain that counts what passes
// through it to next: check-ins by MessageType (and those next failed),
// command reports by Status, and commands delivered (a non-nil command
// returned). It changes nothing on the way. It panics if next is nil.
func (r *Registry) Service(next service.CheckinAndCommandService) service.CheckinAndCommandService {
	if next == nil {
		panic("metrics: Service with a nil next service")
	}
	return &metricsService{next: next, r: r}
}

type metricsService struct {
	next service.CheckinAndCommandService
	r    *Registry
}

// checkin counts a check-in of type typ and, if err is set, its failure.
func (s *metricsService) checkin(typ string, err error) {
	s.r.checkins.WithLabelValues(typ).Inc()
	if err != nil {
		s.r.checkinErrors.WithLabelValues(typ).Inc()
	}
}

func (s *metricsService) Authenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	err := s.next.Authenticate(r, msg)
	s.checkin(mdm.MessageAuthenticate, err)
	return err
}

func (s *metricsService) TokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	err := s.next.TokenUpdate(r, msg)
	s.checkin(mdm.MessageTokenUpdate, err)
	return err
}

func (s *metricsService) CheckOut(r *mdm.Request, msg *mdm.CheckOut) error {
	err := s.next.CheckOut(r, msg)
	s.checkin(mdm.MessageCheckOut, err)
	return err
}

func (s *metricsService) UserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) ([]byte, error) {
	out, err := s.next.UserAuthenticate(r, msg)
	s.checkin(mdm.MessageUserAuthenticate, err)
	return out, err
}

func (s *metricsService) SetBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	err := s.next.SetBootstrapToken(r, msg)
	s.checkin(mdm.MessageSetBootstrapToken, err)
	return err
}

func (s *metricsService) GetBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	tok, err := s.next.GetBootstrapToken(r, msg)
	s.checkin(mdm.MessageGetBootstrapToken, err)
	return tok, err
}

func (s *metricsService) DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error) {
	out, err := s.next.DeclarativeManagement(r, msg)
	s.checkin(mdm.MessageDeclarativeManagement, err)
	return out, err
}

func (s *metricsService) GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	resp, err := s.next.GetToken(r, msg)
	s.checkin(mdm.MessageGetToken, err)
	return resp, err
}

func (s *metricsService) CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error) {
	status := statusOther
	if results != nil {
		for _, known := range reportStatuses {
			if results.Status == known {
				status = known
				break
			}
		}
	}
	s.r.reports.WithLabelValues(status).Inc()
	cmd, err := s.next.CommandAndReportResults(r, results)
	if err == nil && cmd != nil {
		s.r.CommandDelivered()
	}
	return cmd, err
}
