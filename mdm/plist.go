package mdm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"

	"github.com/micromdm/plist"
)

// errPlistPanic marks a panic of the plist decoder that unmarshal turned
// into an error. It should never happen: checkBinaryPlist exists so that it
// does not, and the fuzz tests check that it does not.
var errPlistPanic = errors.New("plist decoder panicked")

// errBadBinaryPlist is wrapped by checkBinaryPlist for a binary plist it
// refuses.
var errBadBinaryPlist = errors.New("malformed binary plist")

// unmarshal decodes a request body (XML or binary plist) into v, a
// pointer.
//
// XML goes through the fast path of xmlplist.go when it can. A plist nested
// deeper than plistMaxDepth is refused, XML or binary: no message nests
// that deep, and micromdm/plist's decoder recurses once per level.
//
// github.com/micromdm/plist trusts a binary plist's structure: an object
// reference one past the end or a reference size over 8 panics, a
// self-referencing array recurses until the stack overflows, a huge length
// allocates until the process runs out of memory, and shared references
// are re-parsed on every use, so a few dozen bytes can expand
// exponentially. The last three kill the whole process, which recover
// cannot prevent, so binary bodies are checked first; any other panic left
// in the decoder becomes an error.
func unmarshal(raw []byte, v any) error {
	if done, err := unmarshalXML(raw, v); done || err != nil {
		return err
	}
	return unmarshalPlist(raw, v)
}

// unmarshalPlist decodes raw into v with github.com/micromdm/plist,
// checking binary plists first and turning a panic into an error.
func unmarshalPlist(raw []byte, v any) (err error) {
	if isBinaryPlist(raw) {
		if err := checkBinaryPlist(raw); err != nil {
			return err
		}
	} else if xmlTooDeep(raw, plistMaxDepth) {
		return fmt.Errorf("%w: deeper than %d", errXMLTooDeep, plistMaxDepth)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errPlistPanic, r)
		}
	}()
	return plist.Unmarshal(raw, v)
}

// unmarshalXML decodes the XML plist raw into v (a pointer) by the fast
// path. It reports whether it did; when it did not, and returned no error,
// v is as it was and raw is for micromdm/plist to decode.
func unmarshalXML(raw []byte, v any) (done bool, err error) {
	rv := reflect.ValueOf(v)
	if isBinaryPlist(raw) || rv.Kind() != reflect.Pointer || rv.IsNil() {
		return false, nil
	}
	d := getXMLDoc()
	defer putXMLDoc(d)
	switch d.scan(raw) {
	case tooDeep:
		return false, fmt.Errorf("%w: deeper than %d", errXMLTooDeep, plistMaxDepth)
	case unsupported:
		return false, nil
	}
	if !d.decodeRoot(rv.Elem()) {
		rv.Elem().SetZero()
		return false, nil
	}
	return true, nil
}

// fastPathPanics counts the panics decodeRoot recovered from, for the
// tests.
var fastPathPanics atomic.Int64

// isBinaryPlist reports whether raw is a binary plist, by the test
// plist.Unmarshal uses to pick its binary parser.
func isBinaryPlist(raw []byte) bool { return bytes.HasPrefix(raw, []byte("bplist0")) }

// decodeRoot stores the document's root value in v (see decodeNode). A
// panic, which the fuzz tests make sure does not happen, counts as "not
// decoded", so that micromdm/plist has the last word.
func (d *xmlDoc) decodeRoot(v reflect.Value) (ok bool) {
	defer func() {
		if recover() != nil {
			fastPathPanics.Add(1)
			ok = false
		}
	}()
	return d.decodeNode(0, v)
}

// Limits checkBinaryPlist enforces. They are far above anything a device
// sends: Apple's writer nests a few levels deep and shares only leaves.
const (
	bplistHeaderLen  = 8  // "bplist00"
	bplistTrailerLen = 32 // CFBinaryPlistTrailer
	bplistMaxDepth   = 512
	// bplistObjectCost approximates what the decoder allocates per object
	// it parses, on top of the object's own bytes.
	bplistObjectCost = 64
)

// bplistBudget is the decoding cost (see bplistObjectCost) allowed for a
// binary plist of n bytes: what an unshared plist costs, plus slack.
func bplistBudget(n int) uint64 { return bplistObjectCost*uint64(n) + 1<<20 }

// checkBinaryPlist walks a binary plist's object graph the way
// plist.Unmarshal will and refuses it (errBadBinaryPlist) if decoding it
// could panic, recurse without end or expand beyond bplistBudget. It does
// not check what the decoder checks itself (object kinds, dictionary key
// types).
func checkBinaryPlist(b []byte) error {
	if len(b) < bplistHeaderLen+2+bplistTrailerLen { // at least one object and one offset
		return fmt.Errorf("%w: %d bytes is too short", errBadBinaryPlist, len(b))
	}
	end := uint64(len(b) - bplistTrailerLen)
	trailer := b[end:]
	offSize, refSize := uint64(trailer[6]), uint64(trailer[7])
	num := binary.BigEndian.Uint64(trailer[8:])
	root := binary.BigEndian.Uint64(trailer[16:])
	table := binary.BigEndian.Uint64(trailer[24:])
	switch {
	case offSize < 1 || offSize > 8 || refSize < 1 || refSize > 8:
		return fmt.Errorf("%w: offset size %d, reference size %d", errBadBinaryPlist, offSize, refSize)
	case table < bplistHeaderLen+1 || table > end:
		return fmt.Errorf("%w: offset table at %d", errBadBinaryPlist, table)
	case num == 0 || num > (end-table)/offSize:
		return fmt.Errorf("%w: %d objects do not fit the offset table", errBadBinaryPlist, num)
	case root >= num:
		return fmt.Errorf("%w: root object %d of %d", errBadBinaryPlist, root, num)
	}
	c := bplistChecker{
		b:       b[:table], // objects lie between the header and the offset table
		refSize: refSize,
		num:     num,
		offsets: make([]uint64, num),
		state:   make([]uint8, num),
		cost:    make([]uint64, num),
		budget:  bplistBudget(len(b)),
	}
	for i := range c.offsets {
		off := readUint(b[table+uint64(i)*offSize:], offSize)
		if off < bplistHeaderLen || off >= table {
			return fmt.Errorf("%w: object %d at %d", errBadBinaryPlist, i, off)
		}
		c.offsets[i] = off
	}
	_, err := c.object(root, 0)
	return err
}

// bplistChecker holds the state of one checkBinaryPlist walk.
type bplistChecker struct {
	b       []byte // the file up to the offset table
	refSize uint64
	num     uint64
	offsets []uint64
	state   []uint8  // 0 unseen, 1 being walked (a reference to it is a cycle), 2 done
	cost    []uint64 // decoding cost of each done object, its references included
	budget  uint64
}

// object checks object i and everything it references, and returns what
// decoding it costs. The decoder re-parses an object at every reference,
// so a shared object's cost counts once per reference.
func (c *bplistChecker) object(i uint64, depth int) (uint64, error) {
	switch c.state[i] {
	case 1:
		return 0, fmt.Errorf("%w: object %d contains itself", errBadBinaryPlist, i)
	case 2:
		return c.cost[i], nil
	}
	if depth > bplistMaxDepth {
		return 0, fmt.Errorf("%w: nested deeper than %d", errBadBinaryPlist, bplistMaxDepth)
	}
	c.state[i] = 1
	marker, p := c.b[c.offsets[i]], c.offsets[i]+1
	cost := uint64(bplistObjectCost)
	switch marker >> 4 {
	case 0x1, 0x2: // integer, real: 2^n bytes are read into a new buffer
		cost += 1 << (marker & 0xf)
	case 0x4, 0x5, 0x6, 0xa, 0xd: // data, ASCII, UTF-16, array, dictionary
		n, body, err := c.count(marker, p)
		if err != nil {
			return 0, err
		}
		// Every length is bounded by the file before it is multiplied.
		limit := uint64(len(c.b))
		if n > limit {
			return 0, fmt.Errorf("%w: object %d claims %d entries", errBadBinaryPlist, i, n)
		}
		var size, refs uint64
		switch marker >> 4 {
		case 0x4, 0x5:
			size = n
		case 0x6:
			size = 2 * n
		case 0xa:
			refs = n
		case 0xd:
			refs = 2 * n
		}
		size += refs * c.refSize
		if size > limit-body {
			return 0, fmt.Errorf("%w: object %d runs past the object table", errBadBinaryPlist, i)
		}
		cost += size
		for r := range refs {
			ref := readUint(c.b[body+r*c.refSize:], c.refSize)
			if ref >= c.num {
				return 0, fmt.Errorf("%w: object %d references object %d of %d", errBadBinaryPlist, i, ref, c.num)
			}
			sub, err := c.object(ref, depth+1)
			if err != nil {
				return 0, err
			}
			if cost += sub; cost > c.budget {
				return 0, fmt.Errorf("%w: expands beyond %d", errBadBinaryPlist, c.budget)
			}
		}
	}
	if cost > c.budget {
		return 0, fmt.Errorf("%w: expands beyond %d", errBadBinaryPlist, c.budget)
	}
	c.state[i], c.cost[i] = 2, cost
	return cost, nil
}

// count reads the length of a data, string, array or dictionary object
// whose marker byte is followed by position p: the marker's low nibble, or
// when that is 0xf, an integer object of 2^k bytes that follows.
func (c *bplistChecker) count(marker byte, p uint64) (n, next uint64, err error) {
	if marker&0xf != 0xf {
		return uint64(marker & 0xf), p, nil
	}
	if p >= uint64(len(c.b)) {
		return 0, 0, fmt.Errorf("%w: length past the object table", errBadBinaryPlist)
	}
	size := uint64(1) << (c.b[p] & 0xf)
	if size > 8 || size > uint64(len(c.b))-p-1 {
		return 0, 0, fmt.Errorf("%w: bad length at %d", errBadBinaryPlist, p)
	}
	return readUint(c.b[p+1:], size), p + 1 + size, nil
}

// readUint reads a big-endian unsigned integer of size (1 to 8) bytes from
// the start of b, which the caller has checked is long enough.
func readUint(b []byte, size uint64) uint64 {
	var v uint64
	for _, x := range b[:size] {
		v = v<<8 | uint64(x)
	}
	return v
}
