package inmem

import (
	"testing"

	"github.com/picomdm/picomdm/storage/storagetest"
)

func TestPushTokenConformance(t *testing.T) {
	store := New()
	storagetest.RunPushToken(t, store)
	storagetest.RunPushToken(t, store)
}
