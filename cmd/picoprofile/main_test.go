package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/micromdm/plist"
)

// TestRun checks that the flags reach the profile and that mistakes are
// refused with a non-zero status.
func TestRun(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{
		"-server-url", "https://mdm.example.com/mdm", "-topic", "com.apple.mgmt.External.1",
		"-scep-url", "https://mdm.example.com/scep", "-scep-challenge", "secret", "-org", "Example",
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var p struct {
		PayloadOrganization string
		PayloadContent      []map[string]any
	}
	if err := plist.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if p.PayloadOrganization != "Example" || len(p.PayloadContent) != 2 {
		t.Errorf("profile = %+v", p)
	}

	file := filepath.Join(t.TempDir(), "enroll.mobileconfig")
	if code := run([]string{"-server-url", "https://a.example/mdm", "-topic", "t", "-scep-url", "https://a.example/scep", "-o", file}, &out, &errOut); code != 0 {
		t.Fatalf("-o: exit %d: %s", code, errOut.String())
	}
	if b, err := os.ReadFile(file); err != nil || !strings.Contains(string(b), "com.apple.mdm") {
		t.Errorf("-o file: %v", err)
	}

	for name, args := range map[string][]string{
		"no topic":        {"-server-url", "https://a.example/mdm", "-scep-url", "https://a.example/scep"},
		"no identity":     {"-server-url", "https://a.example/mdm", "-topic", "t"},
		"sign-cert alone": {"-server-url", "https://a.example/mdm", "-topic", "t", "-scep-url", "https://a.example/scep", "-sign-cert", "x.pem"},
		"extra argument":  {"-server-url", "https://a.example/mdm", "-topic", "t", "-scep-url", "https://a.example/scep", "extra"},
	} {
		errOut.Reset()
		if code := run(args, &out, &errOut); code == 0 {
			t.Errorf("%s: exit 0", name)
		}
	}
}
