package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// pipeListener is a listener of in-memory connections (net.Pipe), so that
// a test in a synctest bubble sees the server block. Connections dialled
// wait in a queue until accepted, like TCP connections in the kernel's
// accept queue.
type pipeListener struct {
	queue  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{queue: make(chan net.Conn, 16), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.queue:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial queues a new connection and returns its client end.
func (l *pipeListener) dial() net.Conn {
	client, server := net.Pipe()
	l.queue <- server
	return client
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// get sends GET path on conn (keeping it alive) and returns the status.
func get(conn net.Conn, r *bufio.Reader, path string) (int, error) {
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: picomdm\r\n\r\n", path); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestMaxConns: with -max-conns 2, two open connections take every slot;
// a third is not served until one of them closes.
func TestMaxConns(t *testing.T) {
	a, err := New([]string{"-disable-mdm", "-storage", "inmem", "-max-conns", "2"}, nil, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	synctest.Test(t, func(t *testing.T) {
		ln := newPipeListener()
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- a.Serve(ctx, ln) }()
		defer func() { // after the connections below are closed
			cancel()
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}()

		// Two connections, each served once and then kept open.
		var held []net.Conn
		for range 2 {
			conn := ln.dial()
			defer conn.Close()
			if status, err := get(conn, bufio.NewReader(conn), "/version"); err != nil || status != http.StatusOK {
				t.Fatalf("held connection: %d %v", status, err)
			}
			held = append(held, conn)
		}

		third := ln.dial()
		defer third.Close()
		answered := make(chan int, 1)
		go func() {
			status, err := get(third, bufio.NewReader(third), "/version")
			if err != nil {
				t.Errorf("third connection: %v", err)
			}
			answered <- status
		}()
		synctest.Wait() // everyone is stuck: the server waits for a free slot
		select {
		case status := <-answered:
			t.Fatalf("third connection served (%d) while two were open", status)
		default:
		}

		held[0].Close()
		if status := <-answered; status != http.StatusOK {
			t.Fatalf("third connection after one closed: %d", status)
		}
	})
}

// TestMaxConnsFlag: the default, the environment, and a negative value.
func TestMaxConnsFlag(t *testing.T) {
	cfg, err := parseConfig(nil, nil, io.Discard)
	if err != nil || cfg.MaxConns != DefaultMaxConns {
		t.Fatalf("default -max-conns %d (%v), want %d", cfg.MaxConns, err, DefaultMaxConns)
	}
	env := map[string]string{"PICOMDM_MAX_CONNS": "0"}
	cfg, err = parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil || cfg.MaxConns != 0 {
		t.Fatalf("PICOMDM_MAX_CONNS=0: %d (%v)", cfg.MaxConns, err)
	}
	if _, err := New([]string{"-disable-mdm", "-storage", "inmem", "-max-conns", "-1"}, nil, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "-max-conns") {
		t.Fatalf("-max-conns -1: %v", err)
	}
}

// headerRequest sends GET /version with a header of n bytes on a new
// connection to addr and returns the status.
func headerRequest(t *testing.T, addr string, n int) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	go fmt.Fprintf(conn, "GET /version HTTP/1.1\r\nHost: picomdm\r\nX-Filler: %s\r\n\r\n", strings.Repeat("a", n))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// logEvent is a log writer that closes seen when a line containing want
// is written.
type logEvent struct {
	mu   sync.Mutex
	want string
	seen chan struct{}
	done bool
}

func (l *logEvent) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done && strings.Contains(string(p), l.want) {
		l.done = true
		close(l.seen)
	}
	return len(p), nil
}

// TestMaxHeaderBytes: the -listen and -metrics-listen servers take Go's
// default 1 MiB of headers, and refuse more with 431.
func TestMaxHeaderBytes(t *testing.T) {
	if MaxHeaderBytes != 1<<20 {
		t.Fatalf("MaxHeaderBytes = %d, want 1 MiB", MaxHeaderBytes)
	}
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := probe.Addr().String()
	probe.Close()
	metricsUp := &logEvent{want: "serving /metrics", seen: make(chan struct{})}
	a, err := New([]string{"-disable-mdm", "-storage", "inmem", "-metrics-listen", metricsAddr}, nil, io.Discard, metricsUp)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	if got := headerRequest(t, ln.Addr().String(), 900<<10); got != http.StatusOK {
		t.Errorf("-listen, 900 KiB of headers: %d, want 200", got)
	}
	if got := headerRequest(t, ln.Addr().String(), 2<<20); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("-listen, 2 MiB of headers: %d, want 431", got)
	}
	select {
	case <-metricsUp.seen:
	case err := <-served:
		served <- err
		t.Fatalf("Serve: %v", err)
	}
	if got := headerRequest(t, metricsAddr, 2<<20); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("-metrics-listen, 2 MiB of headers: %d, want 431", got)
	}
}
