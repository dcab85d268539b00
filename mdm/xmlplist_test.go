package mdm_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
)

// The XML fast path (mdm/xmlplist.go) must decode exactly what
// github.com/micromdm/plist decodes, or leave the document to it. These
// tests decode the same documents both ways and compare.

// fastPathTargets make fresh values of the types the decoders fill, and
// of every kind of Go value the fast path knows.
var fastPathTargets = map[string]func() any{
	"CommandResults": func() any { return new(mdm.CommandResults) },
	"Command":        func() any { return new(mdm.Command) },
	"MessageType":    func() any { return new(mdm.MessageType) },
	"map":            func() any { return new(map[string]any) },
	"any":            func() any { return new(any) },
	"[]any":          func() any { return new([]any) },
	"kinds": func() any {
		return new(struct {
			Int8    int8
			Int     int
			Uint16  uint16
			Uint    uint
			Float32 float32
			Float64 float64
			Bool    bool
			Data    []byte
			Strings []string
			Ints    []int
			Date    time.Time
			Map     map[string]string
			Nested  struct{ Int int }
			Type    mdm.EnrollType
			Any     any
		})
	},
}

func init() {
	for _, mt := range mdm.MessageTypes {
		fastPathTargets[mt] = func() any { return reflect.New(checkinTypes[mt].Elem()).Interface() }
	}
}

// show prints what pointer v points to so that two decodings compare
// equal exactly when they hold the same values of the same types (NaN
// included, which reflect.DeepEqual never finds equal).
func show(v any) string {
	e := reflect.ValueOf(v).Elem()
	return fmt.Sprintf("%T %#v", e.Interface(), e.Interface())
}

// checkFastPath decodes raw into every target by the fast path and, where
// it decodes, checks that micromdm/plist decodes the same. It returns how
// many targets the fast path decoded.
func checkFastPath(t testing.TB, raw []byte) (decoded int) {
	t.Helper()
	checkDepthScan(t, raw)
	panics := mdm.FastPathPanics()
	defer func() {
		if mdm.FastPathPanics() != panics {
			t.Fatalf("the fast path panicked on %q", raw)
		}
	}()
	for name, target := range fastPathTargets {
		fast, want := target(), target()
		done, err := mdm.DecodeXMLFast(raw, fast)
		if err != nil {
			if !errors.Is(err, mdm.ErrXMLTooDeep) {
				t.Fatalf("%s: fast path error %v on %q", name, err, raw)
			}
			continue
		}
		if !done {
			if !reflect.ValueOf(fast).Elem().IsZero() {
				t.Fatalf("%s: fast path left %s after giving up on %q", name, show(fast), raw)
			}
			continue
		}
		decoded++
		if err := mdm.DecodeWithLibrary(raw, want); err != nil {
			t.Fatalf("%s: fast path decoded %q, micromdm/plist fails: %v", name, raw, err)
		}
		if got, want := show(fast), show(want); got != want {
			t.Fatalf("%s: decoding %q\nfast path:      %s\nmicromdm/plist: %s", name, raw, got, want)
		}
	}
	msg, done, err := mdm.DecodeCheckinFast(raw)
	switch {
	case err != nil:
		var pe *mdm.ParseError
		if !errors.As(err, &pe) {
			t.Fatalf("check-in fast path error %v is not a *mdm.ParseError", err)
		}
		if _, libErr := mdm.DecodeCheckinWithLibrary(raw); libErr == nil && !errors.Is(err, mdm.ErrXMLTooDeep) {
			t.Fatalf("check-in fast path fails (%v) where micromdm/plist decodes %q", err, raw)
		}
	case done:
		decoded++
		want, err := mdm.DecodeCheckinWithLibrary(raw)
		if err != nil {
			t.Fatalf("check-in fast path decoded %q, micromdm/plist fails: %v", raw, err)
		}
		if got, want := show(msg), show(want); got != want {
			t.Fatalf("check-in: decoding %q\nfast path:      %s\nmicromdm/plist: %s", raw, got, want)
		}
	}
	return decoded
}

// TestXMLFastPathSchemas checks the fast path on every message and
// command synthesised from Apple's schemas, as micromdm/plist (and so
// test/device) writes them: it must decode all of them, as micromdm/plist
// does.
func TestXMLFastPathSchemas(t *testing.T) {
	var docs [][]byte
	for _, c := range checkinCases(t) {
		docs = append(docs, c.Raw)
	}
	for _, c := range reportCases(t) {
		docs = append(docs, c.Raw)
	}
	for _, c := range commandCases(t) {
		docs = append(docs, c.Raw)
	}
	n := 0
	for _, raw := range docs {
		if bytes.HasPrefix(raw, []byte("bplist")) {
			continue
		}
		n++
		if checkFastPath(t, raw) == 0 {
			t.Errorf("fast path decoded none of the targets from %q", raw)
		}
		if ok, err := mdm.DecodeXMLFast(raw, new(any)); !ok || err != nil {
			t.Errorf("fast path left %q to micromdm/plist", raw)
		}
	}
	if n == 0 {
		t.Fatal("no XML documents")
	}
}

func doc(body string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
` + body + `
</plist>
`)
}

// xmlEdgeCases are documents at the edges of what the fast path handles;
// fast says whether it decodes them into an interface{} (else it leaves
// them to micromdm/plist).
var xmlEdgeCases = []struct {
	name string
	raw  []byte
	fast bool
}{
	{"canonical", doc(`<dict><key>Status</key><string>Idle</string><key>UDID</key><string>X</string></dict>`), true},
	{"no prologue", []byte(`<plist><dict><key>Status</key><string>Idle</string></dict></plist>`), true},
	{"root without plist", []byte(`<dict><key>Status</key><string>Idle</string></dict>`), true},
	{"trailing garbage", append(doc(`<string>x</string>`), "<<garbage"...), true},
	{"tabs and newlines", doc("<dict>\n\t<key>Status</key>\n\t<string>Idle</string>\n</dict>"), true},
	{"predefined entities", doc(`<dict><key>a&amp;b</key><string>&lt;&gt;&amp;&apos;&quot;</string></dict>`), true},
	{"character references", doc(`<string>&#39;&#x41;&#xa;&#9;&#X41;</string>`), false},
	{"decimal and hex references", doc(`<string>&#39;&#x41;&#xa;&#9;&#128512;</string>`), true},
	{"reference to NUL", doc(`<string>&#0;</string>`), false},
	{"reference to a surrogate", doc(`<string>&#xD800;</string>`), false},
	{"reference past Unicode", doc(`<string>&#x110000;</string>`), false},
	{"unknown entity", doc(`<string>&nbsp;</string>`), false},
	{"carriage return", doc("<string>a\r\nb</string>"), false},
	{"comment", doc(`<!-- hi --><string>x</string>`), false},
	{"CDATA", doc(`<string><![CDATA[x]]></string>`), false},
	{"]]> in text", doc(`<string>a]]>b</string>`), false},
	{"processing instruction", []byte(`<?xml version="1.0"?><plist><string>x</string></plist>`), false},
	{"attribute", doc(`<string a="b">x</string>`), false},
	{"space in tag", doc(`<string >x</string >`), false},
	{"repeated keys", doc(`<dict><key>Status</key><string>Idle</string><key>Status</key><string>NotNow</string></dict>`), true},
	{"key after key", doc(`<dict><key>Status</key><key>UDID</key><string>X</string></dict>`), false},
	{"key without value", doc(`<dict><key>Status</key></dict>`), false},
	{"value without key", doc(`<dict><string>x</string></dict>`), false},
	{"empty elements", doc(`<dict><key/><string/><key>d</key><data/><key>a</key><array/><key>m</key><dict/></dict>`), true},
	{"empty pairs", doc(`<dict><key></key><string></string><key>d</key><data></data><key>a</key><array></array></dict>`), true},
	{"data with white space", doc("<data>\n\tAAEC\n\tAw==\n</data>"), true},
	{"data of white space", doc(`<data> </data>`), true},
	{"bad data", doc(`<data>!!</data>`), false},
	{"integers", doc(`<array><integer> 42 </integer><integer>-0</integer><integer>18446744073709551615</integer><integer>-9223372036854775808</integer></array>`), true},
	{"integer too large", doc(`<integer>18446744073709551616</integer>`), false},
	{"integer too small", doc(`<integer>-9223372036854775809</integer>`), false},
	{"integer with plus", doc(`<integer>+1</integer>`), false},
	{"empty integer", doc(`<integer/>`), false},
	{"reals", doc(`<array><real>0.5</real><real></real><real> 1e3 </real><real>NaN</real><real>-Inf</real><real>0x1p-2</real></array>`), true},
	{"bad real", doc(`<real>half</real>`), false},
	{"dates", doc(`<array><date>2024-05-06T07:08:09Z</date><date>2024-05-06T07:08:09+02:00</date></array>`), true},
	{"bad date", doc(`<date>yesterday</date>`), false},
	{"booleans", doc(`<array><true/><false/><true></true><false></false></array>`), true},
	{"boolean with text", doc(`<true>yes</true>`), false},
	{"unicode", doc(`<string>Jürgen’s iPad 😀</string>`), true},
	{"invalid UTF-8", doc("<string>\xff</string>"), false},
	{"control character", doc("<string>\x01</string>"), false},
	{"unknown element", doc(`<foo/>`), false},
	{"empty plist", []byte(`<plist></plist>`), false},
	{"two values", doc(`<string>a</string><string>b</string>`), false},
	{"nested", doc(`<dict><key>ErrorChain</key><array><dict><key>ErrorCode</key><integer>-1</integer></dict></array></dict>`), true},
	{"not a plist", []byte("garbage"), false},
	{"empty", nil, false},
}

func TestXMLFastPathEdgeCases(t *testing.T) {
	for _, tc := range xmlEdgeCases {
		t.Run(tc.name, func(t *testing.T) {
			checkFastPath(t, tc.raw)
			done, err := mdm.DecodeXMLFast(tc.raw, new(any))
			if err != nil {
				t.Fatal(err)
			}
			if done != tc.fast {
				t.Fatalf("fast path decoded: %v, want %v", done, tc.fast)
			}
		})
	}
}

// TestXMLDepth checks the nesting limit of XML plists: deep enough for any
// real message, refusing a pathological one (which micromdm/plist's
// recursive decoder would take seconds and hundreds of MiB of stack for).
func TestXMLDepth(t *testing.T) {
	nested := func(depth int) []byte {
		// depth counts the plist element, as the limit does.
		return []byte("<plist>" + strings.Repeat("<array>", depth-1) + strings.Repeat("</array>", depth-1) + "</plist>")
	}
	if _, err := mdm.DecodeCommandResults(nested(mdm.PlistMaxDepth)); errors.Is(err, mdm.ErrXMLTooDeep) {
		t.Errorf("%d levels refused: %v", mdm.PlistMaxDepth, err)
	}
	// Too deep for the fast path, and for micromdm/plist when the fast
	// path leaves a document to it (here for its comment).
	tooDeep := nested(mdm.PlistMaxDepth + 1)
	withComment := append([]byte("<!-- <<< -->"), tooDeep...)
	for name, decode := range map[string]func([]byte) error{
		"DecodeCheckin":        func(b []byte) error { _, err := mdm.DecodeCheckin(b); return err },
		"DecodeCommandResults": func(b []byte) error { _, err := mdm.DecodeCommandResults(b); return err },
		"DecodeCommand":        func(b []byte) error { _, err := mdm.DecodeCommand(b); return err },
	} {
		for _, raw := range [][]byte{tooDeep, withComment} {
			err := decode(raw)
			var pe *mdm.ParseError
			if !errors.As(err, &pe) || !errors.Is(err, mdm.ErrXMLTooDeep) {
				t.Errorf("%s: error %v, want a *mdm.ParseError for nesting too deep", name, err)
			}
		}
	}
	if err := mdm.DecodeWithLibrary(append([]byte("<!-- -->"), nested(mdm.PlistMaxDepth)...), new(any)); err != nil {
		t.Errorf("%d levels refused: %v", mdm.PlistMaxDepth, err)
	}
}

// TestXMLTooDeepScan checks the lexical depth scan on the markup it must
// not count as elements.
func TestXMLTooDeepScan(t *testing.T) {
	const max = 3
	for _, tc := range []struct {
		name string
		doc  string
		deep bool
	}{
		{"at the limit", "<a><b><c>x</c></b></a>", false},
		{"over the limit", "<a><b><c><d/></c></b></a>", true},
		{"over the limit, open", "<a><b><c><d></d></c></b></a>", true},
		{"siblings", "<a><b></b><b></b><b><c></c></b></a>", false},
		{"comment", "<a><b><!-- <c><d><e> --></b></a>", false},
		{"CDATA", "<a><b><![CDATA[<c><d><e>]]></b></a>", false},
		{"processing instruction", "<?xml version=\"1.0\"?><a><b><?pi <c><d><e> ?></b></a>", false},
		{"declaration", "<!DOCTYPE plist PUBLIC \"x\" \"y\"><a><b><c></c></b></a>", false},
		{"internal subset", "<!DOCTYPE a [<!ENTITY e \"<c><d>\">]><a><b><c></c></b></a>", false},
		{"quoted >", "<a x='>'><b y=\">\"><c><d></d></c></b></a>", true},
		{"unterminated comment", "<a><b><c><!-- <d>", false},
		// encoding/xml ends a directive at the first '>' outside quotes,
		// comments and balanced '<' '>': a '[' means nothing to it.
		{"internal subset without ]>", "<!DOCTYPE a [><a><b><c><d/></c></b></a>", true},
		{"]> after the root", "<!DOCTYPE a [><a><b><c><d/></c></b></a>]>", true},
		{"quoted [ in a declaration", "<!DOCTYPE a \"[\"><a><b><c><d/></c></b></a>", true},
		{"quoted > in an open subset", "<!DOCTYPE a [<!ENTITY e \">\"> ><a><b><c><d/></c></b></a>", true},
		{"comment hiding [ in a declaration", "<!DOCTYPE a <!-- [ --> ><a><b><c><d/></c></b></a>", true},
		{"comment hiding ]> in a subset", "<!DOCTYPE a [<!-- ]> -->]><a><b><c></c></b></a>", false},
		{"quoted ]> in a subset", "<!DOCTYPE a [<!ENTITY e \"]>\">]><a><b><c></c></b></a>", false},
		{"markup in a subset", "<!DOCTYPE a [<!ELEMENT a ANY><!ATTLIST a b CDATA \"<x><y>\">]><a><b><c></c></b></a>", false},
		{"<!--> opens a comment", "<a><!--><b><c><d></d></c></b> --></a>", false},
		{"CDATA hiding <!DOCTYPE", "<a><![CDATA[<!DOCTYPE [ ]]><b><c><d/></c></b></a>", true},
		{"processing instruction hiding <!DOCTYPE", "<?pi <!DOCTYPE [ ?><a><b><c><d/></c></b></a>", true},
		// micromdm/plist reads the root element and stops.
		{"deep after the root", "<a></a><b><c><d><e></e></d></c></b>", false},
		{"deep after a syntax error", "<a><b></a><c><d><e></e></d></c>", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mdm.XMLTooDeep([]byte(tc.doc), max); got != tc.deep {
				t.Fatalf("too deep: %v, want %v", got, tc.deep)
			}
		})
	}
}

// FuzzXMLFastPath checks, for any document, that the fast path decodes
// exactly what micromdm/plist decodes, or leaves it alone, and that the
// depth scan sees at least the nesting micromdm/plist decodes.
func FuzzXMLFastPath(f *testing.F) {
	for _, c := range checkinCases(f) {
		f.Add(c.Raw)
	}
	for _, c := range reportCases(f) {
		f.Add(c.Raw)
	}
	for _, tc := range xmlEdgeCases {
		f.Add(tc.raw)
	}
	for _, seed := range directiveSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkFastPath(t, raw)
	})
}

// randomPlist writes a random document for TestXMLFastPathRandom: plist
// structure with the keys the test targets have (and some repeated), and
// text of every form the fast path reads, or leaves alone.
func randomPlist(r *rand.Rand) []byte {
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	texts := map[string][]string{
		"string":  {"", "Idle", "a b", " ", "\t", "\n", "&amp;", "&lt;x&gt;", "&apos;&quot;", "&#39;", "&#x41;", "&#128512;", "é", "😀", "]]", ">", "&#0;", "\r", "<!--c-->", "\xff", "TokenUpdate", "Acknowledged"},
		"integer": {"42", " 42 ", "-0", "007", "18446744073709551615", "-9223372036854775808", "-1", "", "+1", "0x10", "1e3", "\n-5\t"},
		"real":    {"0.5", "", " 1 ", "NaN", "inf", "1e400", "-0", "0x1p-2", "1_000", "x"},
		"date":    {"2024-05-06T07:08:09Z", "2024-05-06T07:08:09+02:00", "2024-05-06T07:08:09.5Z", "2024-05-06", ""},
		"data":    {"", " ", "AAEC", "AA EC\n", "!!", "AAE=", "AAECAw==", "AAECAw"},
	}
	keys := []string{"Status", "UDID", "CommandUUID", "MessageType", "ErrorChain", "ErrorCode", "Token", "Int8", "Int",
		"Uint16", "Uint", "Float32", "Float64", "Bool", "Data", "Strings", "Ints", "Date", "Map", "Nested", "Type", "Any",
		"TokenParameters", "Command", "RequestType", "a&amp;b", ""}
	space := func() string { return pick([]string{"", "", " ", "\n\t"}) }
	var b strings.Builder
	var value func(depth int)
	value = func(depth int) {
		kinds := []string{"string", "integer", "real", "date", "data", "true", "false", "string"}
		if depth < 4 {
			kinds = append(kinds, "dict", "dict", "dict", "array")
		}
		kind := pick(kinds)
		switch kind {
		case "dict", "array":
			n := r.IntN(5)
			if n == 0 && r.IntN(2) == 0 {
				b.WriteString("<" + kind + "/>")
				return
			}
			b.WriteString("<" + kind + ">")
			for range n {
				b.WriteString(space())
				if kind == "dict" {
					key := pick(keys)
					if key == "MessageType" || key == "Status" {
						b.WriteString("<key>" + key + "</key>" + space())
						b.WriteString("<string>" + pick(append(mdm.MessageTypes, "Bogus", "Idle")) + "</string>")
						continue
					}
					b.WriteString("<key>" + key + "</key>" + space())
				}
				value(depth + 1)
			}
			b.WriteString(space() + "</" + kind + ">")
		case "true", "false":
			b.WriteString(pick([]string{"<" + kind + "/>", "<" + kind + "></" + kind + ">"}))
		default:
			text := pick(texts[kind])
			if text == "" && r.IntN(2) == 0 {
				b.WriteString("<" + kind + "/>")
				return
			}
			b.WriteString("<" + kind + ">" + text + "</" + kind + ">")
		}
	}
	switch r.IntN(8) {
	case 0, 1:
	case 2: // markup the depth scan must see through
		b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" + xmlDirectives[r.IntN(len(xmlDirectives))].before + "\n")
	default:
		b.WriteString(xmlHeader)
	}
	b.WriteString("<plist version=\"1.0\">" + space())
	value(0)
	b.WriteString(space() + "</plist>\n")
	return []byte(b.String())
}

const xmlHeader = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"

// TestXMLFastPathRandom compares the fast path with micromdm/plist on
// random documents: many more shapes than the fuzzer finds from bytes.
func TestXMLFastPathRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	decoded := 0
	for range n {
		if checkFastPath(t, randomPlist(r)) > 0 {
			decoded++
		}
	}
	// Most documents are ones the fast path reads for some target.
	if decoded < n/4 {
		t.Fatalf("fast path decoded only %d of %d documents", decoded, n)
	}
	t.Logf("fast path decoded %d of %d documents for at least one target", decoded, n)
}
