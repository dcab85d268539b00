package mdm

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// This file and plistdecode.go are the fast path for XML plists, which is
// what devices send. github.com/micromdm/plist decodes XML through
// encoding/xml, building a token, a tree node and a map for every element;
// that was most of the cost of decoding a check-in or a command report.
// Here the document is scanned once into a flat slice of nodes (pooled,
// pointing into the body), then mapped onto the Go value.
//
// The fast path handles the XML that plist writers produce: an optional
// standard declaration and DOCTYPE, elements without attributes (except
// <plist version="1.0">), text with the predefined and numeric character
// references. Anything else (comments, CDATA sections, processing
// instructions, other declarations, carriage returns, white space inside
// tags...) and anything it would decode differently or refuse, it leaves
// to github.com/micromdm/plist, which decides as before. So whenever the
// fast path decodes a document, the result is what micromdm/plist would
// have produced; FuzzXMLFastPath checks that.

// errXMLTooDeep is wrapped for an XML plist nested deeper than
// plistMaxDepth: the recursive XML decoder would take hundreds of MiB of
// stack and seconds for a few MiB of nesting.
var errXMLTooDeep = errors.New("XML plist nested too deep")

// plistMaxDepth is how deep a plist may nest, in XML as in binary form.
const plistMaxDepth = bplistMaxDepth

// xmlKind is the kind of a scanned XML plist element.
type xmlKind uint8

const (
	xmlDict xmlKind = iota + 1
	xmlArray
	xmlKey
	xmlString
	xmlInteger
	xmlReal
	xmlTrue
	xmlFalse
	xmlData
	xmlDate
)

// xmlNode is one element of a scanned document. The nodes of a document
// are in document order: a dictionary's (or array's) entries follow it, up
// to its end; a dictionary's entries alternate key and value.
type xmlNode struct {
	kind xmlKind
	// refs says the text holds character references to decode.
	refs bool
	// neg says an integer was written with a minus sign.
	neg bool
	// end is the index of the first node after this one's subtree.
	end int32
	// start and stop delimit the element's text in the document.
	start, stop int32
	// num holds an integer's magnitude, or a real's float64 bits.
	num uint64
}

// xmlDoc is a scanned XML plist; pooled, see getXMLDoc.
type xmlDoc struct {
	src     []byte
	nodes   []xmlNode
	scratch []byte // for checking data elements
}

var xmlDocPool = sync.Pool{New: func() any { return new(xmlDoc) }}

// maxPooledNodes bounds the node slice a pooled xmlDoc keeps.
const maxPooledNodes = 4096

func getXMLDoc() *xmlDoc { return xmlDocPool.Get().(*xmlDoc) }

func putXMLDoc(d *xmlDoc) {
	if cap(d.nodes) > maxPooledNodes || cap(d.scratch) > 64<<10 {
		return
	}
	d.src, d.nodes, d.scratch = nil, d.nodes[:0], d.scratch[:0]
	xmlDocPool.Put(d)
}

// xmlTooDeep reports whether the elements micromdm/plist would read from
// the XML document src nest deeper than max.
//
// micromdm/plist decodes XML with encoding/xml, recursing once per level,
// and reads the document's first element and nothing after it. Rather
// than a scan of its own, which would have to end every directive,
// comment, CDATA section and processing instruction exactly where
// encoding/xml ends it (a "<!DOCTYPE plist [" is ended by the first '>'
// outside quotes and comments, not by "]>"), xmlTooDeep reads src with an
// encoding/xml Decoder set up as micromdm/plist's is and counts its
// elements: the two see the same tokens, so no markup can hide nesting.
// It stops at the end of the first element, or at the first error, where
// the decoder stops too. Time is linear in len(src); memory is what the
// Decoder holds for one token and at most max open elements. The price, a
// second tokenizing pass (measured at about half of what micromdm/plist's
// own decoding costs), is paid only by documents the fast path leaves to
// micromdm/plist; the fast path bounds its own recursion (see value).
func xmlTooDeep(src []byte, max int) bool {
	dec := xml.NewDecoder(bytes.NewReader(src))
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok.(type) {
		case xml.StartElement:
			if depth++; depth > max {
				return true
			}
		case xml.EndElement:
			if depth--; depth == 0 {
				return false
			}
		}
	}
}

// scanResult says how scanning went.
type scanResult int

const (
	scanned     scanResult = iota // the document is in the nodes
	unsupported                   // outside the fast path: use micromdm/plist
	tooDeep                       // refuse: nested deeper than plistMaxDepth
)

// The prologue plist writers put before the root element (Apple's, and
// micromdm/plist's, which writes a newline after the declaration).
const (
	xmlDeclaration = `<?xml version="1.0" encoding="UTF-8"?>`
	plistDoctype   = `<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">`
)

// scan reads src into d.nodes. Like micromdm/plist, it reads the root
// element and ignores whatever follows it.
func (d *xmlDoc) scan(src []byte) (res scanResult) {
	// A panic, which the fuzz tests make sure does not happen, leaves the
	// document to micromdm/plist.
	defer func() {
		if recover() != nil {
			fastPathPanics.Add(1)
			res = unsupported
		}
	}()
	d.src, d.nodes = src, d.nodes[:0]
	if len(src) > 1<<31-1 {
		return unsupported
	}
	p := 0
	if bytes.HasPrefix(src, []byte("<?")) {
		if !bytes.HasPrefix(src, []byte(xmlDeclaration)) {
			return unsupported
		}
		p = len(xmlDeclaration)
	}
	if p = d.space(p); p < 0 {
		return unsupported
	}
	if bytes.HasPrefix(src[p:], []byte("<!")) {
		if !bytes.HasPrefix(src[p:], []byte(plistDoctype)) {
			return unsupported
		}
		p += len(plistDoctype)
		if p = d.space(p); p < 0 {
			return unsupported
		}
	}
	_, res = d.value(p, 1)
	return res
}

// space skips the white space plist writers put between elements and
// returns where it ends, or -1 for characters the fast path leaves alone
// (a carriage return, which XML turns into a newline).
func (d *xmlDoc) space(p int) int {
	for ; p < len(d.src); p++ {
		switch d.src[p] {
		case ' ', '\t', '\n':
		case '\r':
			return -1
		default:
			return p
		}
	}
	return p
}

// startTag reads the start tag at p: its name, whether it is empty
// (<name/>), and where it ends. ok is false for anything but a bare tag
// (or <plist version="1.0">).
func (d *xmlDoc) startTag(p int) (name []byte, empty bool, next int, ok bool) {
	src := d.src
	if p >= len(src) || src[p] != '<' {
		return nil, false, 0, false
	}
	i := p + 1
	for i < len(src) && src[i] >= 'a' && src[i] <= 'z' {
		i++
	}
	name = src[p+1 : i]
	if len(name) == 0 || i >= len(src) {
		return nil, false, 0, false
	}
	if string(name) == "plist" && bytes.HasPrefix(src[i:], []byte(` version="1.0"`)) {
		if i += len(` version="1.0"`); i >= len(src) {
			return nil, false, 0, false
		}
	}
	switch {
	case src[i] == '>':
		return name, false, i + 1, true
	case src[i] == '/' && i+1 < len(src) && src[i+1] == '>':
		return name, true, i + 2, true
	}
	return nil, false, 0, false
}

// endTag reads </name> at p and returns where it ends, or -1.
func (d *xmlDoc) endTag(p int, name []byte) int {
	src := d.src[p:]
	if len(src) < len(name)+3 || src[0] != '<' || src[1] != '/' ||
		!bytes.Equal(src[2:2+len(name)], name) || src[2+len(name)] != '>' {
		return -1
	}
	return p + len(name) + 3
}

// value reads the element at p and what it contains, and returns where it
// ends. depth counts the element and those it is in.
func (d *xmlDoc) value(p, depth int) (int, scanResult) {
	if depth > plistMaxDepth {
		return 0, tooDeep
	}
	name, empty, p, ok := d.startTag(p)
	if !ok {
		return 0, unsupported
	}
	var kind xmlKind
	switch string(name) {
	case "plist":
		// The document element holds exactly one value, which is the
		// plist's (micromdm/plist refuses an empty one and keeps the
		// last of several).
		if empty {
			return 0, unsupported
		}
		if p = d.space(p); p < 0 {
			return 0, unsupported
		}
		p, res := d.value(p, depth+1)
		if res != scanned {
			return 0, res
		}
		if p = d.space(p); p < 0 {
			return 0, unsupported
		}
		if p = d.endTag(p, name); p < 0 {
			return 0, unsupported
		}
		return p, scanned
	case "dict":
		kind = xmlDict
	case "array":
		kind = xmlArray
	case "string":
		kind = xmlString
	case "integer":
		kind = xmlInteger
	case "real":
		kind = xmlReal
	case "true":
		kind = xmlTrue
	case "false":
		kind = xmlFalse
	case "data":
		kind = xmlData
	case "date":
		kind = xmlDate
	default: // key (outside a dictionary) or no plist element
		return 0, unsupported
	}
	i := len(d.nodes)
	d.nodes = append(d.nodes, xmlNode{kind: kind, start: int32(p), stop: int32(p)})
	switch kind {
	case xmlDict, xmlArray:
		if !empty {
			var res scanResult
			if p, res = d.entries(p, depth, name, kind == xmlDict); res != scanned {
				return 0, res
			}
		}
	case xmlTrue, xmlFalse:
		if !empty {
			if p = d.endTag(p, name); p < 0 {
				return 0, unsupported
			}
		}
	default:
		if !empty {
			if p = d.text(i, p); p < 0 {
				return 0, unsupported
			}
			if p = d.endTag(p, name); p < 0 {
				return 0, unsupported
			}
		}
		if !d.check(i) {
			return 0, unsupported
		}
	}
	d.nodes[i].end = int32(len(d.nodes))
	return p, scanned
}

// entries reads a dictionary's key and value pairs, or an array's values,
// up to its end tag.
func (d *xmlDoc) entries(p, depth int, name []byte, dict bool) (int, scanResult) {
	for {
		if p = d.space(p); p < 0 {
			return 0, unsupported
		}
		if q := d.endTag(p, name); q >= 0 {
			return q, scanned
		}
		if dict {
			// A key, then its value: micromdm/plist reads a key without
			// a value, or two keys in a row, its own way.
			key, empty, q, ok := d.startTag(p)
			if !ok || string(key) != "key" {
				return 0, unsupported
			}
			i := len(d.nodes)
			d.nodes = append(d.nodes, xmlNode{kind: xmlKey, start: int32(q), stop: int32(q), end: int32(i + 1)})
			if !empty {
				if q = d.text(i, q); q < 0 {
					return 0, unsupported
				}
				if q = d.endTag(q, key); q < 0 {
					return 0, unsupported
				}
			}
			if p = d.space(q); p < 0 {
				return 0, unsupported
			}
		}
		var res scanResult
		if p, res = d.value(p, depth+1); res != scanned {
			return 0, res
		}
	}
}

// text reads the text of node i from p up to the next '<' and returns
// where it ends, or -1 for text the fast path leaves alone: invalid UTF-8
// or XML characters, carriage returns, "]]>", and references other than
// the predefined entities and character references to valid characters.
func (d *xmlDoc) text(i, p int) int {
	src := d.src
	for j := p; j < len(src); j++ {
		switch c := src[j]; {
		case c == '<':
			d.nodes[i].stop = int32(j)
			return j
		case c == '&':
			n, _ := reference(src[j:])
			if n == 0 {
				return -1
			}
			d.nodes[i].refs = true
			j += n - 1
		case c == ']':
			if bytes.HasPrefix(src[j:], []byte("]]>")) {
				return -1
			}
		case c >= 0x20 && c < utf8.RuneSelf, c == '\t', c == '\n':
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(src[j:])
			if r == utf8.RuneError && size == 1 || !xmlChar(r) {
				return -1
			}
			j += size - 1
		default:
			return -1
		}
	}
	return -1
}

// xmlChar reports whether r is a character XML 1.0 allows in text.
func xmlChar(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' ||
		r >= 0x20 && r <= 0xd7ff || r >= 0xe000 && r <= 0xfffd || r >= 0x10000 && r <= utf8.MaxRune
}

// reference reads the character reference at the start of b: one of the
// five predefined entities, or &#digits; or &#xhex; naming a valid
// character. It returns its length and the character, or 0 for anything
// else.
func reference(b []byte) (int, rune) {
	for _, e := range [...]struct {
		ref string
		r   rune
	}{{"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&apos;", '\''}, {"&quot;", '"'}} {
		if bytes.HasPrefix(b, []byte(e.ref)) {
			return len(e.ref), e.r
		}
	}
	if len(b) < 4 || b[1] != '#' {
		return 0, 0
	}
	base, i := 10, 2
	if b[2] == 'x' {
		base, i = 16, 3
	}
	var r rune
	start := i
	for ; i < len(b) && i-start < 7; i++ {
		var v rune
		switch c := b[i]; {
		case c >= '0' && c <= '9':
			v = rune(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			v = rune(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			v = rune(c-'A') + 10
		case c == ';' && i > start && xmlChar(r):
			return i + 1, r
		default:
			return 0, 0
		}
		r = r*rune(base) + v
	}
	return 0, 0
}

// textOf returns node n's text with its references decoded; it is a
// slice of the document unless there were references to decode.
func (d *xmlDoc) textOf(n *xmlNode) []byte {
	raw := d.src[n.start:n.stop]
	if !n.refs {
		return raw
	}
	out := make([]byte, 0, len(raw))
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '&')
		if i < 0 {
			return append(out, raw...)
		}
		out = append(out, raw[:i]...)
		size, r := reference(raw[i:])
		out = utf8.AppendRune(out, r)
		raw = raw[i+size:]
	}
	return out
}

// check reads the value of a scalar node as micromdm/plist would, keeping
// what it needs later, and reports whether it is valid. Like
// micromdm/plist, it checks every value, including those no field takes.
func (d *xmlDoc) check(i int) bool {
	n := &d.nodes[i]
	if n.kind == xmlString {
		return true
	}
	if n.refs { // not worth the trouble outside strings
		return false
	}
	text := d.src[n.start:n.stop]
	switch n.kind {
	case xmlInteger:
		// strconv.ParseInt for a minus sign, else strconv.ParseUint, of
		// the text without surrounding white space, in base 10.
		digits := bytes.TrimSpace(text)
		if len(digits) > 0 && digits[0] == '-' {
			n.neg, digits = true, digits[1:]
		}
		if len(digits) == 0 {
			return false
		}
		for _, c := range digits {
			if c < '0' || c > '9' || n.num > (1<<64-1-uint64(c-'0'))/10 {
				return false
			}
			n.num = n.num*10 + uint64(c-'0')
		}
		return !n.neg || n.num <= 1<<63
	case xmlReal:
		// encoding/xml reads an empty float as 0.
		if len(text) == 0 {
			return true
		}
		f, err := strconv.ParseFloat(string(bytes.TrimSpace(text)), 64)
		if err != nil {
			return false
		}
		n.num = math.Float64bits(f)
		return true
	case xmlDate:
		var t time.Time
		return t.UnmarshalText(text) == nil
	case xmlData:
		var ok bool
		d.scratch, ok = checkData(d.scratch, text)
		return ok
	}
	return false
}

// compactData appends to dst a data element's text without the spaces,
// tabs and newlines micromdm/plist removes before decoding the base64.
func compactData(dst, text []byte) []byte {
	for _, c := range text {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			dst = append(dst, c)
		}
	}
	return dst
}

// checkData reports whether text is valid data, decoding it in scratch
// (which it returns, maybe grown).
func checkData(scratch, text []byte) ([]byte, bool) {
	scratch = compactData(scratch[:0], text)
	k := len(scratch)
	n := base64.StdEncoding.DecodedLen(k)
	scratch = slices.Grow(scratch, n)[:k+n]
	_, err := base64.StdEncoding.Decode(scratch[k:], scratch[:k])
	return scratch[:0], err == nil
}

// dataBytes returns the bytes of a data element's text (checked before):
// nil for empty text, as micromdm/plist reads it.
func dataBytes(text []byte) []byte {
	if len(text) == 0 {
		return nil
	}
	b64 := compactData(make([]byte, 0, len(text)), text)
	out := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
	n, _ := base64.StdEncoding.Decode(out, b64)
	return out[:n]
}
