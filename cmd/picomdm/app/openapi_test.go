package app

import (
	"flag"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// openAPIPath is docs/openapi.yaml, relative to this package.
var openAPIPath = filepath.Join("..", "..", "..", "docs", "openapi.yaml")

// routeExtension names the path-item extension giving the http.ServeMux
// pattern an OpenAPI path corresponds to.
const routeExtension = "x-picomdm-route"

// testEnrollProfile is a minimal enrollment profile for -enroll-profile.
const testEnrollProfile = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>PayloadContent</key>
	<array>
		<dict>
			<key>AccessRights</key><integer>8191</integer>
			<key>CheckInURL</key><string>https://mdm.example.com/mdm</string>
			<key>CheckOutWhenRemoved</key><true/>
			<key>IdentityCertificateUUID</key><string>2A9E2A5F-9D7B-4F5E-9A55-3C1C4D3E2B10</string>
			<key>PayloadIdentifier</key><string>com.example.mdm.mdm</string>
			<key>PayloadType</key><string>com.apple.mdm</string>
			<key>PayloadUUID</key><string>6E1D2C3B-4A59-4F68-8E7D-1C2B3A495867</string>
			<key>PayloadVersion</key><integer>1</integer>
			<key>ServerURL</key><string>https://mdm.example.com/mdm</string>
			<key>SignMessage</key><true/>
			<key>Topic</key><string>com.apple.mgmt.External.00000000-0000-0000-0000-000000000000</string>
		</dict>
	</array>
	<key>PayloadDisplayName</key><string>Test enrollment</string>
	<key>PayloadIdentifier</key><string>com.example.mdm</string>
	<key>PayloadType</key><string>Configuration</string>
	<key>PayloadUUID</key><string>0F1E2D3C-4B5A-4968-8776-655443322110</string>
	<key>PayloadVersion</key><integer>1</integer>
</dict>
</plist>
`

// documentedRoutes returns, for every path of the OpenAPI document at
// path, the ServeMux pattern its x-picomdm-route names, keyed by pattern
// (the values list the OpenAPI paths documenting it).
func documentedRoutes(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the OpenAPI document: %v", err)
	}
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s does not parse as YAML: %v", path, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("%s: openapi is %q, want 3.x", path, doc.OpenAPI)
	}
	if len(doc.Paths) == 0 {
		t.Fatalf("%s documents no paths", path)
	}
	routes := make(map[string][]string)
	for p, item := range doc.Paths {
		route, ok := item[routeExtension].(string)
		if !ok || route == "" {
			t.Errorf("%s: path %q has no %s string", path, p, routeExtension)
			continue
		}
		routes[route] = append(routes[route], p)
	}
	return routes
}

// allRoutesArgs returns picomdm flags that turn on every route. A route
// switched on by a flag that does not exist yet shows up below as
// documented but not registered, rather than as a flag error.
func allRoutesArgs(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	profile := filepath.Join(dir, "enroll.mobileconfig")
	if err := os.WriteFile(profile, []byte(testEnrollProfile), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"-storage", "file", "-storage-dsn", filepath.Join(dir, "db"),
		"-dev",                 // throw-away device CA under the storage directory: /mdm
		"-api", "test-api-key", // /v1/…
		"-checkin",                              // /checkin
		"-migration",                            // /migration
		"-auth-proxy-url", "http://127.0.0.1:1", // /authproxy/
		"-enroll-profile", profile, // /mdm/enroll
		"-webhook-url", "http://127.0.0.1:1/webhook",
	}
	// A boolean -metrics switch, should /metrics not be on by default.
	newFlagSet(new(Config), io.Discard).VisitAll(func(f *flag.Flag) {
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() && f.Name == "metrics" {
			args = append(args, "-metrics")
		}
	})
	return args
}

// TestOpenAPIDocumentsEveryRoute checks docs/openapi.yaml against the
// routes a server with every feature on registers: each registered
// ServeMux pattern is some path's x-picomdm-route, and each documented
// x-picomdm-route is registered.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	documented := documentedRoutes(t, openAPIPath)

	args := allRoutesArgs(t)
	a, err := New(args, func(string) string { return "" }, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("New(%q): %v", args, err)
	}
	t.Cleanup(func() { a.Close() })

	registered := make(map[string]bool)
	for _, r := range a.Routes() {
		registered[r] = true
	}

	var undocumented, unregistered []string
	for r := range registered {
		if _, ok := documented[r]; !ok {
			undocumented = append(undocumented, r)
		}
	}
	for r, paths := range documented {
		if !registered[r] {
			sort.Strings(paths)
			unregistered = append(unregistered, r+" (documented as "+strings.Join(paths, ", ")+")")
		}
	}
	sort.Strings(undocumented)
	sort.Strings(unregistered)
	if len(undocumented) > 0 {
		t.Errorf("registered but not documented in %s (add a path with %s: <pattern>):\n\t%s",
			openAPIPath, routeExtension, strings.Join(undocumented, "\n\t"))
	}
	if len(unregistered) > 0 {
		t.Errorf("documented in %s but not registered by New(%q):\n\t%s",
			openAPIPath, args, strings.Join(unregistered, "\n\t"))
	}
	if t.Failed() {
		reg := slices.Sorted(maps.Keys(registered))
		t.Logf("registered routes: %s", strings.Join(reg, " "))
	}
}
