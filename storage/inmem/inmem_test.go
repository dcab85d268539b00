package inmem

import (
	"fmt"
	"testing"

	"github.com/picomdm/picomdm/storage/storagetest"
)

func TestConformance(t *testing.T) {
	store := New()
	storagetest.Run(t, store)
	// Twice against the same store: the suite must not depend on a fresh
	// one, as it will not get one from a shared database.
	storagetest.Run(t, store)
}

func BenchmarkNextCommand(b *testing.B) {
	for _, history := range []int{10, 10000} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			storagetest.BenchmarkNextCommand(b, New(), history)
		})
	}
}

func BenchmarkEnqueue(b *testing.B) {
	for _, targets := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("targets=%d", targets), func(b *testing.B) {
			storagetest.BenchmarkEnqueue(b, New(), targets)
		})
	}
}

func BenchmarkCommandRoundTrip(b *testing.B) {
	storagetest.BenchmarkCommandRoundTrip(b, New())
}

func BenchmarkReportAndNext(b *testing.B) {
	b.Run("separate", func(b *testing.B) { storagetest.BenchmarkReportAndNext(b, New(), 100) })
	b.Run("combined", func(b *testing.B) { storagetest.BenchmarkReportAndNextCombined(b, New(), 100) })
}

func BenchmarkDeviceRoundTrip(b *testing.B) {
	for _, mode := range storagetest.Modes {
		b.Run(mode.Name, func(b *testing.B) { storagetest.BenchmarkDeviceRoundTrip(b, New(), mode.Combined) })
	}
}

func BenchmarkEnrollPair(b *testing.B) {
	storagetest.BenchmarkEnrollPair(b, New(), true)
}
