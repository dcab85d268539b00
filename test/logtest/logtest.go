// Package logtest collects what code under test logs, for tests that
// assert on log lines (a refusal is logged, a secret is not, every line
// is JSON).
package logtest

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
)

// Buffer is a goroutine-safe bytes.Buffer to hand to a logger or a server
// as its output.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Lines decodes everything written so far as JSON lines (slog's JSON
// handler); output that is not JSON fails the test.
func (b *Buffer) Lines(t testing.TB) []map[string]any {
	t.Helper()
	data := []byte(b.String())
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	for dec.More() {
		var line map[string]any
		if err := dec.Decode(&line); err != nil {
			t.Fatalf("log output is not JSON lines: %v\n%s", err, data)
		}
		out = append(out, line)
	}
	return out
}

// Find returns the first JSON line whose msg is msg, or nil.
func (b *Buffer) Find(t testing.TB, msg string) map[string]any {
	t.Helper()
	for _, line := range b.Lines(t) {
		if line["msg"] == msg {
			return line
		}
	}
	return nil
}
