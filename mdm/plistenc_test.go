package mdm_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"
	"unicode/utf16"
)

// encodeBinaryPlist writes v as a bplist00 file (Apple's CFBinaryPList
// format), since github.com/micromdm/plist only writes XML. It takes the
// values schemaValue makes: map[string]any, []any, string, []byte, bool,
// int64, float64 and time.Time. Objects are not shared, integers are
// always 8 bytes: valid, if not as compact as Apple's writer.
func encodeBinaryPlist(v any) ([]byte, error) {
	var objects []bplistObject
	if _, err := flattenBplist(v, &objects); err != nil {
		return nil, err
	}
	refSize := minBytes(uint64(len(objects)))

	out := []byte("bplist00")
	offsets := make([]uint64, len(objects))
	for i, o := range objects {
		offsets[i] = uint64(len(out))
		out = append(out, o.head...)
		for _, ref := range o.refs {
			out = appendUint(out, uint64(ref), refSize)
		}
	}
	table := uint64(len(out))
	offSize := minBytes(table)
	for _, off := range offsets {
		out = appendUint(out, off, offSize)
	}
	trailer := make([]byte, 32)
	trailer[6], trailer[7] = byte(offSize), byte(refSize)
	binary.BigEndian.PutUint64(trailer[8:], uint64(len(objects)))
	binary.BigEndian.PutUint64(trailer[16:], 0) // the root is object 0
	binary.BigEndian.PutUint64(trailer[24:], table)
	return append(out, trailer...), nil
}

// bplistObject is one encoded object: its marker and inline bytes, then the
// object references of a collection.
type bplistObject struct {
	head []byte
	refs []int
}

// appleEpoch is where binary plist dates count from.
var appleEpoch = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

// flattenBplist appends v and everything it contains to objects and
// returns v's index.
func flattenBplist(v any, objects *[]bplistObject) (int, error) {
	i := len(*objects)
	*objects = append(*objects, bplistObject{})
	var o bplistObject
	switch x := v.(type) {
	case bool:
		o.head = []byte{0x08}
		if x {
			o.head[0] = 0x09
		}
	case int64:
		o.head = binary.BigEndian.AppendUint64([]byte{0x13}, uint64(x))
	case float64:
		o.head = binary.BigEndian.AppendUint64([]byte{0x23}, math.Float64bits(x))
	case time.Time:
		o.head = binary.BigEndian.AppendUint64([]byte{0x33}, math.Float64bits(x.Sub(appleEpoch).Seconds()))
	case []byte:
		o.head = append(bplistMarker(0x40, len(x)), x...)
	case string:
		if isASCII(x) {
			o.head = append(bplistMarker(0x50, len(x)), x...)
			break
		}
		units := utf16.Encode([]rune(x))
		o.head = bplistMarker(0x60, len(units))
		for _, u := range units {
			o.head = binary.BigEndian.AppendUint16(o.head, u)
		}
	case []any:
		o.head = bplistMarker(0xa0, len(x))
		for _, e := range x {
			ref, err := flattenBplist(e, objects)
			if err != nil {
				return 0, err
			}
			o.refs = append(o.refs, ref)
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		o.head = bplistMarker(0xd0, len(x))
		for _, k := range keys { // all keys, then all values
			ref, err := flattenBplist(k, objects)
			if err != nil {
				return 0, err
			}
			o.refs = append(o.refs, ref)
		}
		for _, k := range keys {
			ref, err := flattenBplist(x[k], objects)
			if err != nil {
				return 0, err
			}
			o.refs = append(o.refs, ref)
		}
	default:
		return 0, fmt.Errorf("encodeBinaryPlist: unsupported %T", v)
	}
	(*objects)[i] = o
	return i, nil
}

// bplistMarker encodes a marker with a count: in the low nibble below 15,
// else as 0xf and a following integer object.
func bplistMarker(kind byte, n int) []byte {
	if n < 15 {
		return []byte{kind | byte(n)}
	}
	size := minBytes(uint64(n))
	return appendUint([]byte{kind | 0xf, 0x10 | byte(bitsLog2(size))}, uint64(n), size)
}

// minBytes is how many bytes (1, 2, 4 or 8) hold n as an unsigned integer.
func minBytes(n uint64) int {
	switch {
	case n <= math.MaxUint8:
		return 1
	case n <= math.MaxUint16:
		return 2
	case n <= math.MaxUint32:
		return 4
	}
	return 8
}

// bitsLog2 returns log2 of 1, 2, 4 or 8.
func bitsLog2(size int) int {
	switch size {
	case 1:
		return 0
	case 2:
		return 1
	case 4:
		return 2
	}
	return 3
}

// appendUint appends n big-endian in size bytes.
func appendUint(b []byte, n uint64, size int) []byte {
	for i := size - 1; i >= 0; i-- {
		b = append(b, byte(n>>(8*i)))
	}
	return b
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
