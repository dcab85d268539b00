package auth

// MaxSignatureCertificates is the most certificates an Mdm-Signature may
// carry. A device sends its identity certificate, at most with an
// intermediate or two; a signature carrying more is refused as malformed
// (400, like any invalid identity) before any of its certificates is
// parsed, so that a client holding no certificate at all cannot make the
// server parse a thousand per request and flush parsedCerts with them.
const MaxSignatureCertificates = 10

// This file counts the certificates of a signature for the general path,
// github.com/smallstep/pkcs7, which parses every certificate a SignedData
// carries. pkcs7 first converts BER to DER (its ber2der), then reads the
// DER with encoding/asn1; the counting below reads the element headers
// the way that conversion does, so that whatever pkcs7 would parse is
// counted, and a structure it cannot walk pkcs7 cannot parse either.

// berElement is the header of one BER element.
type berElement struct {
	tag         byte // the first identifier octet
	constructed bool
	indefinite  bool // length 0x80: contents end at an end-of-contents 00 00
	start       int  // offset of the contents
	end         int  // offset past the contents; for indefinite, start
}

// readBERHeader reads the header of the element at off in b. It accepts
// what ber2der accepts: high tag numbers, definite lengths of up to four
// octets without a leading zero, and indefinite lengths on constructed
// elements.
func readBERHeader(b []byte, off int) (e berElement, ok bool) {
	if off < 0 || off >= len(b)-1 {
		return e, false
	}
	e.tag = b[off]
	e.constructed = e.tag&0x20 != 0
	off++
	if e.tag&0x1f == 0x1f {
		for b[off] >= 0x80 {
			if off++; off >= len(b) {
				return e, false
			}
		}
		if off++; off >= len(b) {
			return e, false
		}
	}
	l := int(b[off])
	off++
	length := 0
	switch {
	case l == 0x80:
		if !e.constructed {
			return e, false
		}
		e.indefinite = true
	case l > 0x80:
		n := l & 0x7f
		if n > 4 || off+n > len(b) || b[off] == 0 || n == 4 && b[off] > 0x7f {
			return e, false
		}
		for _, c := range b[off : off+n] {
			length = length<<8 | int(c)
		}
		off += n
	default:
		length = l
	}
	if length > len(b)-off {
		return e, false
	}
	e.start, e.end = off, off+length
	return e, true
}

// endOfContents reports whether an end-of-contents marker is at off; ok
// is false when fewer than its two octets are left.
func endOfContents(b []byte, off int) (at, ok bool) {
	if len(b)-off < 2 {
		return false, false
	}
	return b[off] == 0 && b[off+1] == 0, true
}

// berEnd returns the offset past element e. An indefinite-length element
// is walked to its end-of-contents, descending only into indefinite
// children (a definite one's extent is its header's), without recursion,
// so nesting depth costs no stack. Like ber2der, an indefinite element has
// at least one child before its end-of-contents.
func berEnd(b []byte, e berElement) (int, bool) {
	if !e.indefinite {
		return e.end, true
	}
	open, off := 1, e.start
	for {
		child, ok := readBERHeader(b, off)
		if !ok {
			return 0, false
		}
		if child.indefinite {
			open++
			off = child.start
			continue
		}
		off = child.end
		for {
			at, ok := endOfContents(b, off)
			if !ok {
				return 0, false
			}
			if !at {
				break
			}
			off += 2
			if open--; open == 0 {
				return off, true
			}
		}
	}
}

// berChildren returns up to limit children of e, in order, as ber2der reads
// them: a definite element's children run from its contents until one ends
// at or past the contents' end, an indefinite one's until an
// end-of-contents follows a child.
func berChildren(b []byte, e berElement, limit int) ([]berElement, bool) {
	var children []berElement
	if !e.constructed {
		return nil, true
	}
	off := e.start
	for len(children) < limit {
		if !e.indefinite && off >= e.end {
			break
		}
		child, ok := readBERHeader(b, off)
		if !ok {
			return nil, false
		}
		children = append(children, child)
		if off, ok = berEnd(b, child); !ok {
			return nil, false
		}
		if e.indefinite {
			at, ok := endOfContents(b, off)
			if !ok {
				return nil, false
			}
			if at {
				break
			}
		}
	}
	return children, true
}

// countSignatureCertificates returns how many certificates pkcs7 would
// parse from ber, counting no further than limit+1; ok is false if ber is
// not a structure pkcs7 could read. The certificates are the elements of
// the [0] certificates field of the SignedData: the first element of the
// [0] content of the ContentInfo (its second element), where the field
// comes third or fourth (the version may be left out); every [0] among
// those is counted.
func countSignatureCertificates(ber []byte, limit int) (n int, ok bool) {
	contentInfo, ok := readBERHeader(ber, 0)
	if !ok {
		return 0, false
	}
	fields, ok := berChildren(ber, contentInfo, 2)
	if !ok {
		return 0, false
	}
	if len(fields) < 2 || fields[1].tag != tagContext0 {
		return 0, true
	}
	content, ok := berChildren(ber, fields[1], 1)
	if !ok || len(content) == 0 {
		return 0, ok
	}
	signedData, ok := berChildren(ber, content[0], 4)
	if !ok {
		return 0, false
	}
	for _, field := range signedData[min(2, len(signedData)):] {
		if field.tag != tagContext0 {
			continue
		}
		certs, ok := berChildren(ber, field, limit+1-n)
		if !ok {
			return 0, false
		}
		if n += len(certs); n > limit {
			return n, true
		}
	}
	return n, true
}
