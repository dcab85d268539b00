package backends

import (
	"path/filepath"
	"testing"
)

func TestParseOptions(t *testing.T) {
	got, err := ParseOptions("delete=1, retention=24h")
	if err != nil || got["delete"] != "1" || got["retention"] != "24h" {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"novalue", "=1", "a=1,,b=2"} {
		if _, err := ParseOptions(bad); err == nil {
			t.Errorf("ParseOptions(%q) accepted", bad)
		}
	}
}

func TestOpen(t *testing.T) {
	s, closeFn, err := Open("file", filepath.Join(t.TempDir(), "db"), "")
	if err != nil || s == nil || closeFn == nil {
		t.Fatalf("file: %v", err)
	}
	if err := closeFn(); err != nil {
		t.Fatal(err)
	}
	if s, _, err := Open("inmem", "", ""); err != nil || s == nil {
		t.Fatalf("inmem: %v", err)
	}
	if _, _, err := Open("nosuch", "", ""); err == nil {
		t.Fatal("unknown backend opened")
	}
	if _, _, err := Open("file", t.TempDir(), "delete=1"); err == nil {
		t.Fatal("file with options opened")
	}
}
