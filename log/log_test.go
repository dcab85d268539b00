package log

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestContextAttrsOnEveryLine(t *testing.T) {
	var buf bytes.Buffer
	logger, err := New(&buf, "json", false)
	if err != nil {
		t.Fatal(err)
	}
	ctx := With(context.Background(), slog.String("trace_id", "T1"))
	ctx = With(ctx, slog.String("enrollment_id", "UDID-1"))
	logger.InfoContext(ctx, "hello", "k", "v")
	logger.DebugContext(ctx, "hidden at info level")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	if line["trace_id"] != "T1" || line["enrollment_id"] != "UDID-1" || line["k"] != "v" {
		t.Fatalf("attrs missing: %v", line)
	}
}

func TestFormatsAndLevels(t *testing.T) {
	var buf bytes.Buffer
	logger, err := New(&buf, "text", true)
	if err != nil {
		t.Fatal(err)
	}
	logger.Debug("dbg")
	if !strings.Contains(buf.String(), "msg=dbg") {
		t.Fatalf("debug line missing in text output: %q", buf.String())
	}
	if _, err := New(&buf, "xml", false); err == nil {
		t.Fatal("unknown format accepted")
	}
	if Or(nil) == nil || Or(logger) != logger {
		t.Fatal("Or")
	}
}
