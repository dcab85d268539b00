// Package commandstest generates valid JSON commands from package
// commands' Specs, with the Command dictionary a device must receive for
// each, and decodes delivered command plists for comparing with it. The
// tests of mdm/commands, the API and the end-to-end suite share it, so
// that every RequestType is tested from the schema, never from a
// hand-copied example.
package commandstest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/micromdm/plist"

	"github.com/picomdm/picomdm/mdm/commands"
)

// SampleKey is the key name SampleJSON gives a dictionary's "ANY…" key.
const SampleKey = "SampleKey"

// SampleDate is the date SampleJSON gives every <date> key, written in
// JSON as SampleDateJSON (an offset and a fraction of a second, which
// FromJSON turns into UTC whole seconds).
var SampleDate = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

// SampleDateJSON is SampleDate as SampleJSON writes it.
const SampleDateJSON = "2026-01-02T17:04:05.25+02:00"

// SampleJSON returns a JSON command for spec that commands.FromJSON
// accepts, and the Command dictionary (RequestType included) it must
// convert it to, with plist types: int64, float64, bool, string, []byte,
// time.Time, map[string]any and []any. It fills the required keys at every
// level with valid values: an enumeration's first allowed value, numbers
// within Min and Max, data as base64, dates as SampleDateJSON, one item
// for an array. allOptional fills every optional key too, at every level,
// gives a dictionary's "ANY…" key one entry (SampleKey), and gives an
// array that lists several item types one item of each.
func SampleJSON(spec commands.Spec, allOptional bool) (body []byte, want map[string]any) {
	g := generator{allOptional: allOptional}
	j, w := g.dictionary(spec.Keys)
	j["RequestType"], w["RequestType"] = spec.RequestType, spec.RequestType
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // readable in test failures
	if err := enc.Encode(j); err != nil {
		panic("commandstest: " + err.Error()) // the tree holds only JSON types
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), w
}

// generator builds a JSON tree (for encoding/json) and the plist tree it
// stands for, side by side.
type generator struct {
	allOptional bool
}

// dictionary fills the keys of a dictionary.
func (g generator) dictionary(keys []commands.Key) (j, w map[string]any) {
	j, w = map[string]any{}, map[string]any{}
	for _, k := range keys {
		name := k.Name
		if strings.HasPrefix(name, "ANY") {
			if !g.allOptional {
				continue
			}
			name = SampleKey
		} else if !k.Required && !g.allOptional {
			continue
		}
		j[name], w[name] = g.value(k)
	}
	return j, w
}

// value fills one key.
func (g generator) value(k commands.Key) (j, w any) {
	if len(k.AllowedValues) > 0 {
		v := k.AllowedValues[0]
		return v, v
	}
	switch k.Type {
	case "string":
		s := k.Name + " <&> é\t\"'"
		return s, s
	case "integer":
		n := int64(42)
		switch {
		case k.Min != nil:
			n = int64(math.Ceil(*k.Min))
		case k.Max != nil:
			n = int64(math.Floor(*k.Max))
		}
		return n, n
	case "real":
		f := 1.5
		switch {
		case k.Min != nil && k.Max != nil:
			f = *k.Min + (*k.Max-*k.Min)/2
		case k.Min != nil:
			f = *k.Min
		case k.Max != nil:
			f = *k.Max
		}
		return f, f
	case "boolean":
		return true, true
	case "date":
		return SampleDateJSON, SampleDate
	case "data":
		b := append([]byte(k.Name), 0, 0xff, '\n')
		return base64.StdEncoding.EncodeToString(b), b
	case "dictionary":
		if len(k.Keys) == 0 {
			if g.allOptional {
				return anySample()
			}
			return map[string]any{}, map[string]any{}
		}
		return g.dictionary(k.Keys)
	case "array":
		var items []commands.Key
		switch {
		case len(k.Keys) == 0:
			items = []commands.Key{{Name: k.Name + "Item", Type: "any"}}
		case g.allOptional:
			items = k.Keys
		default:
			items = k.Keys[:1]
		}
		js, ws := []any{}, []any{}
		for _, item := range items {
			j, w := g.value(item)
			js, ws = append(js, j), append(ws, w)
		}
		return js, ws
	}
	return anySample() // "any"
}

// anySample is the value SampleJSON gives an <any> key: one of each JSON
// type, nested, and what it converts to.
func anySample() (j, w any) {
	j = map[string]any{
		"Text":   "any <value>",
		"Number": int64(7),
		"Real":   2.5,
		"Flag":   false,
		"List":   []any{int64(1), "two", map[string]any{"Three": -3.25}},
		"Nested": map[string]any{"Deeper": []any{true}},
	}
	w = map[string]any{
		"Text":   "any <value>",
		"Number": int64(7),
		"Real":   2.5,
		"Flag":   false,
		"List":   []any{int64(1), "two", map[string]any{"Three": -3.25}},
		"Nested": map[string]any{"Deeper": []any{true}},
	}
	return j, w
}

// DecodeCommand decodes a command plist with github.com/micromdm/plist,
// as a device would, into its CommandUUID and Command dictionary, with
// integers as int64 (the decoder gives non-negative XML integers as
// uint64), so that it compares with SampleJSON's want.
func DecodeCommand(raw []byte) (commandUUID string, command map[string]any, err error) {
	var c struct {
		CommandUUID string
		Command     map[string]any
	}
	if err := plist.Unmarshal(raw, &c); err != nil {
		return "", nil, err
	}
	if c.Command == nil {
		return "", nil, fmt.Errorf("commandstest: plist has no Command dictionary")
	}
	return c.CommandUUID, signed(c.Command).(map[string]any), nil
}

// signed replaces the uint64s that fit an int64 with int64s.
func signed(v any) any {
	switch v := v.(type) {
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v)
		}
	case map[string]any:
		for k, e := range v {
			v[k] = signed(e)
		}
	case []any:
		for i, e := range v {
			v[i] = signed(e)
		}
	}
	return v
}

// Diff returns "" when got and want are the same plist value, types
// included (an empty []byte equals a nil one, as a plist cannot tell them
// apart; times are compared as instants and must both be UTC), else
// where and how they first differ.
func Diff(got, want any) string { return diff("command", got, want) }

func diff(path string, got, want any) string {
	if reflect.TypeOf(got) != reflect.TypeOf(want) {
		return fmt.Sprintf("%s: got %T %v, want %T %v", path, got, got, want, want)
	}
	switch w := want.(type) {
	case map[string]any:
		g := got.(map[string]any)
		names := make([]string, 0, len(w)+len(g))
		for k := range w {
			names = append(names, k)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				names = append(names, k)
			}
		}
		slices.Sort(names)
		for _, k := range names {
			gv, gok := g[k]
			wv, wok := w[k]
			switch {
			case !gok:
				return fmt.Sprintf("%s.%s: missing, want %T %v", path, k, wv, wv)
			case !wok:
				return fmt.Sprintf("%s.%s: unexpected %T %v", path, k, gv, gv)
			}
			if d := diff(path+"."+k, gv, wv); d != "" {
				return d
			}
		}
		return ""
	case []any:
		g := got.([]any)
		if len(g) != len(w) {
			return fmt.Sprintf("%s: %d items, want %d", path, len(g), len(w))
		}
		for i := range w {
			if d := diff(fmt.Sprintf("%s[%d]", path, i), g[i], w[i]); d != "" {
				return d
			}
		}
		return ""
	case []byte:
		if !bytes.Equal(got.([]byte), w) {
			return fmt.Sprintf("%s: got %x, want %x", path, got, w)
		}
		return ""
	case time.Time:
		g := got.(time.Time)
		if !g.Equal(w) || g.Location() != time.UTC || w.Location() != time.UTC {
			return fmt.Sprintf("%s: got %v, want %v (both UTC)", path, g, w)
		}
		return ""
	}
	if got != want {
		return fmt.Sprintf("%s: got %#v, want %#v", path, got, want)
	}
	return ""
}
