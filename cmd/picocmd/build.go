package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/micromdm/plist"
)

// commandSpec is one command RequestType and its payload keys, as the
// generated commandTable lists them.
type commandSpec struct {
	RequestType string
	Keys        []keySpec
}

// keySpec is one payload key: its name, plist type (<string>, <integer>,
// <boolean>, <real>, <date>, <data>, <array>, <dictionary> or <any>),
// whether Apple marks it required, and its subkeys (a dictionary's keys or
// an array's item type).
type keySpec struct {
	Name     string
	Type     string
	Required bool
	Subkeys  []keySpec
}

// Build returns the command plist for requestType with the key=value
// arguments typed from the command table. An empty commandUUID gets a
// random upper-case one. readFile reads the file of a <data> value
// written as @file.
func Build(requestType string, args []string, commandUUID string, readFile func(string) ([]byte, error)) ([]byte, error) {
	spec, err := lookup(requestType)
	if err != nil {
		return nil, err
	}
	command := map[string]any{"RequestType": spec.RequestType}
	for _, arg := range args {
		name, value, ok := strings.Cut(arg, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("argument %q is not key=value; %s takes:\n%s", arg, spec.RequestType, describeKeys(spec.Keys))
		}
		i := slices.IndexFunc(spec.Keys, func(k keySpec) bool { return k.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("%s has no key %q; it takes:\n%s", spec.RequestType, name, describeKeys(spec.Keys))
		}
		key := spec.Keys[i]
		v, err := parseValue(key, value, readFile)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: %w; %s takes:\n%s", name, value, err, spec.RequestType, describeKeys(spec.Keys))
		}
		// Repeating an array key appends to it.
		if prev, ok := command[name].([]any); ok && key.Type == "<array>" {
			v = append(prev, v.([]any)...)
		}
		command[name] = v
	}
	var missing []string
	for _, k := range spec.Keys {
		if _, ok := command[k.Name]; k.Required && !ok {
			missing = append(missing, k.Name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s needs %s; it takes:\n%s", spec.RequestType, strings.Join(missing, ", "), describeKeys(spec.Keys))
	}
	if commandUUID == "" {
		commandUUID = newUUID()
	}
	raw, err := plist.MarshalIndent(map[string]any{
		"CommandUUID": commandUUID,
		"Command":     command,
	}, "\t")
	if err != nil {
		return nil, fmt.Errorf("encoding %s command: %w", spec.RequestType, err)
	}
	return raw, nil
}

// lookup finds a RequestType in the table, or says which names are close.
func lookup(requestType string) (commandSpec, error) {
	i, found := slices.BinarySearchFunc(commandTable, requestType, func(c commandSpec, t string) int {
		return strings.Compare(c.RequestType, t)
	})
	if found {
		return commandTable[i], nil
	}
	var close []string
	lower := strings.ToLower(requestType)
	for _, c := range commandTable {
		l := strings.ToLower(c.RequestType)
		if strings.Contains(l, lower) || strings.Contains(lower, l) || distance(l, lower) <= 3 {
			close = append(close, c.RequestType)
		}
	}
	if len(close) > 0 {
		return commandSpec{}, fmt.Errorf("unknown RequestType %q; did you mean: %s", requestType, strings.Join(close, ", "))
	}
	all := make([]string, len(commandTable))
	for i, c := range commandTable {
		all[i] = c.RequestType
	}
	return commandSpec{}, fmt.Errorf("unknown RequestType %q; valid: %s", requestType, strings.Join(all, ", "))
}

// distance is the Levenshtein edit distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describeKeys lists keys one a line with their types, marking the
// required ones, for -keys and for refusal messages.
func describeKeys(keys []keySpec) string {
	if len(keys) == 0 {
		return "  (no keys)\n"
	}
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s %s", k.Name, typeName(k))
		if k.Required {
			b.WriteString(" (required)")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// typeName spells a key's type for people, e.g. <array> of <string>.
func typeName(k keySpec) string {
	if item, ok := itemType(k); ok {
		return k.Type + " of " + item
	}
	return k.Type
}

// itemType returns an array's item type when all its listed item types
// agree.
func itemType(k keySpec) (string, bool) {
	if k.Type != "<array>" || len(k.Subkeys) == 0 {
		return "", false
	}
	t := k.Subkeys[0].Type
	for _, s := range k.Subkeys[1:] {
		if s.Type != t {
			return "", false
		}
	}
	return t, true
}

// errBoolean is the refusal of a <boolean> that is not true or false.
var errBoolean = errors.New("want true or false")

// parseValue types one command-line value as key's plist type.
func parseValue(key keySpec, value string, readFile func(string) ([]byte, error)) (any, error) {
	switch key.Type {
	case "<string>":
		return value, nil
	case "<integer>":
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return nil, errors.New("want an integer")
		}
		return n, nil
	case "<real>":
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, errors.New("want a number")
		}
		return f, nil
	case "<boolean>":
		switch value {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, errBoolean
	case "<date>":
		t, err := time.Parse(time.RFC3339, value)
		if err != nil {
			return nil, errors.New("want an RFC 3339 date such as 2026-01-02T15:04:05Z")
		}
		return t.UTC(), nil
	case "<data>":
		if name, ok := strings.CutPrefix(value, "@"); ok {
			b, err := readFile(name)
			if err != nil {
				return nil, fmt.Errorf("reading data: %w", err)
			}
			return b, nil
		}
		b, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			return nil, errors.New("want base64 or @file")
		}
		return b, nil
	case "<array>":
		if strings.HasPrefix(strings.TrimSpace(value), "[") {
			v, err := decodeJSON(value)
			if _, ok := v.([]any); err != nil || !ok {
				return nil, errors.New("want a JSON array")
			}
			return v, nil
		}
		item, ok := itemType(key)
		if !ok {
			item = "<string>"
		}
		switch item {
		case "<dictionary>", "<array>", "<any>":
			return nil, fmt.Errorf("want a JSON array of %s", item)
		}
		var items []any
		for part := range strings.SplitSeq(value, ",") {
			v, err := parseValue(keySpec{Type: item}, strings.TrimSpace(part), readFile)
			if err != nil {
				return nil, fmt.Errorf("item %q: %w", part, err)
			}
			items = append(items, v)
		}
		return items, nil
	case "<dictionary>":
		v, err := decodeJSON(value)
		if _, ok := v.(map[string]any); err != nil || !ok {
			return nil, errors.New("want a JSON object")
		}
		return v, nil
	}
	// <any>: JSON when it parses as JSON, otherwise the string itself.
	if v, err := decodeJSON(value); err == nil {
		return v, nil
	}
	return value, nil
}

// decodeJSON decodes a JSON value, keeping whole numbers as int64 so they
// become plist <integer>s rather than <real>s.
func decodeJSON(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after JSON value")
	}
	return fixNumbers(v), nil
}

// fixNumbers replaces json.Numbers with int64 or float64.
func fixNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i := range v {
			v[i] = fixNumbers(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = fixNumbers(v[k])
		}
	}
	return v
}

// newUUID returns a random (version 4) UUID in upper case, the spelling
// Apple's examples use for CommandUUID.
func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails since Go 1.24
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
