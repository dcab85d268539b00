package ddm

import (
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/service/certauth"
	"github.com/picomdm/picomdm/service/core"
	"github.com/picomdm/picomdm/storage/inmem"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// TestNotForwardedForRefusedRequest: the forwarder sits in the core
// service, behind cert-auth, so the DDM server hears only of requests the
// chain accepted: a DeclarativeManagement from a device that never
// enrolled, or from an impostor with another certificate, never reaches
// it; the enrolled device's own does.
func TestNotForwardedForRefusedRequest(t *testing.T) {
	h, srv := newHook(t, 200, `{"ok":true}`)
	store := inmem.New()
	chain := certauth.New(core.New(store, core.WithDeclarativeManagement(mustNew(t, srv.URL))), store)
	msg := &mdm.DeclarativeManagement{Endpoint: "tokens"}
	forwarded := func() int {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.requests)
	}

	dev := storagetest.NewDevice()
	if _, err := chain.DeclarativeManagement(dev.Request(), msg); err == nil {
		t.Fatal("a device that never enrolled was answered")
	}
	if err := chain.Authenticate(dev.Request(), dev.Authenticate()); err != nil {
		t.Fatal(err)
	}
	impostor := *dev
	impostor.Cert = storagetest.NewIdentityCert("impostor")
	if _, err := chain.DeclarativeManagement(impostor.Request(), msg); err == nil {
		t.Fatal("an impostor's certificate was accepted")
	}
	if n := forwarded(); n != 0 {
		t.Fatalf("%d refused requests forwarded to the DDM server", n)
	}

	out, err := chain.DeclarativeManagement(dev.Request(), msg)
	if err != nil || string(out) != `{"ok":true}` {
		t.Fatalf("the enrolled device's request: %q, %v", out, err)
	}
	if n := forwarded(); n != 1 {
		t.Fatalf("%d requests forwarded, want the accepted one", n)
	}
}
