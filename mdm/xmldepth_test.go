package mdm_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/mdm"
)

// The depth limit of XML plists must hold whatever markup comes before or
// inside the document: micromdm/plist decodes through encoding/xml, whose
// recursive use there costs stack for every level, so the depth it sees is
// the depth that must be bounded. These tests put nesting behind markup
// that encoding/xml ends in its own way (directives, comments, CDATA
// sections, processing instructions).

// xmlDirective is markup around a command report: before goes between the
// XML declaration and the plist element, inside into its dictionary (as a
// value of its own key where it is an element's content), after behind the
// plist element.
type xmlDirective struct {
	name                  string
	before, inside, after string
}

// xmlDirectives are the markup the depth tests and fuzzers put around a
// report. Those marked as bombs hid the nesting from the scan that
// bounded micromdm/plist's depth before it followed encoding/xml.
var xmlDirectives = []xmlDirective{
	{name: "Apple's DOCTYPE", before: `<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">`},
	{name: "no DOCTYPE"},
	// bomb: encoding/xml ends the directive at its first '>'.
	{name: "internal subset without ]>", before: `<!DOCTYPE plist [>`},
	// bomb: a scan for "]>" skips the whole plist.
	{name: "]> behind the plist", before: `<!DOCTYPE plist [>`, after: `]>`},
	// bomb: a '[' in quotes opens no subset.
	{name: "quoted [", before: `<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "[">`},
	// bomb: quoted '>' and markup declarations in a subset never closed.
	{name: "quoted > in an open subset", before: `<!DOCTYPE plist [<!ENTITY e ">"> >`},
	{name: "apostrophe-quoted > then [", before: `<!DOCTYPE plist '>' [>`},
	// bomb: a '[' in a comment inside the directive.
	{name: "comment hiding [ in the DOCTYPE", before: `<!DOCTYPE plist <!-- [ --> >`},
	{name: "comment hiding ]> in the subset", before: `<!DOCTYPE plist [<!-- ]> -->]>`},
	{name: "quoted ]> in the subset", before: `<!DOCTYPE plist [<!ENTITY e "]>">]>`},
	// bomb: markup declarations with balanced brackets, no ']'.
	{name: "markup declarations without ]", before: `<!DOCTYPE plist [<!ELEMENT plist ANY><!ATTLIST plist version CDATA "1.0">>`},
	{name: "closed internal subset", before: `<!DOCTYPE plist [<!ELEMENT plist ANY><!ENTITY e "<x><y>">]>`},
	{name: "comment before the DOCTYPE", before: `<!-- <!DOCTYPE [ --><!DOCTYPE plist [>`},
	{name: "<!--> comment", before: `<!--> [ <!DOCTYPE -->`},
	{name: "comment in the dictionary", inside: `<!-- <!DOCTYPE plist [ -->`},
	{name: "processing instruction", before: `<?pi <!DOCTYPE plist [ ?>`},
	{name: "processing instruction with ? and >", before: `<?pi a?b > [ ?><!DOCTYPE plist [>`},
	{name: "CDATA in a string", inside: `<key>Note</key><string><![CDATA[<!DOCTYPE plist [ ]]></string>`},
	{name: "CDATA with ]> in a string", inside: `<key>Note</key><string><![CDATA[ ]> <!-- ]]></string>`},
}

// nestedReport is an Idle report with arrays nested under key X so that
// the document's elements nest depth deep (the plist element and the
// report's dictionary count), with d's markup around it.
func nestedReport(d xmlDirective, depth int) []byte {
	levels := depth - 2
	var b bytes.Buffer
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
	b.WriteString(d.before)
	b.WriteString("\n<plist version=\"1.0\">\n<dict>")
	b.WriteString(d.inside)
	b.WriteString("<key>Status</key><string>Idle</string><key>UDID</key><string>" + testUDID + "</string>")
	if levels > 0 {
		b.WriteString("<key>X</key>")
		b.WriteString(strings.Repeat("<array>", levels))
		b.WriteString(strings.Repeat("</array>", levels))
	}
	b.WriteString("</dict>\n</plist>\n")
	b.WriteString(d.after)
	return b.Bytes()
}

// directiveSeeds are the fuzzers' seeds for markup: every directive around
// a small report, and around one nested one level too deep.
func directiveSeeds() [][]byte {
	var seeds [][]byte
	for _, d := range xmlDirectives {
		seeds = append(seeds, nestedReport(d, 4), nestedReport(d, mdm.PlistMaxDepth+1))
	}
	return seeds
}

// plistDepth returns how deep a value micromdm/plist decoded into an
// interface{} nests: 1 for a scalar or an empty container.
func plistDepth(v any) int {
	depth := 0
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			depth = max(depth, plistDepth(e))
		}
	case map[string]any:
		for _, e := range v {
			depth = max(depth, plistDepth(e))
		}
	}
	return depth + 1
}

// checkDepthScan checks the depth scan against both decoders: a value
// micromdm/plist decodes d deep comes from elements at least d deep, so
// the scan must find raw deeper than d-1; and the fast path refuses
// exactly what the scan finds too deep among the documents it reads.
func checkDepthScan(t testing.TB, raw []byte) {
	t.Helper()
	if bytes.HasPrefix(raw, []byte("bplist0")) {
		return
	}
	var v any
	if err := mdm.DecodeWithLibrary(raw, &v); err == nil {
		if d := plistDepth(v); !mdm.XMLTooDeep(raw, d-1) {
			t.Fatalf("micromdm/plist decodes %d levels, the scan finds no more than %d in %q", d, d-1, clip(raw))
		}
	}
	deep := mdm.XMLTooDeep(raw, mdm.PlistMaxDepth)
	switch done, err := mdm.DecodeXMLFast(raw, new(any)); {
	case errors.Is(err, mdm.ErrXMLTooDeep) && !deep:
		t.Fatalf("the fast path finds %q too deep, the scan does not", clip(raw))
	case done && deep:
		t.Fatalf("the fast path decodes %q, the scan finds it too deep", clip(raw))
	}
}

// clip shortens a document for a failure message.
func clip(raw []byte) []byte {
	if len(raw) > 400 {
		return append(raw[:400:400], "..."...)
	}
	return raw
}

// TestXMLDirectiveDepth sends every directive around a report nested to
// the limit, which every decoder reads, and one level deeper, which every
// decoder refuses as too deep, quickly.
func TestXMLDirectiveDepth(t *testing.T) {
	decoders := map[string]func([]byte) error{
		"DecodeCheckin":        func(b []byte) error { _, err := mdm.DecodeCheckin(b); return err },
		"DecodeCommandResults": func(b []byte) error { _, err := mdm.DecodeCommandResults(b); return err },
		"DecodeCommand":        func(b []byte) error { _, err := mdm.DecodeCommand(b); return err },
		"micromdm/plist":       func(b []byte) error { return mdm.DecodeWithLibrary(b, new(any)) },
	}
	for _, d := range xmlDirectives {
		t.Run(d.name, func(t *testing.T) {
			atLimit := nestedReport(d, mdm.PlistMaxDepth)
			report, err := mdm.DecodeCommandResults(atLimit)
			if err != nil {
				t.Fatalf("%d levels: %v", mdm.PlistMaxDepth, err)
			}
			if report.Status != mdm.StatusIdle || report.UDID != testUDID {
				t.Fatalf("%d levels: decoded %+v", mdm.PlistMaxDepth, report)
			}
			var v any
			if err := mdm.DecodeWithLibrary(atLimit, &v); err != nil {
				t.Fatalf("%d levels with micromdm/plist: %v", mdm.PlistMaxDepth, err)
			}
			if got := plistDepth(v); got != mdm.PlistMaxDepth-1 { // all but the plist element
				t.Fatalf("micromdm/plist decoded %d levels, want %d", got, mdm.PlistMaxDepth-1)
			}
			tooDeep := nestedReport(d, mdm.PlistMaxDepth+1)
			if !mdm.XMLTooDeep(tooDeep, mdm.PlistMaxDepth) {
				t.Error("the scan does not find it too deep")
			}
			for name, decode := range decoders {
				err := decode(tooDeep)
				if !errors.Is(err, mdm.ErrXMLTooDeep) {
					t.Errorf("%s: error %v, want nesting too deep", name, err)
				}
				var pe *mdm.ParseError
				if err != nil && name != "micromdm/plist" && !errors.As(err, &pe) {
					t.Errorf("%s: error %v is not a *mdm.ParseError", name, err)
				}
			}
		})
	}
}

// TestXMLDirectiveBombSize decodes a directive bomb of a few MiB, the size
// that used to cost hundreds of MiB of stack, and an unclosed one: both
// are refused as too deep.
func TestXMLDirectiveBombSize(t *testing.T) {
	const size = 4 << 20
	head := "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist [>\n<plist version=\"1.0\">"
	levels := (size - len(head)) / len("<array></array>")
	closed := head + strings.Repeat("<array>", levels) + strings.Repeat("</array>", levels) + "</plist>"
	open := head + strings.Repeat("<array>", size/len("<array>"))
	for name, raw := range map[string]string{"closed": closed, "open": open} {
		t.Run(name, func(t *testing.T) {
			if _, err := mdm.DecodeCommandResults([]byte(raw)); !errors.Is(err, mdm.ErrXMLTooDeep) {
				t.Errorf("DecodeCommandResults: error %v, want nesting too deep", err)
			}
			if _, err := mdm.DecodeCheckin([]byte(raw)); !errors.Is(err, mdm.ErrXMLTooDeep) {
				t.Errorf("DecodeCheckin: error %v, want nesting too deep", err)
			}
		})
	}
}

// TestXMLDoctypes checks that reports with the DOCTYPEs plist writers put
// decode, on the fast path (Apple's header as written) and through
// micromdm/plist (the same header with CRLF line ends, or other forms).
func TestXMLDoctypes(t *testing.T) {
	const body = "<plist version=\"1.0\">\n<dict>\n\t<key>Status</key>\n\t<string>Idle</string>\n\t<key>UDID</key>\n\t<string>" + testUDID + "</string>\n</dict>\n</plist>\n"
	const decl = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	const apple = `<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">`
	for _, tc := range []struct {
		name string
		raw  string
		fast bool
	}{
		{"Apple's header", decl + apple + "\n" + body, true},
		{"Apple's header, CRLF", strings.ReplaceAll(decl+apple+"\n"+body, "\n", "\r\n"), false},
		{"Apple's DOCTYPE only", apple + "\n" + body, true},
		{"lower-case encoding", "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n" + apple + "\n" + body, false},
		{"SYSTEM identifier", decl + `<!DOCTYPE plist SYSTEM "file://localhost/System/Library/DTDs/PropertyList.dtd">` + "\n" + body, false},
		{"internal subset", decl + `<!DOCTYPE plist [<!ENTITY udid "` + testUDID + `">]>` + "\n" + body, false},
		{"DOCTYPE with a comment", decl + `<!DOCTYPE plist <!-- Apple's --> PUBLIC "-//Apple//DTD PLIST 1.0//EN" "x">` + "\n" + body, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.raw)
			report, err := mdm.DecodeCommandResults(raw)
			if err != nil {
				t.Fatal(err)
			}
			if report.Status != mdm.StatusIdle || report.UDID != testUDID {
				t.Fatalf("decoded %+v", report)
			}
			if done, err := mdm.DecodeXMLFast(raw, new(mdm.CommandResults)); done != tc.fast || err != nil {
				t.Errorf("fast path: %v %v, want %v", done, err, tc.fast)
			}
			if mdm.XMLTooDeep(raw, 3) {
				t.Error("the scan finds it deeper than 3")
			}
			checkFastPath(t, raw)
		})
	}
}
