// Package gettoken answers GetToken check-ins: Apple's protocol for a
// device to ask the MDM server for a token of some service, named by the
// message's TokenServiceType (e.g. "com.apple.maid" for Managed Apple IDs).
// A Registry dispatches each message to the Handler registered for its
// type.
package gettoken

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/picomdm/picomdm/mdm"
)

// Handler answers GetToken messages of one TokenServiceType.
type Handler interface {
	GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error)

// GetToken calls fn.
func (fn HandlerFunc) GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	return fn(r, msg)
}

// ErrUnknownServiceType is wrapped by the error for a GetToken message
// whose TokenServiceType has no handler; the device gets a 500.
var ErrUnknownServiceType = errors.New("no GetToken handler for this TokenServiceType")

// Registry dispatches GetToken messages by TokenServiceType. It implements
// core.GetTokenHandler. It is safe for concurrent use, registering
// included. Build it with NewRegistry.
type Registry struct {
	mu       sync.RWMutex
	handlers map[string]Handler
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{handlers: make(map[string]Handler)}
}

// Register makes h answer GetToken messages of serviceType, replacing any
// handler registered for it before. It panics on an empty serviceType or a
// nil h: those are wiring mistakes.
func (reg *Registry) Register(serviceType string, h Handler) {
	if serviceType == "" {
		panic("gettoken: empty TokenServiceType")
	}
	if h == nil {
		panic("gettoken: nil Handler for " + serviceType)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	reg.handlers[serviceType] = h
}

// GetToken hands msg to the handler registered for its TokenServiceType;
// an unregistered type is an error wrapping ErrUnknownServiceType that
// names it.
func (reg *Registry) GetToken(r *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	reg.mu.RLock()
	h := reg.handlers[msg.TokenServiceType]
	reg.mu.RUnlock()
	if h == nil {
		return nil, fmt.Errorf("gettoken: TokenServiceType %q: %w", msg.TokenServiceType, ErrUnknownServiceType)
	}
	resp, err := h.GetToken(r, msg)
	if err != nil {
		return nil, fmt.Errorf("gettoken: TokenServiceType %q: %w", msg.TokenServiceType, err)
	}
	return resp, nil
}

// StaticToken returns a Handler that answers every message with token as
// TokenData.
func StaticToken(token []byte) Handler {
	token = bytes.Clone(token)
	return HandlerFunc(func(*mdm.Request, *mdm.GetToken) (*mdm.GetTokenResponse, error) {
		return &mdm.GetTokenResponse{TokenData: bytes.Clone(token)}, nil
	})
}

// ParseStatic parses a -get-token-static flag value, "TYPE=TOKEN", into
// the TokenServiceType and the token bytes. TOKEN may say what it is with
// a prefix: "base64:" (standard base64, padded) or "text:" (the bytes
// after the prefix, as is). Without a prefix it is decoded as standard
// base64 if it is valid base64, else taken as text; use "text:" for a
// text token that happens to be valid base64.
func ParseStatic(spec string) (serviceType string, token []byte, err error) {
	serviceType, value, ok := strings.Cut(spec, "=")
	serviceType = strings.TrimSpace(serviceType)
	if !ok || serviceType == "" {
		return "", nil, fmt.Errorf("gettoken: %q is not TYPE=TOKEN", spec)
	}
	switch {
	case strings.HasPrefix(value, "base64:"):
		token, err = base64.StdEncoding.DecodeString(strings.TrimPrefix(value, "base64:"))
		if err != nil {
			return "", nil, fmt.Errorf("gettoken: token for %s: %w", serviceType, err)
		}
	case strings.HasPrefix(value, "text:"):
		token = []byte(strings.TrimPrefix(value, "text:"))
	default:
		if token, err = base64.StdEncoding.DecodeString(value); err != nil {
			token = []byte(value)
		}
	}
	if len(token) == 0 {
		return "", nil, fmt.Errorf("gettoken: empty token for %s", serviceType)
	}
	return serviceType, token, nil
}
