package pushkey

import (
	"bytes"
	"testing"

	"github.com/picomdm/picomdm/storage/keyseal"
	"github.com/picomdm/picomdm/storage/storagetest"
)

// TestSealOpen: the key is stored sealed, opens as its own topic's only,
// and a pair that does not parse is refused before anything is sealed.
func TestSealOpen(t *testing.T) {
	sealer, err := keyseal.New(storagetest.RandomBytes(keyseal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	topic := storagetest.NewTopic()
	certPEM, keyPEM := storagetest.NewPushCert(topic)
	pc, sealed, err := Seal(sealer, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if pc.Topic != topic || !keyseal.IsSealed(sealed) || bytes.Contains(sealed, keyPEM) {
		t.Fatalf("Seal: topic %q, sealed %v", pc.Topic, keyseal.IsSealed(sealed))
	}
	cert, err := Open(sealer, topic, certPEM, sealed)
	if err != nil || cert.Leaf == nil || cert.Leaf.NotAfter.UTC() != pc.NotAfter {
		t.Fatalf("Open: %v", err)
	}
	if _, err := Open(sealer, storagetest.NewTopic(), certPEM, sealed); err == nil {
		t.Error("the key opened as another topic's")
	}
	if _, _, err := Seal(sealer, certPEM, []byte("not a key")); err == nil {
		t.Error("Seal took a pair that does not match")
	}
}
