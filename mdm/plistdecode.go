package mdm

import (
	"math"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/micromdm/plist"
)

// This file maps a scanned XML plist (see xmlplist.go) onto a Go value the
// way github.com/micromdm/plist does. It handles the types PicoMDM decodes
// into: structs whose plist keys are their (promoted) field names, strings,
// booleans, integers, floats, []byte, slices, time.Time, map[string]T and
// interface{}. A type outside that set, or a value that does not fit its
// field, is left to micromdm/plist (decodeNode reports false), which then
// decodes the whole document, or reports the error.

// structFields is how a struct type's fields are found by plist key.
type structFields struct {
	// byKey maps a plist key to the field's index in index.
	byKey map[string]int
	index [][]int
}

// structCache holds a *structFields for each struct type seen, nil for a
// type the fast path leaves alone.
var structCache sync.Map // reflect.Type → *structFields

// fieldsOf returns how t's fields are found, or nil if the fast path does
// not handle t.
//
// micromdm/plist follows Go's rules for embedded fields (the shallowest
// field of a name wins, a tagged one among equals, else none) and takes a
// field's name from its plist tag when that is a valid name. The fast
// path handles the simple case: fields named after themselves (tags
// without a name, or "-"), structs embedded by value, and every name
// appearing once across all depths, so that there is nothing to choose.
func fieldsOf(t reflect.Type) *structFields {
	if f, ok := structCache.Load(t); ok {
		return f.(*structFields)
	}
	f := buildFields(t)
	structCache.Store(t, f)
	return f
}

func buildFields(t reflect.Type) *structFields {
	f := &structFields{byKey: map[string]int{}}
	var walk func(t reflect.Type, prefix []int) bool
	walk = func(t reflect.Type, prefix []int) bool {
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("plist")
			if tag == "-" {
				continue
			}
			if name, _, _ := strings.Cut(tag, ","); name != "" {
				return false
			}
			index := append(append([]int(nil), prefix...), i)
			if sf.Anonymous {
				if !sf.IsExported() || sf.Type.Kind() != reflect.Struct {
					return false
				}
				if !walk(sf.Type, index) {
					return false
				}
				continue
			}
			if !sf.IsExported() {
				continue
			}
			if _, dup := f.byKey[sf.Name]; dup {
				return false
			}
			f.byKey[sf.Name] = len(f.index)
			f.index = append(f.index, index)
		}
		return true
	}
	if !walk(t, nil) {
		return nil
	}
	return f
}

var (
	unmarshalerType = reflect.TypeFor[plist.Unmarshaler]()
	timeType        = reflect.TypeFor[time.Time]()
)

// decodeNode stores node i of d in v, as micromdm/plist's decoder stores a
// value, and reports whether it could; when it could not, v may be half
// written.
func (d *xmlDoc) decodeNode(i int, v reflect.Value) bool {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	if v.Kind() == reflect.Interface && v.NumMethod() == 0 {
		x, ok := d.interfaceOf(i)
		if ok {
			v.Set(reflect.ValueOf(x))
		}
		return ok
	}
	if v.Type().Implements(unmarshalerType) || reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		return false
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	n := &d.nodes[i]
	switch n.kind {
	case xmlString:
		if v.Kind() != reflect.String {
			return false
		}
		v.SetString(string(d.textOf(n)))
	case xmlInteger:
		switch v.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			v.SetInt(int64(n.integer()))
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			if n.neg {
				return false
			}
			v.SetUint(n.num)
		default:
			return false
		}
	case xmlReal:
		if v.Kind() != reflect.Float32 && v.Kind() != reflect.Float64 {
			return false
		}
		v.SetFloat(math.Float64frombits(n.num))
	case xmlTrue, xmlFalse:
		if v.Kind() != reflect.Bool {
			return false
		}
		v.SetBool(n.kind == xmlTrue)
	case xmlData:
		if v.Kind() != reflect.Slice || v.Type().Elem().Kind() != reflect.Uint8 {
			return false
		}
		v.SetBytes(dataBytes(d.src[n.start:n.stop]))
	case xmlDate:
		if v.Type() != timeType {
			return false
		}
		t, ok := d.dateOf(n)
		if !ok {
			return false
		}
		v.Set(reflect.ValueOf(t))
	case xmlArray:
		return d.decodeArray(i, v)
	case xmlDict:
		switch v.Kind() {
		case reflect.Struct:
			return d.decodeStruct(i, v)
		case reflect.Map:
			return d.decodeMap(i, v)
		}
		return false
	default:
		return false
	}
	return true
}

// integer returns an integer node's value as micromdm/plist keeps it: the
// two's complement bits of a negative one.
func (n *xmlNode) integer() uint64 {
	if n.neg {
		return -n.num
	}
	return n.num
}

func (d *xmlDoc) dateOf(n *xmlNode) (time.Time, bool) {
	var t time.Time
	err := t.UnmarshalText(d.src[n.start:n.stop])
	return t, err == nil
}

// nextEntry returns the index of the entry after entry j of container
// node i. An entry of a dictionary is its key, followed by its value.
func (d *xmlDoc) nextEntry(i, j int) int {
	if d.nodes[i].kind == xmlDict {
		j++
	}
	return int(d.nodes[j].end)
}

// keyOf returns the text of key node j.
func (d *xmlDoc) keyOf(j int) []byte { return d.textOf(&d.nodes[j]) }

func (d *xmlDoc) decodeStruct(i int, v reflect.Value) bool {
	fields := fieldsOf(v.Type())
	if fields == nil {
		return false
	}
	// micromdm/plist collects a dictionary into a map, so of repeated
	// keys the last one counts; then it decodes the struct's fields in
	// order.
	var small [32]int32
	last := small[:0]
	if len(fields.index) > len(small) {
		last = make([]int32, 0, len(fields.index))
	}
	last = last[:len(fields.index)]
	for k := range last {
		last[k] = -1
	}
	end := int(d.nodes[i].end)
	for j := i + 1; j < end; j = d.nextEntry(i, j) {
		if f, ok := fields.byKey[string(d.keyOf(j))]; ok {
			last[f] = int32(j + 1)
		}
	}
	for f, j := range last {
		if j >= 0 && !d.decodeNode(int(j), v.FieldByIndex(fields.index[f])) {
			return false
		}
	}
	return true
}

func (d *xmlDoc) decodeMap(i int, v reflect.Value) bool {
	t := v.Type()
	// micromdm/plist converts keys to the map's key type (which panics
	// for other kinds than string) and fills a new map; decoding into a
	// map with entries is left to it.
	if t.Key().Kind() != reflect.String || !v.IsNil() {
		return false
	}
	m := reflect.MakeMap(t)
	end := int(d.nodes[i].end)
	for j := i + 1; j < end; j = d.nextEntry(i, j) {
		elem := reflect.New(t.Elem()).Elem()
		if !d.decodeNode(j+1, elem) {
			return false
		}
		m.SetMapIndex(reflect.ValueOf(string(d.keyOf(j))).Convert(t.Key()), elem)
	}
	v.Set(m)
	return true
}

func (d *xmlDoc) decodeArray(i int, v reflect.Value) bool {
	// micromdm/plist appends to what a slice holds in a way that only
	// works for an empty one; other cases are left to it.
	if v.Kind() != reflect.Slice || v.Len() != 0 {
		return false
	}
	end, count := int(d.nodes[i].end), 0
	for j := i + 1; j < end; j = d.nextEntry(i, j) {
		count++
	}
	// Like micromdm/plist: a new slice of twice the capacity needed (at
	// least 4), so that even an empty array makes a non-nil slice.
	if count >= v.Cap() {
		v.Set(reflect.MakeSlice(v.Type(), 0, max(2*count, 4)))
	}
	v.SetLen(count)
	k := 0
	for j := i + 1; j < end; j = d.nextEntry(i, j) {
		if !d.decodeNode(j, v.Index(k)) {
			return false
		}
		k++
	}
	return true
}

// interfaceOf returns node i as micromdm/plist stores a value in an empty
// interface.
func (d *xmlDoc) interfaceOf(i int) (any, bool) {
	n := &d.nodes[i]
	switch n.kind {
	case xmlString:
		return string(d.textOf(n)), true
	case xmlInteger:
		if n.neg {
			return int64(n.integer()), true
		}
		return n.num, true
	case xmlReal:
		return math.Float64frombits(n.num), true
	case xmlTrue, xmlFalse:
		return n.kind == xmlTrue, true
	case xmlData:
		return dataBytes(d.src[n.start:n.stop]), true
	case xmlDate:
		return d.dateOf(n)
	case xmlArray:
		out := []any{}
		end := int(n.end)
		for j := i + 1; j < end; j = d.nextEntry(i, j) {
			x, ok := d.interfaceOf(j)
			if !ok {
				return nil, false
			}
			out = append(out, x)
		}
		return out, true
	case xmlDict:
		out := map[string]any{}
		end := int(n.end)
		for j := i + 1; j < end; j = d.nextEntry(i, j) {
			x, ok := d.interfaceOf(j + 1)
			if !ok {
				return nil, false
			}
			out[string(d.keyOf(j))] = x
		}
		return out, true
	}
	return nil, false
}
