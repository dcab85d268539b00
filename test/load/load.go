// Package load is the load generator behind "devsim bench": it drives a
// fleet of simulated devices (real CMS-signed requests) and the API of any
// NanoMDM-compatible server through a fixed sequence of phases, and
// reports throughput, latency and correctness as "name value unit"
// results.
//
// The phases, in order:
//
//  1. enroll: every device sends Authenticate and TokenUpdate
//     (enroll_pairs_per_s);
//  2. round trips: Commands single-target enqueues per device (nopush),
//     then every device drains its queue concurrently: Idle → command →
//     Acknowledged → … (round_trips_per_s);
//  3. multi-target: one enqueue to every device (plus migrated enrollments
//     up to MultiTargets), timed (multi_enqueue_targets_per_s), then
//     drained;
//  4. push: one /v1/push to every device, counted at a mock APNs the tool
//     runs itself (pushes_per_s), when Config.APNs is set; one push
//     before it, untimed, lets the server open its APNs connection;
//  5. deep queues: Depth commands queued per device; one poll per device,
//     one at a time, is timed (poll_p50/p99/max), then they drain
//     concurrently (deep_round_trips_per_s).
//
// Every command a device receives is checked against what was enqueued to
// it: commands_lost, commands_duplicated, commands_out_of_order and
// commands_unexpected must all be 0 (Report.Correct).
package load

import (
	"context"
	"errors"
	"fmt"
	"github.com/picomdm/picomdm/mdm"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picomdm/picomdm/test/apiclient"
	"github.com/picomdm/picomdm/test/apnsmock"
	"github.com/picomdm/picomdm/test/device"
)

// Config is one bench run. MDMURL, APIKey and CA are required; zero
// numbers take the defaults of "devsim bench".
type Config struct {
	// MDMURL is where devices send requests, e.g. "http://127.0.0.1:9000/mdm".
	MDMURL string
	// CheckinURL, if set, receives check-ins (servers run with -checkin).
	CheckinURL string
	// APIURL is the server's base URL for /v1/…; empty means MDMURL's
	// scheme and host.
	APIURL string
	// APIKey is the server's API key.
	APIKey string
	// CA issues the devices' identity certificates; the server must trust
	// it.
	CA *device.CA

	// Devices is the fleet size (default 1000).
	Devices int
	// Concurrency bounds how many devices, or API calls, are in flight at
	// once (default 32).
	Concurrency int
	// Commands is how many commands each device gets in the round-trip
	// phase (default 5).
	Commands int
	// Depth is the queue depth of the poll-latency phase (default 20;
	// negative skips the phase).
	Depth int
	// MultiTargets is how many enrollments the multi-target enqueue goes
	// to; beyond Devices, enrollments are added through /migration (the
	// server must run with -migration). 0 means Devices.
	MultiTargets int
	// KeyType is the devices' key type (default RSA-2048, what SCEP
	// issues).
	KeyType device.KeyType
	// Keys is how many distinct device keys are generated (default 16);
	// devices share them round-robin, but every device has a certificate
	// of its own, so the server's work per request is unchanged while
	// the client does not spend minutes generating RSA keys.
	Keys int
	// Topic is the push topic devices report (default device.DefaultTopic).
	Topic string
	// APNs, if set, is the mock APNs the server pushes to; without it the
	// push phase is skipped.
	APNs *apnsmock.Server
	// ServerPID, if set, is the server's process ID on this machine: its
	// resident memory is reported after the run (Linux).
	ServerPID int
	// Progress, if set, receives a progress line every ProgressEvery
	// (default 2s).
	Progress      io.Writer
	ProgressEvery time.Duration
}

// withDefaults fills in the zero fields.
func (c Config) withDefaults() (Config, error) {
	if c.MDMURL == "" || c.APIKey == "" || c.CA == nil {
		return c, errors.New("load: MDM URL, API key and CA are required")
	}
	if c.APIURL == "" {
		u, err := url.Parse(c.MDMURL)
		if err != nil || u.Host == "" {
			return c, fmt.Errorf("load: bad MDM URL %q", c.MDMURL)
		}
		c.APIURL = u.Scheme + "://" + u.Host
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Devices, 1000)
	def(&c.Concurrency, 32)
	def(&c.Commands, 5)
	def(&c.Depth, 20)
	def(&c.MultiTargets, c.Devices)
	def(&c.Keys, 16)
	if c.Devices < 1 || c.Concurrency < 1 || c.Commands < 0 || c.Keys < 1 {
		return c, errors.New("load: devices, concurrency and keys must be positive, commands not negative")
	}
	if c.MultiTargets < c.Devices {
		return c, fmt.Errorf("load: %d multi-target enrollments, fewer than the %d devices", c.MultiTargets, c.Devices)
	}
	if c.Keys > c.Devices {
		c.Keys = c.Devices
	}
	if c.Topic == "" {
		c.Topic = device.DefaultTopic
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 2 * time.Second
	}
	return c, nil
}

// bench is one run's state.
type bench struct {
	cfg     Config
	api     *apiclient.Client
	devices []*device.Device
	tracks  []track // per device, same index
	signers []*timedSigner
	timer   *timedTransport
	report  *Report

	phase    atomic.Pointer[phase]
	signCost time.Duration // one signature, measured alone
}

// Run runs every phase against the server and returns the report. An
// error means the run could not be completed (the server refused a
// request, the network failed); correctness failures are in the report
// (Report.Correct), not errors.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, report: &Report{}}
	cpu0 := processCPU()
	start := time.Now()
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	stopProgress := b.startProgress()
	defer stopProgress()

	steps := []func(context.Context) error{b.enroll, b.roundTrips, b.multiTarget, b.push, b.deepQueues}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return b.report, err
		}
	}
	stopProgress()
	b.correctness()
	b.clientCost(time.Since(start), processCPU()-cpu0)
	if cfg.ServerPID > 0 {
		if rss, err := residentMemory(cfg.ServerPID); err == nil {
			b.report.add("server_rss", float64(rss)/(1<<20), "MiB")
		} else {
			b.progressf("server RSS: %v", err)
		}
	}
	return b.report, nil
}

// setup generates the keys and devices and, for the push phase, uploads a
// push certificate for the topic.
func (b *bench) setup(ctx context.Context) error {
	cfg := b.cfg
	b.timer = &timedTransport{next: newTransport(cfg.Concurrency)}
	client := &http.Client{Transport: b.timer, Timeout: 5 * time.Minute}
	b.api = &apiclient.Client{BaseURL: cfg.APIURL, APIKey: cfg.APIKey,
		HTTP: &http.Client{Transport: newTransport(cfg.Concurrency), Timeout: 10 * time.Minute}}

	b.signers = make([]*timedSigner, cfg.Keys)
	err := device.ForEach(ctx, cfg.Keys, runtime.GOMAXPROCS(0), func(_ context.Context, i int) error {
		key, err := device.GenerateKey(cfg.KeyType)
		b.signers[i] = &timedSigner{signer: key}
		return err
	})
	if err != nil {
		return fmt.Errorf("load: generating device keys: %w", err)
	}
	b.devices = make([]*device.Device, cfg.Devices)
	b.tracks = make([]track, cfg.Devices)
	drainLimit := cfg.Commands + max(cfg.Depth, 0) + 16
	err = device.ForEach(ctx, cfg.Devices, runtime.GOMAXPROCS(0), func(_ context.Context, i int) error {
		udid := mdm.NewUUID()
		key := b.signers[i%len(b.signers)]
		cert, err := cfg.CA.Issue(udid, key)
		if err != nil {
			return err
		}
		opts := []device.Option{
			device.WithUDID(udid), device.WithIdentity(cert, key), device.WithHTTPClient(client),
			device.WithTopic(cfg.Topic), device.WithDrainLimit(drainLimit),
		}
		if cfg.CheckinURL != "" {
			opts = append(opts, device.WithCheckinURL(cfg.CheckinURL))
		}
		b.devices[i], err = device.New(nil, cfg.MDMURL, opts...)
		return err
	})
	if err != nil {
		return fmt.Errorf("load: creating devices: %w", err)
	}
	b.measureSigning()

	if cfg.APNs != nil {
		cfg.APNs.SetRecording(false)
		certPEM, keyPEM := apnsmock.NewProviderCertificate(cfg.Topic)
		status, body, err := b.api.PutPushCert(ctx, append(certPEM, keyPEM...))
		if err != nil || status != http.StatusOK {
			return fmt.Errorf("load: uploading a push certificate for %s: %d %s %v", cfg.Topic, status, body, err)
		}
	}
	return nil
}

// measureSigning times the client's own cost of signing one request, then
// zeroes the signers' counters so that they count the run alone.
func (b *bench) measureSigning() {
	const n = 20
	d := b.devices[0]
	body := make([]byte, 600) // about a command report's size
	for range n {
		d.SignBody(body)
	}
	s := b.signers[0]
	b.signCost = time.Duration(s.total.Load() / s.count.Load())
	b.report.add("client_sign_cost", float64(b.signCost)/1e3, "us/request")
	for _, s := range b.signers {
		s.total.Store(0)
		s.count.Store(0)
	}
}

// enroll sends every device's Authenticate and TokenUpdate.
func (b *bench) enroll(ctx context.Context) error {
	p := b.begin("enroll", len(b.devices), "devices")
	err := b.eachDevice(ctx, func(ctx context.Context, i int) error {
		defer p.done.Add(1)
		return b.devices[i].Enroll(ctx)
	})
	wall := p.end()
	if err != nil {
		return fmt.Errorf("load: enroll: %w", err)
	}
	b.report.add("enroll_pairs_per_s", float64(len(b.devices))/wall.Seconds(), "pairs/s")
	b.report.addLatency("enroll_request", p.latencies)
	return nil
}

// roundTrips queues Commands commands per device with single-target
// enqueues, then drains every device concurrently.
func (b *bench) roundTrips(ctx context.Context) error {
	k := b.cfg.Commands
	if k == 0 {
		return nil
	}
	p := b.begin("enqueue", len(b.devices)*k, "commands")
	err := b.eachDevice(ctx, func(ctx context.Context, i int) error {
		for range k {
			uuid, raw := newCommand()
			if err := b.enqueue(ctx, []string{b.devices[i].ID()}, raw); err != nil {
				return err
			}
			b.tracks[i].expect(uuid)
			p.done.Add(1)
		}
		return nil
	})
	wall := p.end()
	if err != nil {
		return fmt.Errorf("load: enqueue: %w", err)
	}
	b.report.add("enqueue_per_s", float64(len(b.devices)*k)/wall.Seconds(), "commands/s")

	received, wall, lat, err := b.drain(ctx, "round trips")
	if err != nil {
		return err
	}
	b.report.add("round_trips_per_s", float64(received)/wall.Seconds(), "commands/s")
	b.report.addLatency("round_trip_request", lat)
	return nil
}

// multiTarget enqueues one command to every device (and to migrated
// enrollments up to MultiTargets) in one call, then drains the devices.
func (b *bench) multiTarget(ctx context.Context) error {
	ids := make([]string, len(b.devices), b.cfg.MultiTargets)
	for i, d := range b.devices {
		ids[i] = d.ID()
	}
	if extra := b.cfg.MultiTargets - len(b.devices); extra > 0 {
		migrated, err := b.migrate(ctx, extra)
		if err != nil {
			return err
		}
		ids = append(ids, migrated...)
	}
	uuid, raw := newCommand()
	p := b.begin("multi-target enqueue", 1, "calls")
	err := b.enqueue(ctx, ids, raw)
	wall := p.end()
	if err != nil {
		return fmt.Errorf("load: multi-target enqueue to %d: %w", len(ids), err)
	}
	for i := range b.devices {
		b.tracks[i].expect(uuid)
	}
	b.report.add("multi_enqueue_targets", float64(len(ids)), "targets")
	b.report.add("multi_enqueue_wall", float64(wall)/1e6, "ms")
	b.report.add("multi_enqueue_targets_per_s", float64(len(ids))/wall.Seconds(), "targets/s")
	_, _, _, err = b.drain(ctx, "multi-target drain")
	return err
}

// migrate adds n enrollments through /migration (Authenticate and
// TokenUpdate each) and returns their IDs.
func (b *bench) migrate(ctx context.Context, n int) ([]string, error) {
	ids := make([]string, n)
	p := b.begin("migrate", n, "enrollments")
	err := device.ForEach(ctx, n, b.cfg.Concurrency, func(ctx context.Context, i int) error {
		d, err := device.New(nil, b.cfg.MDMURL, device.WithUDID(mdm.NewUUID()), device.WithTopic(b.cfg.Topic),
			device.WithIdentity(b.devices[0].Cert, b.devices[0].Key))
		if err != nil {
			return err
		}
		msgs, err := d.EnrollMessages()
		if err != nil {
			return err
		}
		for _, msg := range msgs {
			status, body, err := b.api.Migrate(ctx, msg)
			if err != nil {
				return err
			}
			if status != http.StatusOK {
				return fmt.Errorf("/migration answered %d %s (is the server running with -migration?)", status, body)
			}
		}
		ids[i] = d.ID()
		p.done.Add(1)
		return nil
	})
	wall := p.end()
	if err != nil {
		return nil, fmt.Errorf("load: migrating enrollments: %w", err)
	}
	b.report.add("migrate_per_s", float64(n)/wall.Seconds(), "enrollments/s")
	return ids, nil
}

// push sends one /v1/push to every device and waits until the mock APNs
// has received them all.
func (b *bench) push(ctx context.Context) error {
	apns := b.cfg.APNs
	if apns == nil {
		return nil
	}
	ids := make([]string, len(b.devices))
	for i, d := range b.devices {
		ids[i] = d.ID()
	}
	// A running server keeps its APNs connection open: one push
	// before timing opens it, so that the handshake is not counted.
	if status, body, err := b.api.Push(ctx, ids[:1]); err != nil || status != http.StatusOK {
		return fmt.Errorf("load: warm-up push: %d %.300s %v", status, body, err)
	}
	for deadline := time.Now().Add(10 * time.Second); apns.Served() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	before := apns.Served()
	p := b.begin("push", len(ids), "pushes")
	stop := make(chan struct{})
	go func() { // the progress count is what the mock has seen
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				p.done.Store(apns.Served() - before)
			}
		}
	}()
	status, body, err := b.api.Push(ctx, ids)
	apiWall := time.Since(p.start)
	deadline := time.Now().Add(time.Minute)
	for apns.Served()-before < int64(len(ids)) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wall := p.end()
	if err != nil {
		return fmt.Errorf("load: push: %w", err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("load: /v1/push answered %d %.300s", status, body)
	}
	served := apns.Served() - before
	b.report.add("push_delivered", float64(served), "pushes")
	b.report.add("push_api_wall", float64(apiWall)/1e6, "ms")
	b.report.add("pushes_per_s", float64(served)/wall.Seconds(), "pushes/s")
	if served < int64(len(ids)) {
		return fmt.Errorf("load: the mock APNs saw %d of %d pushes", served, len(ids))
	}
	return nil
}

// deepQueues queues Depth commands on every device (multi-target
// enqueues, untimed), then times one poll per device, one at a time, so
// that the latency is the server's cost of finding the next command in a
// deep queue rather than time spent queueing behind other devices. The
// devices then drain concurrently (deep_round_trips_per_s).
func (b *bench) deepQueues(ctx context.Context) error {
	depth := b.cfg.Depth
	if depth <= 0 {
		return nil
	}
	ids := make([]string, len(b.devices))
	for i, d := range b.devices {
		ids[i] = d.ID()
	}
	p := b.begin("deep-queue enqueue", depth, "calls")
	for range depth {
		uuid, raw := newCommand()
		if err := b.enqueue(ctx, ids, raw); err != nil {
			p.end()
			return fmt.Errorf("load: deep-queue enqueue: %w", err)
		}
		for i := range b.devices {
			b.tracks[i].expect(uuid)
		}
		p.done.Add(1)
	}
	p.end()

	// An unanswered command is handed out again, so these polls leave
	// the queues as they were.
	p = b.begin("poll", len(b.devices), "polls")
	for i, d := range b.devices {
		cmd, err := d.Idle(ctx)
		if err != nil {
			p.end()
			return fmt.Errorf("load: poll: %w", err)
		}
		if want := b.tracks[i].firstPending(); cmd == nil || cmd.CommandUUID != want {
			b.tracks[i].wrongPolls++
		}
		p.done.Add(1)
	}
	p.end()
	b.report.addLatency("poll", p.latencies)

	received, wall, _, err := b.drain(ctx, "deep-queue drain")
	if err != nil {
		return err
	}
	b.report.add("deep_round_trips_per_s", float64(received)/wall.Seconds(), "commands/s")
	return nil
}

// drain drains every device's queue, recording what each received, and
// returns the number of commands received, the wall time and the request
// latencies.
func (b *bench) drain(ctx context.Context, name string) (int, time.Duration, *latencies, error) {
	var received atomic.Int64
	p := b.begin(name, len(b.devices), "devices")
	err := b.eachDevice(ctx, func(ctx context.Context, i int) error {
		defer p.done.Add(1)
		cmds, err := b.devices[i].Drain(ctx, nil)
		for _, c := range cmds {
			b.tracks[i].receive(c.CommandUUID)
		}
		received.Add(int64(len(cmds)))
		return err
	})
	wall := p.end()
	if err != nil {
		return 0, 0, nil, fmt.Errorf("load: %s: %w", name, err)
	}
	return int(received.Load()), wall, p.latencies, nil
}

// enqueue queues raw for ids with nopush and checks for a 200. Lists too
// long for a URL path (a multi-target enqueue to 100,000 enrollments is
// some 3.7 MB of IDs) go in a JSON body, PicoMDM's POST /v1/enqueue; shorter
// ones in the path, which NanoMDM takes too (see apiclient.Client.Enqueue).
func (b *bench) enqueue(ctx context.Context, ids []string, raw []byte) error {
	status, body, err := b.api.Enqueue(ctx, ids, raw, true)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("/v1/enqueue answered %d %.300s", status, body)
	}
	return nil
}

// eachDevice runs fn for every device, Concurrency at a time.
func (b *bench) eachDevice(ctx context.Context, fn func(ctx context.Context, i int) error) error {
	return device.ForEach(ctx, len(b.devices), b.cfg.Concurrency, fn)
}

// correctness compares what each device received with what was enqueued
// to it.
func (b *bench) correctness() {
	var sum counts
	for i := range b.tracks {
		c := b.tracks[i].check()
		sum.lost += c.lost
		sum.duplicated += c.duplicated
		sum.outOfOrder += c.outOfOrder
		sum.unexpected += c.unexpected
		sum.delivered += c.delivered
		sum.outOfOrder += b.tracks[i].wrongPolls
	}
	b.report.add("commands_delivered", float64(sum.delivered), "commands")
	b.report.add("commands_lost", float64(sum.lost), "commands")
	b.report.add("commands_duplicated", float64(sum.duplicated), "commands")
	b.report.add("commands_out_of_order", float64(sum.outOfOrder), "commands")
	b.report.add("commands_unexpected", float64(sum.unexpected), "commands")
}

// clientCost reports how much of the machine the load tool itself used:
// its signing (signatures made × the cost of one, measured alone: timing
// each signature under load would count the time it waits for a core) and
// its whole CPU time, as a share of wall × cores.
func (b *bench) clientCost(wall, cpu time.Duration) {
	var signatures int64
	for _, s := range b.signers {
		signatures += s.count.Load()
	}
	signing := time.Duration(signatures) * b.signCost
	capacity := wall.Seconds() * float64(runtime.NumCPU())
	b.report.add("client_sign_share", 100*signing.Seconds()/capacity, "%")
	if cpu > 0 {
		b.report.add("client_cpu_share", 100*cpu.Seconds()/capacity, "%")
	}
	b.report.add("requests", float64(b.timer.requests.Load()), "requests")
	b.report.add("wall", wall.Seconds(), "s")
}

// newTransport returns an HTTP transport keeping enough idle connections
// for concurrency requests at once to one server.
func newTransport(concurrency int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 2 * concurrency
	t.MaxIdleConnsPerHost = 2 * concurrency
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return t
}

// newCommand returns a small DeviceInformation command.
func newCommand() (uuid string, raw []byte) {
	return apiclient.NewCommand("DeviceInformation", map[string]any{"Queries": []string{"Model", "OSVersion"}})
}

// track is what one device was sent and received, in order.
type track struct {
	expected []string
	received []string
	// wrongPolls counts timed polls that did not return the oldest
	// pending command.
	wrongPolls int
}

// firstPending returns the oldest expected command not yet received.
func (t *track) firstPending() string {
	seen := make(map[string]bool, len(t.received))
	for _, u := range t.received {
		seen[u] = true
	}
	for _, u := range t.expected {
		if !seen[u] {
			return u
		}
	}
	return ""
}

func (t *track) expect(uuid string)  { t.expected = append(t.expected, uuid) }
func (t *track) receive(uuid string) { t.received = append(t.received, uuid) }

// counts are the correctness counters.
type counts struct{ delivered, lost, duplicated, outOfOrder, unexpected int }

// check counts: received more than once (duplicated); never received
// (lost); received while a command enqueued before it was still
// undelivered (out of order); received but never enqueued (unexpected).
func (t *track) check() counts {
	var c counts
	pos := make(map[string]int, len(t.expected))
	for i, u := range t.expected {
		pos[u] = i
	}
	seen := make(map[string]bool, len(t.received))
	next := 0 // the oldest expected command not yet received
	for _, u := range t.received {
		if seen[u] {
			c.duplicated++
			continue
		}
		seen[u] = true
		i, ok := pos[u]
		if !ok {
			c.unexpected++
			continue
		}
		c.delivered++
		if i != next {
			c.outOfOrder++
		}
		for next < len(t.expected) && seen[t.expected[next]] {
			next++
		}
	}
	for _, u := range t.expected {
		if !seen[u] {
			c.lost++
		}
	}
	return c
}

// latencies collects request durations.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// percentiles returns the p50, p99 and max, or false without samples.
func (l *latencies) percentiles() (p50, p99, maximum time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0, 0, 0, false
	}
	slices.Sort(l.d)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(l.d))+0.999999) - 1
		return l.d[min(max(i, 0), len(l.d)-1)]
	}
	return at(0.50), at(0.99), l.d[len(l.d)-1], true
}

// timedTransport times device requests (from sending to the response
// headers; the body is small) into the current phase's latencies, so the
// client's signing, done before, is not counted.
type timedTransport struct {
	next     http.RoundTripper
	current  atomic.Pointer[latencies]
	requests atomic.Int64
}

// RoundTrip implements http.RoundTripper.
func (t *timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	if err == nil {
		t.requests.Add(1)
		if l := t.current.Load(); l != nil {
			l.add(time.Since(start))
		}
	}
	return resp, err
}
