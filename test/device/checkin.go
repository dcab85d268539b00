package device

import (
	"context"
	"fmt"

	"github.com/micromdm/plist"
	"github.com/picomdm/picomdm/mdm"
)

// checkinURL returns where check-ins go.
func (d *Device) checkinURL() string {
	if d.CheckinURL != "" {
		return d.CheckinURL
	}
	return d.ServerURL
}

// Checkin marshals msg as a plist and sends it as a check-in message,
// returning the server's answer. msg may be one of the mdm package's
// message types or a map for messages they cannot express.
func (d *Device) Checkin(ctx context.Context, msg any) ([]byte, error) {
	body, err := plist.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("device: encoding check-in: %w", err)
	}
	return d.exchange(ctx, d.checkinURL(), ContentTypeCheckin, body)
}

// checkin sends msg and wraps any error with the message type and the
// channel's ID.
func (d *Device) checkin(ctx context.Context, messageType string, msg any) ([]byte, error) {
	resp, err := d.Checkin(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", messageType, d.ID(), err)
	}
	return resp, nil
}

func messageType(t string) mdm.MessageType { return mdm.MessageType{MessageType: t} }

// Authenticate sends the Authenticate check-in that starts an enrollment,
// with the device's topic, serial number and hardware details. Only device
// channels authenticate; user channels start with TokenUpdate.
func (d *Device) Authenticate(ctx context.Context) error {
	_, err := d.checkin(ctx, mdm.MessageAuthenticate, d.authenticateMessage())
	return err
}

func (d *Device) authenticateMessage() *mdm.Authenticate {
	return &mdm.Authenticate{
		Enrollment:   d.enrollment(),
		MessageType:  messageType(mdm.MessageAuthenticate),
		Topic:        d.Topic,
		BuildVersion: d.BuildVersion,
		DeviceName:   d.DeviceName,
		Model:        d.Model,
		ModelName:    d.ModelName,
		OSVersion:    d.OSVersion,
		ProductName:  d.ProductName,
		SerialNumber: d.SerialNumber,
	}
}

// TokenUpdate sends the channel's push token, PushMagic and topic (and the
// UnlockToken, if any), which makes the enrollment active.
func (d *Device) TokenUpdate(ctx context.Context) error {
	_, err := d.checkin(ctx, mdm.MessageTokenUpdate, d.tokenUpdateMessage())
	return err
}

func (d *Device) tokenUpdateMessage() *mdm.TokenUpdate {
	return &mdm.TokenUpdate{
		Enrollment:  d.enrollment(),
		MessageType: messageType(mdm.MessageTokenUpdate),
		Push:        mdm.Push{PushMagic: d.PushMagic, Token: d.Token, Topic: d.Topic},
		UnlockToken: d.UnlockToken,
	}
}

// EnrollMessages returns the plists Enroll sends, in order (Authenticate,
// then TokenUpdate; only TokenUpdate on a user channel), for replaying an
// enrollment without the device, e.g. through a server's /migration.
func (d *Device) EnrollMessages() ([][]byte, error) {
	msgs := []any{d.tokenUpdateMessage()}
	if d.parent == nil {
		msgs = []any{d.authenticateMessage(), msgs[0]}
	}
	out := make([][]byte, len(msgs))
	for i, msg := range msgs {
		body, err := plist.Marshal(msg)
		if err != nil {
			return nil, fmt.Errorf("device: encoding check-in: %w", err)
		}
		out[i] = body
	}
	return out, nil
}

// Enroll authenticates the device channel and sends its TokenUpdate, as a
// device does when its MDM profile is installed. On a user channel it
// sends only the TokenUpdate.
func (d *Device) Enroll(ctx context.Context) error {
	if d.parent == nil {
		if err := d.Authenticate(ctx); err != nil {
			return err
		}
	}
	return d.TokenUpdate(ctx)
}

// CheckOut tells the server the MDM profile was removed.
func (d *Device) CheckOut(ctx context.Context) error {
	msg := &mdm.CheckOut{
		Enrollment:  d.enrollment(),
		MessageType: messageType(mdm.MessageCheckOut),
		Topic:       d.Topic,
	}
	_, err := d.checkin(ctx, mdm.MessageCheckOut, msg)
	return err
}

// SetBootstrapToken escrows token with the server.
func (d *Device) SetBootstrapToken(ctx context.Context, token []byte) error {
	msg := &mdm.SetBootstrapToken{
		Enrollment:     d.enrollment(),
		MessageType:    messageType(mdm.MessageSetBootstrapToken),
		BootstrapToken: token,
	}
	_, err := d.checkin(ctx, mdm.MessageSetBootstrapToken, msg)
	return err
}

// GetBootstrapToken asks the server for the escrowed bootstrap token. It
// returns nil if the server answers with an empty body (no token).
func (d *Device) GetBootstrapToken(ctx context.Context) ([]byte, error) {
	msg := &mdm.GetBootstrapToken{
		Enrollment:  d.enrollment(),
		MessageType: messageType(mdm.MessageGetBootstrapToken),
	}
	resp, err := d.checkin(ctx, mdm.MessageGetBootstrapToken, msg)
	if err != nil || len(resp) == 0 {
		return nil, err
	}
	var token mdm.BootstrapToken
	if err := plist.Unmarshal(resp, &token); err != nil {
		return nil, fmt.Errorf("%s %s: decoding answer: %w", mdm.MessageGetBootstrapToken, d.ID(), err)
	}
	return token.BootstrapToken, nil
}

// UserAuthenticate sends a UserAuthenticate check-in, with DigestResponse
// if digestResponse is not empty (the second message of the exchange), and
// returns the server's raw answer (e.g. a plist with DigestChallenge). A
// declined request comes back as a *StatusError with Code 410.
func (d *Device) UserAuthenticate(ctx context.Context, digestResponse string) ([]byte, error) {
	msg := &mdm.UserAuthenticate{
		Enrollment:     d.enrollment(),
		MessageType:    messageType(mdm.MessageUserAuthenticate),
		DigestResponse: digestResponse,
	}
	return d.checkin(ctx, mdm.MessageUserAuthenticate, msg)
}

// DeclarativeManagement sends a DeclarativeManagement check-in for
// endpoint (e.g. "tokens", "declaration-items", "status") with data (nil
// for none) and returns the server's raw answer.
func (d *Device) DeclarativeManagement(ctx context.Context, endpoint string, data []byte) ([]byte, error) {
	msg := &mdm.DeclarativeManagement{
		Enrollment:  d.enrollment(),
		MessageType: messageType(mdm.MessageDeclarativeManagement),
		Endpoint:    endpoint,
		Data:        data,
	}
	return d.checkin(ctx, mdm.MessageDeclarativeManagement, msg)
}

// GetToken asks the server for a token of serviceType (e.g.
// "com.apple.maid") and returns the answer's TokenData, or nil for an
// empty answer.
func (d *Device) GetToken(ctx context.Context, serviceType string) ([]byte, error) {
	msg := &mdm.GetToken{
		Enrollment:       d.enrollment(),
		MessageType:      messageType(mdm.MessageGetToken),
		TokenServiceType: serviceType,
	}
	resp, err := d.checkin(ctx, mdm.MessageGetToken, msg)
	if err != nil || len(resp) == 0 {
		return nil, err
	}
	var token mdm.GetTokenResponse
	if err := plist.Unmarshal(resp, &token); err != nil {
		return nil, fmt.Errorf("%s %s: decoding answer: %w", mdm.MessageGetToken, d.ID(), err)
	}
	return token.TokenData, nil
}
