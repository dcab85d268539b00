package device

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/picomdm/picomdm/mdm"
)

// Fleet drives many simulated devices against one server: it enrolls
// them, then drains their queues, once or periodically. The callbacks are
// how a caller (devsim, a load generator) observes it.
type Fleet struct {
	// Devices are the fleet's channels.
	Devices []*Device
	// Concurrency bounds how many devices talk to the server at once;
	// 0 means all of them.
	Concurrency int
	// Answer decides how commands are answered; nil acknowledges them.
	Answer AnswerFunc
	// OnEnroll, if set, is called once per device after all devices
	// enrolled, in the order of Devices.
	OnEnroll func(*Device)
	// OnCommand, if set, is called for each command received, before it
	// is answered, from the goroutine draining that device.
	OnCommand func(*Device, *Command)
}

// NewFleet returns a fleet of n new devices created with New(ca,
// serverURL, opts...). Keys are generated in parallel.
func NewFleet(ca *CA, serverURL string, n int, opts ...Option) (*Fleet, error) {
	if n < 1 {
		return nil, fmt.Errorf("device: fleet of %d devices", n)
	}
	f := &Fleet{Devices: make([]*Device, n)}
	err := ForEach(context.Background(), n, runtime.GOMAXPROCS(0), func(_ context.Context, i int) error {
		d, err := New(ca, serverURL, opts...)
		f.Devices[i] = d
		return err
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// NewFleetFromProfile returns a fleet of n devices each made with
// NewFromProfile(ctx, profileURL, opts...): each downloads the profile
// itself (so each gets its own one-time challenge when the server mints
// them) and gets its identity by SCEP.
func NewFleetFromProfile(ctx context.Context, profileURL string, n int, opts ...Option) (*Fleet, error) {
	if n < 1 {
		return nil, fmt.Errorf("device: fleet of %d devices", n)
	}
	f := &Fleet{Devices: make([]*Device, n)}
	err := ForEach(ctx, n, runtime.GOMAXPROCS(0), func(ctx context.Context, i int) error {
		d, _, err := NewFromProfile(ctx, profileURL, opts...)
		f.Devices[i] = d
		return err
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Enroll enrolls every device (Authenticate and TokenUpdate), stopping at
// the first failure.
func (f *Fleet) Enroll(ctx context.Context) error {
	err := f.each(ctx, func(ctx context.Context, i int) error {
		return f.Devices[i].Enroll(ctx)
	})
	if err != nil {
		return err
	}
	if f.OnEnroll != nil {
		for _, d := range f.Devices {
			f.OnEnroll(d)
		}
	}
	return nil
}

// Drain drains every device's queue once (see Device.Drain), stopping at
// the first failure.
func (f *Fleet) Drain(ctx context.Context) error {
	return f.each(ctx, func(ctx context.Context, i int) error {
		d := f.Devices[i]
		answer := f.Answer
		if answer == nil {
			answer = Answer(mdm.StatusAcknowledged)
		}
		_, err := d.Drain(ctx, func(cmd *Command) (string, map[string]any) {
			if f.OnCommand != nil {
				f.OnCommand(d, cmd)
			}
			return answer(cmd)
		})
		return err
	})
}

// Run enrolls the fleet and drains it. With watch > 0 it then drains
// again every watch until ctx is done, which ends it without error;
// otherwise it returns after the first drain.
func (f *Fleet) Run(ctx context.Context, watch time.Duration) error {
	if err := f.Enroll(ctx); err != nil {
		return err
	}
	if err := f.Drain(ctx); err != nil || watch <= 0 {
		return err
	}
	ticker := time.NewTicker(watch)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		if err := f.Drain(ctx); err != nil {
			if ctx.Err() != nil {
				return nil // interrupted mid-drain
			}
			return err
		}
	}
}

// PrintTo sets OnEnroll and OnCommand to write to w: each device's
// enrollment ID on a line of its own, and each command received as
// "<id> <CommandUUID> <RequestType>", followed by the raw plist if verbose.
// Lines from concurrent devices are not interleaved.
func (f *Fleet) PrintTo(w io.Writer, verbose bool) {
	var mu sync.Mutex
	f.OnEnroll = func(d *Device) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(w, d.ID())
	}
	f.OnCommand = func(d *Device, cmd *Command) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(w, d.ID(), cmd.CommandUUID, cmd.RequestType)
		if verbose {
			w.Write(cmd.Raw)
			if n := len(cmd.Raw); n > 0 && cmd.Raw[n-1] != '\n' {
				fmt.Fprintln(w)
			}
		}
	}
}

// each runs fn for every device index, at most f.Concurrency at a time.
func (f *Fleet) each(ctx context.Context, fn func(ctx context.Context, i int) error) error {
	return ForEach(ctx, len(f.Devices), f.Concurrency, fn)
}

// forEach runs fn for i in [0, n), at most limit at a time (all at once if
// limit <= 0), and returns the first error; the first error cancels the
// context the others run with.
func ForEach(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if limit <= 0 || limit > n {
		limit = n
	}
	var (
		sem   = make(chan struct{}, limit)
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
loop:
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("device: interrupted: %w", err)
	}
	return nil
}
