package load

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// phase is a timed step of the run: its device requests' latencies, and
// how far it got, for the progress lines.
type phase struct {
	name, unit string
	total      int
	start      time.Time
	done       atomic.Int64
	latencies  *latencies
	b          *bench
}

// begin starts timing a phase of total units and makes it the one whose
// device requests are timed and whose progress is printed.
func (b *bench) begin(name string, total int, unit string) *phase {
	p := &phase{name: name, unit: unit, total: total, start: time.Now(), latencies: &latencies{}, b: b}
	b.timer.current.Store(p.latencies)
	b.phase.Store(p)
	return p
}

// end stops timing the phase and returns its wall time.
func (p *phase) end() time.Duration {
	wall := time.Since(p.start)
	p.b.timer.current.CompareAndSwap(p.latencies, nil)
	p.b.phase.CompareAndSwap(p, nil)
	p.b.progressf("%s: %d %s in %.2fs", p.name, p.done.Load(), p.unit, wall.Seconds())
	return wall
}

// startProgress prints the current phase's progress every ProgressEvery
// until the returned function is called (which may be called again).
func (b *bench) startProgress() (stop func()) {
	if b.cfg.Progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(b.cfg.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			if p := b.phase.Load(); p != nil {
				done, elapsed := p.done.Load(), time.Since(p.start)
				b.progressf("%s: %d/%d %s, %.1fs, %.0f/s", p.name, done, p.total, p.unit, elapsed.Seconds(), float64(done)/elapsed.Seconds())
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() { close(quit); wg.Wait() })
	}
}

// progressf writes one progress line, if progress is on.
func (b *bench) progressf(format string, args ...any) {
	if b.cfg.Progress != nil {
		fmt.Fprintf(b.cfg.Progress, "devsim bench: "+format+"\n", args...)
	}
}
