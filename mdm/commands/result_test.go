package commands_test

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm/commands"
)

// resultXML is a command report with every plist type, nested.
const resultXML = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>CommandUUID</key><string>0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F0</string>
	<key>Status</key><string>Acknowledged</string>
	<key>UDID</key><string>UDID-1</string>
	<key>QueryResponses</key>
	<dict>
		<key>DeviceName</key><string>Ann &lt;&amp;&gt; é</string>
		<key>LastCloudBackupDate</key><date>2026-01-02T15:04:05Z</date>
		<key>Attestation</key><data>AAH/
		+g==</data>
		<key>BatteryLevel</key><real>0.5</real>
		<key>IsSupervised</key><true/>
		<key>IsRoaming</key><false/>
		<key>Capacity</key><integer>18446744073709551615</integer>
		<key>Offset</key><integer>-9223372036854775808</integer>
		<key>Odd</key><array><real>nan</real><real>inf</real><real>-inf</real></array>
		<key>Nested</key>
		<array>
			<array><integer>1</integer><array/><dict/></array>
			<dict><key>When</key><date>1999-12-31T23:59:59Z</date><key>Blob</key><data></data></dict>
		</array>
	</dict>
</dict>
</plist>
`

// resultJSON is resultXML as ResultJSON converts it.
const resultJSON = `{"CommandUUID":"0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F0",` +
	`"QueryResponses":{"Attestation":"AAH/+g==","BatteryLevel":0.5,"Capacity":18446744073709551615,` +
	`"DeviceName":"Ann \u003c\u0026\u003e é","IsRoaming":false,"IsSupervised":true,"LastCloudBackupDate":"2026-01-02T15:04:05Z",` +
	`"Nested":[[1,[],{}],{"Blob":"","When":"1999-12-31T23:59:59Z"}],"Odd":["nan","inf","-inf"],"Offset":-9223372036854775808},` +
	`"Status":"Acknowledged","UDID":"UDID-1"}`

// TestResultJSON converts an XML result with data, dates and nested
// arrays.
func TestResultJSON(t *testing.T) {
	got, err := commands.ResultJSON([]byte(resultXML))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != resultJSON {
		t.Errorf("got\n%s\nwant\n%s", got, resultJSON)
	}
}

// TestResultJSONBinary converts a binary result: the same kinds of value,
// plus what only binary plists carry (a fraction of a second).
func TestResultJSONBinary(t *testing.T) {
	when := time.Date(2026, 1, 2, 15, 4, 5, 500_000_000, time.UTC)
	raw := encodeBplist(t, dict(
		"CommandUUID", "U", "Status", "Acknowledged",
		"When", when,
		"Blob", []byte{0, 1, 0xff},
		"Long", 0.1,
		"Count", int64(-7),
		"Yes", true,
		"List", []any{[]any{"a", int64(1)}, dict("Deep", []any{false})},
	))
	got, err := commands.ResultJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"Blob":"AAH/","CommandUUID":"U","Count":-7,"List":[["a",1],{"Deep":[false]}],` +
		`"Long":0.1,"Status":"Acknowledged","When":"2026-01-02T15:04:05.5Z","Yes":true}`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestResultJSONRefuses feeds ResultJSON what a hostile device could
// send. The cyclic and the exponential binary plists would crash the
// process (a stack overflow, an out-of-memory) if decoded unchecked.
func TestResultJSONRefuses(t *testing.T) {
	report := func(inner string) string {
		return `<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>` +
			`<key>Status</key><string>Acknowledged</string><key>CommandUUID</key><string>U</string>` +
			`<key>X</key>` + inner + `</dict></plist>`
	}
	tests := map[string][]byte{
		"deep XML":          []byte(report(strings.Repeat("<array>", 600) + strings.Repeat("</array>", 600))),
		"deep XML, comment": []byte(report("<!-- x -->" + strings.Repeat("<array>", 100000) + strings.Repeat("</array>", 100000))),
		"deep binary":       deepBplist(600),
		"cyclic binary":     cyclicBplist(),
		"exponential":       exponentialBplist(60),
		"no Status":         []byte(`<plist version="1.0"><dict><key>CommandUUID</key><string>U</string></dict></plist>`),
		"not a plist":       []byte("{}"),
		"empty":             nil,
		"truncated binary":  []byte("bplist00\x08"),
	}
	for name, raw := range tests {
		t.Run(name, func(t *testing.T) {
			if got, err := commands.ResultJSON(raw); err == nil {
				t.Errorf("converted: %.100s", got)
			}
		})
	}
	// The same shapes within the bounds convert, so the refusals above
	// are for what they test.
	for name, raw := range map[string][]byte{
		"XML 100 levels":      []byte(report(strings.Repeat("<array>", 100) + strings.Repeat("</array>", 100))),
		"binary 100 levels":   deepBplist(100),
		"binary 2^10 objects": exponentialBplist(10),
		"comment":             []byte(report("<!-- x --><array/>")),
	} {
		if _, err := commands.ResultJSON(raw); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The rest of this file writes binary plists (github.com/micromdm/plist
// only writes XML): objects in order, the root first, 8-byte integers,
// 2-byte object references.

// bplistDict is a dictionary with its keys in the order given.
type bplistDict struct {
	keys   []string
	values []any
}

func dict(kv ...any) bplistDict {
	var d bplistDict
	for i := 0; i < len(kv); i += 2 {
		d.keys = append(d.keys, kv[i].(string))
		d.values = append(d.values, kv[i+1])
	}
	return d
}

// bplistRefs is an already flattened collection: an array (marker 0xA0)
// of the given object numbers, for writing shared or cyclic graphs.
type bplistRefs []uint16

// encodeBplist writes v, whose objects it numbers depth-first.
func encodeBplist(t *testing.T, v any) []byte {
	t.Helper()
	var objects [][]byte
	var add func(v any) uint16
	add = func(v any) uint16 {
		i := len(objects)
		objects = append(objects, nil)
		var o []byte
		switch v := v.(type) {
		case string:
			o = append(bplistLength(0x50, len(v)), v...)
		case []byte:
			o = append(bplistLength(0x40, len(v)), v...)
		case int64:
			o = binary.BigEndian.AppendUint64([]byte{0x13}, uint64(v))
		case float64:
			o = binary.BigEndian.AppendUint64([]byte{0x23}, math.Float64bits(v))
		case bool:
			o = []byte{0x08}
			if v {
				o = []byte{0x09}
			}
		case time.Time:
			secs := v.Sub(time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)).Seconds()
			o = binary.BigEndian.AppendUint64([]byte{0x33}, math.Float64bits(secs))
		case []any:
			refs := make([]uint16, len(v))
			for j, e := range v {
				refs[j] = add(e)
			}
			o = appendRefs(bplistLength(0xA0, len(v)), refs)
		case bplistDict:
			refs := make([]uint16, 2*len(v.keys))
			for j, k := range v.keys {
				refs[j] = add(k)
			}
			for j, e := range v.values {
				refs[len(v.keys)+j] = add(e)
			}
			o = appendRefs(bplistLength(0xD0, len(v.keys)), refs)
		default:
			t.Fatalf("no binary plist form for %T", v)
		}
		objects[i] = o
		return uint16(i)
	}
	add(v)
	return bplistFile(objects)
}

// bplistLength is a marker with its count, inline or as an integer.
func bplistLength(marker byte, n int) []byte {
	if n < 15 {
		return []byte{marker | byte(n)}
	}
	return binary.BigEndian.AppendUint16([]byte{marker | 0x0F, 0x11}, uint16(n))
}

func appendRefs(b []byte, refs []uint16) []byte {
	for _, r := range refs {
		b = binary.BigEndian.AppendUint16(b, r)
	}
	return b
}

// bplistFile lays out objects (object 0 the root) with 4-byte offsets and
// 2-byte references.
func bplistFile(objects [][]byte) []byte {
	out := []byte("bplist00")
	offsets := make([]uint32, len(objects))
	for i, o := range objects {
		offsets[i] = uint32(len(out))
		out = append(out, o...)
	}
	table := len(out)
	for _, off := range offsets {
		out = binary.BigEndian.AppendUint32(out, off)
	}
	trailer := make([]byte, 32)
	trailer[6], trailer[7] = 4, 2
	binary.BigEndian.PutUint64(trailer[8:], uint64(len(objects)))
	binary.BigEndian.PutUint64(trailer[24:], uint64(table))
	return append(out, trailer...)
}

// reportObjects are the objects of a report dictionary whose X is object
// 5: the dictionary, its keys and its Status and CommandUUID.
func reportObjects() [][]byte {
	return [][]byte{
		appendRefs([]byte{0xD3}, []uint16{1, 2, 3, 4, 6, 5}), // Status, CommandUUID, X → 4, 6, 5
		append([]byte{0x56}, "Status"...),
		append([]byte{0x5B}, "CommandUUID"...),
		{0x51, 'X'},
		append([]byte{0x5C}, "Acknowledged"...),
		nil, // X
		{0x51, 'U'},
	}
}

// chainBplist is a report whose X is the first of n arrays, each holding
// the next one, twice if twice says so; the last holds false.
func chainBplist(n int, twice bool) []byte {
	objects := reportObjects()
	ids := []int{5}
	for range n - 1 {
		ids = append(ids, len(objects))
		objects = append(objects, nil)
	}
	last := len(objects)
	objects = append(objects, []byte{0x08})
	for k, id := range ids {
		next := uint16(last)
		if k+1 < len(ids) {
			next = uint16(ids[k+1])
		}
		if twice {
			objects[id] = appendRefs([]byte{0xA2}, []uint16{next, next})
		} else {
			objects[id] = appendRefs([]byte{0xA1}, []uint16{next})
		}
	}
	return bplistFile(objects)
}

// deepBplist is a report whose X nests n arrays.
func deepBplist(n int) []byte { return chainBplist(n, false) }

// exponentialBplist is a report whose X is n arrays, each holding the
// next twice: a few hundred bytes that decode to 2^n objects.
func exponentialBplist(n int) []byte { return chainBplist(n, true) }

// cyclicBplist is a report whose X is an array holding itself.
func cyclicBplist() []byte {
	objects := reportObjects()
	objects[5] = appendRefs([]byte{0xA1}, []uint16{5})
	return bplistFile(objects)
}
