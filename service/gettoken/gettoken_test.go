package gettoken

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service/core"
)

func request() *mdm.Request {
	r := mdm.NewRequest(context.Background(), nil)
	r.EnrollID = &mdm.EnrollID{Type: mdm.Device, ID: "UDID-1"}
	return r
}

func TestRegistryDispatch(t *testing.T) {
	reg := NewRegistry()
	reg.Register("com.apple.maid", StaticToken([]byte("maid-token")))
	boom := errors.New("boom")
	reg.Register("com.example.failing", HandlerFunc(func(*mdm.Request, *mdm.GetToken) (*mdm.GetTokenResponse, error) {
		return nil, boom
	}))
	var gotMsg *mdm.GetToken
	reg.Register("com.example.echo", HandlerFunc(func(_ *mdm.Request, msg *mdm.GetToken) (*mdm.GetTokenResponse, error) {
		gotMsg = msg
		return &mdm.GetTokenResponse{TokenData: []byte("echo")}, nil
	}))

	resp, err := reg.GetToken(request(), &mdm.GetToken{TokenServiceType: "com.apple.maid"})
	if err != nil || string(resp.TokenData) != "maid-token" {
		t.Fatalf("maid: %v, %v", resp, err)
	}
	msg := &mdm.GetToken{TokenServiceType: "com.example.echo", TokenParameters: map[string]any{"k": "v"}}
	if resp, err := reg.GetToken(request(), msg); err != nil || string(resp.TokenData) != "echo" || gotMsg != msg {
		t.Fatalf("echo: %v, %v (handler got %v)", resp, err, gotMsg)
	}
	if _, err := reg.GetToken(request(), &mdm.GetToken{TokenServiceType: "com.example.failing"}); !errors.Is(err, boom) {
		t.Fatalf("failing handler: err = %v", err)
	}

	_, err = reg.GetToken(request(), &mdm.GetToken{TokenServiceType: "com.example.unknown"})
	if !errors.Is(err, ErrUnknownServiceType) || !strings.Contains(err.Error(), `"com.example.unknown"`) {
		t.Fatalf("unknown type: err = %v", err)
	}
}

func TestRegisterReplaces(t *testing.T) {
	reg := NewRegistry()
	reg.Register("t", StaticToken([]byte("old")))
	reg.Register("t", StaticToken([]byte("new")))
	resp, err := reg.GetToken(request(), &mdm.GetToken{TokenServiceType: "t"})
	if err != nil || string(resp.TokenData) != "new" {
		t.Fatalf("%v, %v", resp, err)
	}
}

func TestRegisterPanics(t *testing.T) {
	for name, fn := range map[string]func(){
		"empty type":  func() { NewRegistry().Register("", StaticToken([]byte("x"))) },
		"nil handler": func() { NewRegistry().Register("t", nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			fn()
		})
	}
}

func TestStaticTokenIsolated(t *testing.T) {
	token := []byte("secret")
	h := StaticToken(token)
	token[0] = 'X' // the caller's slice changing does not change the token
	resp, _ := h.GetToken(request(), &mdm.GetToken{})
	resp.TokenData[1] = 'Y' // nor does one answer's receiver
	resp, _ = h.GetToken(request(), &mdm.GetToken{})
	if string(resp.TokenData) != "secret" {
		t.Fatalf("token %q", resp.TokenData)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	reg := NewRegistry()
	reg.Register("t", StaticToken([]byte("x")))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				reg.Register("other", StaticToken([]byte("y")))
				if _, err := reg.GetToken(request(), &mdm.GetToken{TokenServiceType: "t"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestParseStatic(t *testing.T) {
	tests := []struct {
		spec      string
		wantType  string
		wantToken []byte
		wantErr   bool
	}{
		{"com.apple.maid=aGVsbG8=", "com.apple.maid", []byte("hello"), false},
		{"com.apple.maid=base64:aGVsbG8=", "com.apple.maid", []byte("hello"), false},
		{"com.apple.maid=not base64!", "com.apple.maid", []byte("not base64!"), false},
		{"com.apple.maid=text:aGVsbG8=", "com.apple.maid", []byte("aGVsbG8="), false},
		{"com.example=a=b", "com.example", []byte("a=b"), false}, // first '=' splits
		{"com.example=\x00\xff", "com.example", []byte("\x00\xff"), false},
		{"com.apple.maid=base64:!!!", "", nil, true},
		{"com.apple.maid=", "", nil, true},
		{"com.apple.maid=text:", "", nil, true},
		{"=token", "", nil, true},
		{"no-equals", "", nil, true},
	}
	for _, tc := range tests {
		typ, token, err := ParseStatic(tc.spec)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%q: no error", tc.spec)
			}
			continue
		}
		if err != nil || typ != tc.wantType || !bytes.Equal(token, tc.wantToken) {
			t.Errorf("%q = %q, %q, %v; want %q, %q", tc.spec, typ, token, err, tc.wantType, tc.wantToken)
		}
	}
}

var _ core.GetTokenHandler = (*Registry)(nil)
