package commands

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The JSON a command arrives as is first read into a tree of these (and
// string, json.Number, bool and nil), keeping the members of an object in
// document order so that the first violation reported is the first one in
// the document.

// member is one member of a JSON object.
type member struct {
	name  string
	value any
}

// object is a JSON object.
type object []member

// get returns the value of the member called name.
func (o object) get(name string) (any, bool) {
	for _, m := range o {
		if m.name == name {
			return m.value, true
		}
	}
	return nil, false
}

// path is where a value sits in the command, as a list from the value up
// to the command; it is spelled out only for an error.
type path struct {
	parent *path
	name   string
	index  int // for an array item: name is empty
	item   bool
}

// rootPath is the command object.
var rootPath = &path{name: "command"}

func (p *path) key(name string) *path { return &path{parent: p, name: name} }
func (p *path) at(i int) *path        { return &path{parent: p, index: i, item: true} }

// maxShownBytes bounds a key name or value quoted in an error.
const maxShownBytes = 64

// String spells p as in "command.Settings[2].Item".
func (p *path) String() string {
	var parts []*path
	for q := p; q != nil; q = q.parent {
		parts = append(parts, q)
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		q := parts[i]
		switch {
		case q.parent == nil:
			b.WriteString(q.name)
		case q.item:
			fmt.Fprintf(&b, "[%d]", q.index)
		case plainName(q.name):
			b.WriteString(".")
			b.WriteString(q.name)
		default:
			b.WriteString("[" + quote(q.name) + "]")
		}
	}
	return b.String()
}

// plainName reports whether a key name can be spelled after a '.' in a
// path without ambiguity.
func plainName(s string) bool {
	if s == "" || len(s) > maxShownBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// quote quotes s for an error, cut to maxShownBytes.
func quote(s string) string {
	if len(s) <= maxShownBytes {
		return strconv.Quote(s)
	}
	cut := maxShownBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}

// fail returns the *PathError for p.
func fail(p *path, reason string) *PathError {
	return &PathError{Path: p.String(), Reason: reason}
}

// Reasons of PathErrors that several places give.
const (
	reasonRequired   = "required"
	reasonUnknownKey = "unknown key"
	reasonNull       = "null is not a value"
)

// reasonTooDeep is the refusal of a command nested deeper than MaxDepth.
var reasonTooDeep = fmt.Sprintf("nested deeper than %d levels", MaxDepth)

// wantReason is the refusal of a value that is not of a kind's type.
var wantReason = map[kind]string{
	kindString:     "want string",
	kindInteger:    "want integer",
	kindReal:       "want real",
	kindBoolean:    "want boolean",
	kindDate:       "want date (an RFC 3339 string)",
	kindData:       "want data (a standard base64 string)",
	kindDictionary: "want dictionary",
	kindArray:      "want array",
}

// fromJSON is FromJSON against c.
func (c *catalog) fromJSON(raw []byte) (string, map[string]any, error) {
	tree, err := decodeTree(raw)
	if err != nil {
		return "", nil, err
	}
	rtPath := rootPath.key("RequestType")
	v, ok := tree.get("RequestType")
	if !ok {
		return "", nil, fail(rtPath, reasonRequired)
	}
	requestType, ok := v.(string)
	if !ok {
		return "", nil, fail(rtPath, wantReason[kindString])
	}
	cmd, ok := c.lookup(requestType)
	if !ok {
		return "", nil, &PathError{
			Path:   rtPath.String(),
			Reason: "unknown RequestType " + quote(requestType),
			err:    ErrUnknownRequestType,
		}
	}
	dict, err := cmd.root.dictionary(tree, rootPath, true)
	if err != nil {
		return "", nil, err
	}
	dict["RequestType"] = requestType
	return requestType, dict, nil
}

// decodeTree reads raw, which must be exactly one JSON object nested at
// most MaxDepth levels, without duplicate keys.
func decodeTree(raw []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	t := treeDecoder{dec: dec}
	tok, err := dec.Token()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, t.syntax(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fail(rootPath, "want a JSON object")
	}
	obj, err := t.object(rootPath, 1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fail(rootPath, "trailing data after the JSON object")
	}
	return obj, nil
}

// treeDecoder reads JSON tokens into a tree.
type treeDecoder struct {
	dec *json.Decoder
}

// syntax is the refusal of JSON that does not parse.
func (t treeDecoder) syntax(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fail(rootPath, fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, se.Error()))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fail(rootPath, "invalid JSON: unexpected end")
	}
	return fail(rootPath, "invalid JSON: "+err.Error())
}

// value reads the value at p, at depth (the command object is 1).
func (t treeDecoder) value(p *path, depth int) (any, error) {
	tok, err := t.dec.Token()
	if err != nil {
		return nil, t.syntax(err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	if depth+1 > MaxDepth {
		return nil, fail(p, reasonTooDeep)
	}
	if d == '{' {
		return t.object(p, depth+1)
	}
	return t.array(p, depth+1) // '[': Token never returns a closing delimiter here
}

// object reads the members of an object whose '{' was read.
func (t treeDecoder) object(p *path, depth int) (object, error) {
	obj := object{}
	var seen map[string]struct{}
	for t.dec.More() {
		tok, err := t.dec.Token()
		if err != nil {
			return nil, t.syntax(err)
		}
		name, _ := tok.(string) // Token returns object keys as strings
		kp := p.key(name)
		// A linear scan is cheaper than a map for the few keys commands have.
		if seen == nil && len(obj) >= 8 {
			seen = make(map[string]struct{}, 2*len(obj))
			for _, m := range obj {
				seen[m.name] = struct{}{}
			}
		}
		dup := false
		if seen != nil {
			_, dup = seen[name]
			seen[name] = struct{}{}
		} else {
			_, dup = obj.get(name)
		}
		if dup {
			return nil, fail(kp, "duplicate key")
		}
		v, err := t.value(kp, depth)
		if err != nil {
			return nil, err
		}
		obj = append(obj, member{name: name, value: v})
	}
	if _, err := t.dec.Token(); err != nil { // '}'
		return nil, t.syntax(err)
	}
	return obj, nil
}

// array reads the items of an array whose '[' was read.
func (t treeDecoder) array(p *path, depth int) ([]any, error) {
	arr := []any{}
	for t.dec.More() {
		v, err := t.value(p.at(len(arr)), depth)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}
	if _, err := t.dec.Token(); err != nil { // ']'
		return nil, t.syntax(err)
	}
	return arr, nil
}

// convert checks v, read from JSON at p, against n and returns it as the
// plist value it stands for.
func (n *node) convert(v any, p *path) (any, error) {
	if v == nil {
		if n.kind == kindAny {
			return nil, fail(p, reasonNull)
		}
		return nil, fail(p, wantReason[n.kind])
	}
	var out any
	var err error
	switch n.kind {
	case kindString:
		s, ok := v.(string)
		if !ok {
			return nil, fail(p, wantReason[n.kind])
		}
		if err := plistString(s, p, "string"); err != nil {
			return nil, err
		}
		out = s
	case kindInteger:
		out, err = integer(v, p)
	case kindReal:
		out, err = real(v, p)
	case kindBoolean:
		b, ok := v.(bool)
		if !ok {
			return nil, fail(p, wantReason[n.kind])
		}
		out = b
	case kindDate:
		out, err = date(v, p)
	case kindData:
		out, err = data(v, p)
	case kindDictionary:
		if n.free {
			return anyValue(v, p, kindDictionary)
		}
		obj, ok := v.(object)
		if !ok {
			return nil, fail(p, wantReason[n.kind])
		}
		return n.dictionary(obj, p, false)
	case kindArray:
		return n.array(v, p)
	case kindAny:
		return anyValue(v, p, 0)
	}
	if err != nil {
		return nil, err
	}
	if err := n.check(out, p); err != nil {
		return nil, err
	}
	return out, nil
}

// check applies a scalar's enumeration and bounds.
func (n *node) check(v any, p *path) error {
	if n.allowed != nil {
		if _, ok := n.allowed[v]; !ok {
			return fail(p, oneOf(n.key.AllowedValues))
		}
	}
	k := n.key
	if k.Min == nil && k.Max == nil {
		return nil
	}
	var f float64
	switch v := v.(type) {
	case int64:
		f = float64(v)
	case float64:
		f = v
	}
	if (k.Min != nil && f < *k.Min) || (k.Max != nil && f > *k.Max) {
		return fail(p, "out of range: "+bounds(k.Min, k.Max))
	}
	return nil
}

// maxListed is how many allowed values an error lists.
const maxListed = 10

// oneOf is the refusal of a value outside an enumeration.
func oneOf(values []any) string {
	var b strings.Builder
	b.WriteString("want one of ")
	for i, v := range values {
		if i == maxListed {
			fmt.Fprintf(&b, ", … (%d values; see the schema)", len(values))
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, v)
	}
	return b.String()
}

// bounds spells a Min/Max pair.
func bounds(lo, hi *float64) string {
	g := func(f *float64) string { return strconv.FormatFloat(*f, 'g', -1, 64) }
	switch {
	case lo != nil && hi != nil:
		return "want " + g(lo) + " to " + g(hi)
	case lo != nil:
		return "want at least " + g(lo)
	}
	return "want at most " + g(hi)
}

// integer converts a JSON number written as an integer that fits an int64.
func integer(v any, p *path) (any, error) {
	num, ok := v.(json.Number)
	if !ok {
		return nil, fail(p, wantReason[kindInteger])
	}
	i, err := strconv.ParseInt(string(num), 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return nil, fail(p, "out of range: want an integer that fits 64 bits")
	}
	if err != nil {
		return nil, fail(p, wantReason[kindInteger])
	}
	return i, nil
}

// real converts any JSON number that fits a float64.
func real(v any, p *path) (any, error) {
	num, ok := v.(json.Number)
	if !ok {
		return nil, fail(p, wantReason[kindReal])
	}
	return float(num, p)
}

// float parses num, refusing what overflows a float64 (underflow rounds
// to zero, as JSON decoders do).
func float(num json.Number, p *path) (float64, error) {
	f, err := strconv.ParseFloat(string(num), 64)
	if math.IsInf(f, 0) {
		return 0, fail(p, "out of range: want a number that fits a 64-bit real")
	}
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, fail(p, wantReason[kindReal])
	}
	return f, nil
}

// date converts an RFC 3339 string to a UTC time.Time in whole seconds.
func date(v any, p *path) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fail(p, wantReason[kindDate])
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, fail(p, wantReason[kindDate])
	}
	// An XML plist date is RFC 3339 in UTC with four-digit years and no
	// fraction; an offset can push a four-digit year out of that range.
	t = t.UTC().Truncate(time.Second)
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, fail(p, "out of range: want a date in years 0 to 9999 UTC")
	}
	return t, nil
}

// data converts a standard base64 string, padded or not.
func data(v any, p *path) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fail(p, wantReason[kindData])
	}
	enc := base64.StdEncoding
	if !strings.Contains(s, "=") {
		// Unpadded input: RawStdEncoding takes what StdEncoding would
		// (a multiple of four characters) and the rest.
		enc = base64.RawStdEncoding
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return nil, fail(p, wantReason[kindData])
	}
	return b, nil
}

// dictionary converts the object obj at p against n's keys; top says it
// is the command itself, whose RequestType the caller handles.
func (n *node) dictionary(obj object, p *path, top bool) (map[string]any, error) {
	out := make(map[string]any, len(obj)+1)
	for _, m := range obj {
		if top && m.name == "RequestType" {
			continue
		}
		kp := p.key(m.name)
		f := n.fields[m.name]
		if f == nil {
			if f = n.anyKey; f == nil {
				return nil, fail(kp, reasonUnknownKey)
			}
			if err := plistString(m.name, kp, "key name"); err != nil {
				return nil, err
			}
		}
		v, err := f.convert(m.value, kp)
		if err != nil {
			return nil, err
		}
		out[m.name] = v
	}
	for _, name := range n.required {
		if _, ok := out[name]; !ok {
			return nil, fail(p.key(name), reasonRequired)
		}
	}
	return out, nil
}

// array converts the JSON array v at p, each item against its item type.
func (n *node) array(v any, p *path) (any, error) {
	if n.free {
		return anyValue(v, p, kindArray)
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fail(p, wantReason[kindArray])
	}
	out := make([]any, len(arr))
	for i, item := range arr {
		ip := p.at(i)
		var err error
		switch {
		case len(n.items) == 1:
			out[i], err = n.items[0].convert(item, ip)
		case n.disc != "":
			out[i], err = n.discriminated(item, ip)
		default:
			out[i], err = n.firstMatch(item, ip)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// discriminated converts an item of an array whose item types are told
// apart by the key n.disc.
func (n *node) discriminated(item any, p *path) (any, error) {
	obj, ok := item.(object)
	if !ok {
		return nil, fail(p, wantReason[kindDictionary])
	}
	dp := p.key(n.disc)
	v, ok := obj.get(n.disc)
	if !ok {
		return nil, fail(dp, reasonRequired)
	}
	s, ok := v.(string)
	if !ok {
		return nil, fail(dp, wantReason[kindString])
	}
	itemType, ok := n.byDisc[s]
	if !ok {
		values := make([]any, len(n.items))
		for i, it := range n.items {
			values[i], _ = onlyValue(it, n.disc)
		}
		return nil, fail(dp, oneOf(values))
	}
	return itemType.dictionary(obj, p, false)
}

// firstMatch converts an item by the first of several item types that
// takes it.
func (n *node) firstMatch(item any, p *path) (any, error) {
	for _, it := range n.items {
		if v, err := it.convert(item, p); err == nil {
			return v, nil
		}
	}
	return nil, fail(p, "matches none of the array's item types")
}

// anyValue converts a JSON value of <any> type (or the free content of a
// dictionary or array, when want says which).
func anyValue(v any, p *path, want kind) (any, error) {
	switch v := v.(type) {
	case nil:
		return nil, fail(p, reasonNull)
	case string:
		if want != 0 {
			break
		}
		if err := plistString(v, p, "string"); err != nil {
			return nil, err
		}
		return v, nil
	case bool:
		if want != 0 {
			break
		}
		return v, nil
	case json.Number:
		if want != 0 {
			break
		}
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return i, nil
		}
		return float(v, p)
	case object:
		if want == kindArray {
			break
		}
		out := make(map[string]any, len(v))
		for _, m := range v {
			kp := p.key(m.name)
			if err := plistString(m.name, kp, "key name"); err != nil {
				return nil, err
			}
			mv, err := anyValue(m.value, kp, 0)
			if err != nil {
				return nil, err
			}
			out[m.name] = mv
		}
		return out, nil
	case []any:
		if want == kindDictionary {
			break
		}
		out := make([]any, len(v))
		for i, item := range v {
			iv, err := anyValue(item, p.at(i), 0)
			if err != nil {
				return nil, err
			}
			out[i] = iv
		}
		return out, nil
	}
	return nil, fail(p, wantReason[want])
}

// plistString refuses a string (what says which) holding a character XML,
// and so an XML plist, cannot carry: the encoder would replace it.
func plistString(s string, p *path, what string) error {
	for _, r := range s {
		if r >= 0x20 && r < 0xD800 || r == '\t' || r == '\n' || r == '\r' ||
			r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= utf8.MaxRune {
			continue
		}
		return fail(p, fmt.Sprintf("%s holds %U, which a plist cannot carry", what, r))
	}
	return nil
}
