package inmem

import (
	"testing"

	"github.com/picomdm/picomdm/storage/storagetest"
)

func TestInspectFresh(t *testing.T) {
	storagetest.InspectFresh(t, New())
}
