// Package dump is the service-chain link behind -dump: it writes every
// request body a device sends, and every command or answer sent back, to a
// writer (stdout), for debugging.
package dump

import (
	"io"
	"sync"

	"github.com/micromdm/plist"
	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service"
)

// Dumper wraps the next service and dumps what passes through.
type Dumper struct {
	next service.CheckinAndCommandService
	mu   sync.Mutex // one dump at a time, so concurrent requests don't interleave
	w    io.Writer
}

// New wraps next, dumping to w. It panics on nil arguments.
func New(next service.CheckinAndCommandService, w io.Writer) *Dumper {
	if next == nil || w == nil {
		panic("dump: nil next service or writer")
	}
	return &Dumper{next: next, w: w}
}

func (d *Dumper) dump(chunks ...[]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, b := range chunks {
		if len(b) == 0 {
			continue
		}
		d.w.Write(b)
		if b[len(b)-1] != '\n' {
			d.w.Write([]byte{'\n'})
		}
	}
}

// dumpValue dumps v encoded as a plist (an answer sent back to the device).
func (d *Dumper) dumpValue(v interface{}) {
	if b, err := plist.MarshalIndent(v, "\t"); err == nil {
		d.dump(b)
	}
}

// Authenticate implements service.Checkin.
func (d *Dumper) Authenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	d.dump(msg.Raw.Raw)
	return d.next.Authenticate(r, msg)
}

// TokenUpdate implements service.Checkin.
func (d *Dumper) TokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	d.dump(msg.Raw.Raw)
	return d.next.TokenUpdate(r, msg)
}

// CheckOut implements service.Checkin.
func (d *Dumper) CheckOut(r *mdm.Request, msg *mdm.CheckOut) error {
	d.dump(msg.Raw.Raw)
	return d.next.CheckOut(r, msg)
}

// UserAuthenticate implements service.Checkin.
func (d *Dumper) UserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) ([]byte, error) {
	d.dump(msg.Raw.Raw)
	out, err := d.next.UserAuthenticate(r, msg)
	d.dump(out)
	return out, err
}

// SetBootstrapToken implements service.Checkin.
func (d *Dumper) SetBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	d.dump(msg.Raw.Raw)
	return d.next.SetBootstrapToken(r, msg)
}

// GetBootstrapToken implements service.Checkin.
func (d *Dumper) GetBootstrapToken(r *mdm.Request, msg *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	d.dump(msg.Raw.Raw)
	tok, err := d.next.GetBootstrapToken(r, msg)
	if tok != nil {
		d.dumpValue(tok)
	}
	return tok, err
}

// DeclarativeManagement implements service.Checkin.
func (d *Dumper) DeclarativeManagement(r *mdm.Request, msg *mdm.DeclarativeManagement) ([]byte, error) {
	d.dump(msg.Raw.Raw)
	out, err := d.next.DeclarativeManagement(r, msg)
	d.dump(out)
	return out, err
}

// GetToken implements service.Checkin.
func (d *Dumper) GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	d.dump(msg.Raw.Raw)
	tok, err := d.next.GetToken(r, msg)
	if tok != nil {
		d.dumpValue(tok)
	}
	return tok, err
}

// CommandAndReportResults implements service.CommandAndReportResults; it
// dumps the report and the command handed back.
func (d *Dumper) CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error) {
	d.dump(results.Raw)
	cmd, err := d.next.CommandAndReportResults(r, results)
	if cmd != nil {
		d.dump(cmd.Raw)
	}
	return cmd, err
}
