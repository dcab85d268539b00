package apns

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkPush pushes to 10,000 enrollments of one topic per operation,
// against the mock APNs on loopback (client and server share the
// machine's cores). Besides ns/op (one batch of 10,000) it reports
// pushes/s, the p50 and p99 latency of one push (one HTTP/2 request and
// its answer, as a worker sees it), the bytes allocated per push, and how
// much the live heap grew over the run (flat memory: ~0).
func BenchmarkPush(b *testing.B) {
	const enrollments = 10000
	for _, workers := range []int{5, 50, DefaultWorkers, 500} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			benchmarkPush(b, workers, enrollments)
		})
	}
}

func benchmarkPush(b *testing.B, workers, n int) {
	f := newFixture(b)
	f.mock.SetRecording(false)
	topic := "com.apple.mgmt.External.bench"
	f.storeCert(b, topic)
	ids := idsOf(f.enroll(b, topic, n)...)
	s := f.service(b, WithWorkers(workers))
	ctx := context.Background()

	// Open the connections before timing: a long-running server has.
	if _, err := s.Push(ctx, ids[:min(len(ids), 2*workers)]); err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var latencies []time.Duration
	s.observe = func(d time.Duration) {
		mu.Lock()
		latencies = append(latencies, d)
		mu.Unlock()
	}
	heapBefore := liveHeap()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	allocBefore := mem.TotalAlloc

	b.ReportAllocs()
	b.ResetTimer()
	batches := 0
	for b.Loop() {
		res, err := s.Push(ctx, ids)
		if err != nil {
			b.Fatal(err)
		}
		for _, id := range ids {
			if r := res[id]; r == nil || r.Err != nil {
				b.Fatalf("push to %s: %+v", id, r)
			}
		}
		batches++
	}
	elapsed := b.Elapsed()
	b.StopTimer()

	runtime.ReadMemStats(&mem)
	pushes := batches * n
	s.observe = nil
	slices.Sort(latencies)
	b.ReportMetric(float64(pushes)/elapsed.Seconds(), "pushes/s")
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(mem.TotalAlloc-allocBefore)/float64(pushes), "B/push")
	b.ReportMetric(float64(liveHeap()-heapBefore)/(1<<20), "heap-growth-MB")
}

// liveHeap returns the bytes of live heap objects after a collection.
func liveHeap() int64 {
	runtime.GC()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	return int64(mem.HeapAlloc)
}
