package mdm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/picomdm/picomdm/mdm"
)

// rawBplist assembles a binary plist from hand-made objects (placed right
// after the header) and a trailer, so that tests can build the malformed
// files no encoder writes.
func rawBplist(objects []byte, offsets []uint64, offSize, refSize byte, numObjects, root uint64) []byte {
	b := append([]byte("bplist00"), objects...)
	table := uint64(len(b))
	for _, off := range offsets {
		b = appendUint(b, off, int(offSize))
	}
	trailer := make([]byte, 32)
	trailer[6], trailer[7] = offSize, refSize
	binary.BigEndian.PutUint64(trailer[8:], numObjects)
	binary.BigEndian.PutUint64(trailer[16:], root)
	binary.BigEndian.PutUint64(trailer[24:], table)
	return append(b, trailer...)
}

// doublingBplist is n arrays, each holding the next one twice, ending in
// false: under 4n bytes that github.com/micromdm/plist expands to 2^n
// objects.
func doublingBplist(n int) []byte {
	var objects []byte
	var offsets []uint64
	for i := range n {
		offsets = append(offsets, uint64(8+len(objects)))
		objects = append(objects, 0xa2, byte(i+1), byte(i+1))
	}
	offsets = append(offsets, uint64(8+len(objects)))
	objects = append(objects, 0x08)
	return rawBplist(objects, offsets, 1, 1, uint64(n+1), 0)
}

// hostileBplists are binary plists that crashed the decoder before
// DecodeCheckin, DecodeCommandResults and DecodeCommand checked binary
// bodies: the first two panicked, the others killed the process (stack
// overflow, out of memory, or exponential time and memory).
var hostileBplists = map[string][]byte{
	"root one past the end":     rawBplist([]byte{0x08}, []uint64{8}, 1, 1, 1, 1),
	"reference size 9":          rawBplist([]byte{0xa1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, []uint64{8}, 1, 9, 1, 0),
	"array containing itself":   rawBplist([]byte{0xa1, 0}, []uint64{8}, 1, 1, 1, 0),
	"dict containing itself":    rawBplist([]byte{0xd1, 1, 0, 0x51, 'a'}, []uint64{8, 11}, 1, 1, 2, 0),
	"data of 2^40 bytes":        rawBplist([]byte{0x4f, 0x13, 0, 0, 1, 0, 0, 0, 0, 0}, []uint64{8}, 1, 1, 1, 0),
	"array of 2^62 references":  rawBplist([]byte{0xaf, 0x13, 0x40, 0, 0, 0, 0, 0, 0, 0}, []uint64{8}, 1, 1, 1, 0),
	"string of 2^31 UTF-16":     rawBplist([]byte{0x6f, 0x12, 0x80, 0, 0, 0}, []uint64{8}, 1, 1, 1, 0),
	"2^60 shared references":    doublingBplist(60),
	"offset past the table":     rawBplist([]byte{0x08}, []uint64{200}, 1, 1, 1, 0),
	"offset inside the header":  rawBplist([]byte{0x08}, []uint64{3}, 1, 1, 1, 0),
	"more objects than offsets": rawBplist([]byte{0x08}, []uint64{8}, 1, 1, 1<<20, 0),
	"offset size 0":             rawBplist([]byte{0x08}, []uint64{8}, 0, 1, 1, 0),
	"trailer only":              append([]byte("bplist00"), make([]byte, 32)...),
}

// garbageSeeds are bodies for the fuzzers' corpus: garbage no decoder may
// accept, and reports behind the markup (directives, comments, CDATA
// sections, processing instructions) that the XML depth limit must see
// through.
func garbageSeeds() [][]byte {
	seeds := [][]byte{
		nil,
		[]byte("garbage"),
		[]byte("<?xml version=\"1.0\"?><plist><dict><key>Status</key>"),
		[]byte("<plist><array><array><array></array></array></array></plist>"),
		[]byte("bplist00"),
		append([]byte("bplist00"), bytes.Repeat([]byte{0xd1}, 40)...),
	}
	for _, b := range hostileBplists {
		seeds = append(seeds, b)
	}
	return append(seeds, directiveSeeds()...)
}

// TestDecodeHostileBinaryPlists checks that binary plists built to crash
// the plist decoder are refused as parse errors by every decoder, quickly.
func TestDecodeHostileBinaryPlists(t *testing.T) {
	decoders := map[string]func([]byte) error{
		"DecodeCheckin":        func(b []byte) error { _, err := mdm.DecodeCheckin(b); return err },
		"DecodeCommandResults": func(b []byte) error { _, err := mdm.DecodeCommandResults(b); return err },
		"DecodeCommand":        func(b []byte) error { _, err := mdm.DecodeCommand(b); return err },
	}
	for name, body := range hostileBplists {
		for dname, decode := range decoders {
			t.Run(name+"/"+dname, func(t *testing.T) {
				start := time.Now()
				err := decode(body)
				var pe *mdm.ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("error %v is not a *mdm.ParseError", err)
				}
				if !errors.Is(err, mdm.ErrBadBinaryPlist) {
					t.Errorf("error %v, want the binary plist check to refuse it", err)
				}
				if d := time.Since(start); d > time.Second {
					t.Errorf("took %v", d)
				}
			})
		}
	}
}

// TestDecodeBinaryPlistSharedObjects checks that the binary checks accept
// what Apple's writer produces: equal keys and values stored once and
// referenced from several places.
func TestDecodeBinaryPlistSharedObjects(t *testing.T) {
	// Object 0: {Status: "Acknowledged", CommandUUID: "x", ErrorChain: [1, 1]}
	// where the two ErrorChain entries are the same dictionary (object 7),
	// whose key and value share object 3 ("x") with CommandUUID.
	objects := [][]byte{
		{0xd3, 1, 2, 8, 4, 3, 5},                // 0: dict, keys 1,2,8 values 4,3,5
		append([]byte{0x56}, "Status"...),       // 1
		append([]byte{0x5b}, "CommandUUID"...),  // 2
		{0x51, 'x'},                             // 3
		append([]byte{0x5c}, "Acknowledged"...), // 4
		{0xa2, 7, 7},                            // 5: array of object 7 twice
		{0x08},                                  // 6: unused false
		{0xd1, 3, 3},                            // 7: {x: x}
		append([]byte{0x5a}, "ErrorChain"...),   // 8
	}
	var flat []byte
	var offsets []uint64
	for _, o := range objects {
		offsets = append(offsets, uint64(8+len(flat)))
		flat = append(flat, o...)
	}
	body := rawBplist(flat, offsets, 1, 1, uint64(len(objects)), 0)
	report, err := mdm.DecodeCommandResults(body)
	if err != nil {
		t.Fatalf("DecodeCommandResults: %v", err)
	}
	if report.Status != mdm.StatusAcknowledged || report.CommandUUID != "x" || len(report.ErrorChain) != 2 {
		t.Errorf("decoded %+v", report)
	}
	if !bytes.Equal(report.Raw, body) {
		t.Error("Raw differs from the input")
	}
}

// TestDecodeBinaryPlistDepth checks the nesting limit: deep enough for any
// real message, refusing a pathological one.
func TestDecodeBinaryPlistDepth(t *testing.T) {
	nested := func(depth int) []byte {
		// {MessageType: "CheckOut", UDID: testUDID, X: [[[...]]]}
		v := any([]any{})
		for range depth {
			v = []any{v}
		}
		b, err := encodeBinaryPlist(map[string]any{"MessageType": "CheckOut", "UDID": testUDID, "X": v})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := mdm.DecodeCheckin(nested(100)); err != nil {
		t.Errorf("100 levels: %v", err)
	}
	if _, err := mdm.DecodeCheckin(nested(5000)); !errors.Is(err, mdm.ErrBadBinaryPlist) {
		t.Errorf("5000 levels: error %v, want ErrBadBinaryPlist", err)
	}
}
