package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/picomdm/picomdm/mdm/commands"
)

// Build returns the command plist for requestType with the key=value
// arguments, and its CommandUUID. The arguments become a JSON command
// object (commandJSON) that commands.BuildJSON validates and converts,
// exactly as POST /v1/commands does; an empty commandUUID gets a fresh
// one. readFile reads the file of a <data> value written as @file.
func Build(requestType string, args []string, commandUUID string, readFile func(string) ([]byte, error)) (raw []byte, uuid string, err error) {
	spec, command, err := commandJSON(requestType, args, readFile)
	if err != nil {
		return nil, "", err
	}
	raw, uuid, _, err = commands.BuildJSON(command, commandUUID)
	if err != nil {
		return nil, "", buildRefusal(spec, err)
	}
	return raw, uuid, nil
}

// body is the POST /v1/commands request body for a command.
type body struct {
	Targets     []string        `json:"targets"`
	Command     json.RawMessage `json:"command"`
	CommandUUID string          `json:"command_uuid"`
	NoPush      bool            `json:"nopush"`
}

// BuildBody returns the POST /v1/commands body, indented, for
// requestType with the key=value arguments, sent to targets (none gives
// "targets": []). The command is first built with commands.BuildJSON, so
// a body is only printed for a command the API accepts, and an empty
// commandUUID is filled in with the one BuildJSON chose.
func BuildBody(requestType string, args []string, commandUUID string, targets []string, readFile func(string) ([]byte, error)) ([]byte, error) {
	spec, command, err := commandJSON(requestType, args, readFile)
	if err != nil {
		return nil, err
	}
	_, uuid, _, err := commands.BuildJSON(command, commandUUID)
	if err != nil {
		return nil, buildRefusal(spec, err)
	}
	if targets == nil {
		targets = []string{}
	}
	return encodeJSON(body{Targets: targets, Command: command, CommandUUID: uuid}, "  ")
}

// refusal adds the keys of spec to err, so a mistake comes with what the
// command takes.
func refusal(spec *commands.Spec, err error) error {
	return fmt.Errorf("%w; %s takes:\n%s", err, spec.RequestType, describeKeys(spec.Keys, false))
}

// buildRefusal is refusal for an error of commands.BuildJSON that is
// about the command (a *commands.PathError), and err as it is otherwise
// (a -uuid the API refuses).
func buildRefusal(spec *commands.Spec, err error) error {
	if pe := (*commands.PathError)(nil); errors.As(err, &pe) {
		return refusal(spec, err)
	}
	return err
}

// commandJSON turns key=value arguments into the JSON command object
// {"RequestType": requestType, key: value, …}, typing each value by its
// key's schema type only as far as JSON spells it: numbers and booleans
// become JSON numbers and booleans, @file data becomes base64, a
// comma-separated array becomes a JSON array, and JSON literals (arrays,
// dictionaries, <any>) are passed through. A value that does not look
// like its type (iTunesStoreID=x) is passed as a string, and a key the
// command does not have as given, for commands.BuildJSON to refuse with
// the API's own message: checking is its job alone.
func commandJSON(requestType string, args []string, readFile func(string) ([]byte, error)) (*commands.Spec, json.RawMessage, error) {
	spec, ok := commands.Lookup(requestType)
	if !ok {
		return nil, nil, unknownRequestType(requestType)
	}
	var names []string
	values := map[string]any{}
	for _, arg := range args {
		name, value, ok := strings.Cut(arg, "=")
		if !ok || name == "" {
			return nil, nil, refusal(spec, fmt.Errorf("argument %q is not key=value", arg))
		}
		var v any = value
		key, known := findKey(spec.Keys, name)
		if known {
			var err error
			if v, err = jsonValue(key, value, readFile); err != nil {
				return nil, nil, refusal(spec, &commands.PathError{Path: "command." + name, Reason: err.Error()})
			}
		}
		prev, seen := values[name]
		if !seen {
			names = append(names, name)
		}
		// Repeating an array key appends to it; any other key takes the
		// last value.
		if p, ok := prev.([]any); ok && known && key.Type == "array" {
			v = append(p, v.([]any)...)
		}
		values[name] = v
	}
	// Written by hand to keep RequestType first and the keys in the
	// order given, as people read and write commands.
	var b bytes.Buffer
	b.WriteString(`{"RequestType":`)
	if err := writeJSON(&b, spec.RequestType); err != nil {
		return nil, nil, err
	}
	for _, name := range names {
		b.WriteByte(',')
		if err := writeJSON(&b, name); err != nil {
			return nil, nil, err
		}
		b.WriteByte(':')
		if err := writeJSON(&b, values[name]); err != nil {
			return nil, nil, refusal(spec, &commands.PathError{Path: "command." + name, Reason: err.Error()})
		}
	}
	b.WriteByte('}')
	return spec, b.Bytes(), nil
}

// findKey returns the key named name.
func findKey(keys []commands.Key, name string) (commands.Key, bool) {
	for _, k := range keys {
		if k.Name == name {
			return k, true
		}
	}
	return commands.Key{}, false
}

// unknownRequestType is the API's refusal of an undocumented RequestType
// with the names close to it, or all of them.
func unknownRequestType(requestType string) error {
	command, _ := encodeJSON(map[string]string{"RequestType": requestType}, "")
	_, _, err := commands.FromJSON(command)
	if err == nil {
		// Lookup and FromJSON disagree; say so rather than build.
		err = fmt.Errorf("%w %q", commands.ErrUnknownRequestType, requestType)
	}
	var close, all []string
	lower := strings.ToLower(requestType)
	for _, s := range commands.Specs() {
		all = append(all, s.RequestType)
		l := strings.ToLower(s.RequestType)
		if strings.Contains(l, lower) || strings.Contains(lower, l) || distance(l, lower) <= 3 {
			close = append(close, s.RequestType)
		}
	}
	if len(close) > 0 {
		return fmt.Errorf("%w; did you mean: %s", err, strings.Join(close, ", "))
	}
	return fmt.Errorf("%w; valid: %s", err, strings.Join(all, ", "))
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
// required ones and the values an enumerated key takes, for -keys and for
// refusal messages. nested also lists, indented, the keys of
// dictionaries and the item types of arrays, which JSON values must
// follow; a key named ANY stands for any key name.
func describeKeys(keys []commands.Key, nested bool) string {
	if len(keys) == 0 {
		return "  (no keys)\n"
	}
	var b strings.Builder
	writeKeys(&b, keys, "  ", nested)
	return b.String()
}

// writeKeys writes describeKeys' lines at indent.
func writeKeys(b *strings.Builder, keys []commands.Key, indent string, nested bool) {
	for _, k := range keys {
		fmt.Fprintf(b, "%s%s %s", indent, k.Name, typeName(k))
		if k.Required {
			b.WriteString(" (required)")
		}
		sk := k
		if item, ok := arrayItem(k); ok {
			sk = item
		}
		if len(sk.AllowedValues) > 0 {
			vals := make([]string, len(sk.AllowedValues))
			for i, v := range sk.AllowedValues {
				vals[i] = fmt.Sprint(v)
			}
			fmt.Fprintf(b, " one of: %s", strings.Join(vals, ", "))
		}
		if sk.Min != nil {
			fmt.Fprintf(b, " min %g", *sk.Min)
		}
		if sk.Max != nil {
			fmt.Fprintf(b, " max %g", *sk.Max)
		}
		b.WriteByte('\n')
		// An array of one item type shows that item's keys; an array of
		// several (Settings) lists the item types, each with its keys.
		if nested && (sk.Type == "dictionary" || sk.Type == "array") {
			writeKeys(b, sk.Keys, indent+"  ", nested)
		}
	}
}

// typeName spells a key's type for people, e.g. <array> of <string>.
func typeName(k commands.Key) string {
	if item, ok := arrayItem(k); ok {
		return "<array> of <" + item.Type + ">"
	}
	return "<" + k.Type + ">"
}

// arrayItem returns an array's item type when it lists exactly one.
func arrayItem(k commands.Key) (commands.Key, bool) {
	if k.Type != "array" || len(k.Keys) != 1 {
		return commands.Key{}, false
	}
	return k.Keys[0], true
}

// jsonValue spells one command-line value as JSON for key's type. It
// fails only where the command line itself is wrong (a file that cannot
// be read, a JSON literal that does not parse); whether the value fits
// the schema is commands.BuildJSON's to say.
func jsonValue(key commands.Key, value string, readFile func(string) ([]byte, error)) (any, error) {
	switch key.Type {
	case "integer", "real":
		if n, ok := jsonNumber(value); ok {
			return n, nil
		}
	case "boolean":
		switch value {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	case "data":
		if name, ok := strings.CutPrefix(value, "@"); ok {
			b, err := readFile(name)
			if err != nil {
				return nil, fmt.Errorf("reading data: %w", err)
			}
			return base64.StdEncoding.EncodeToString(b), nil
		}
	case "array":
		if strings.HasPrefix(strings.TrimSpace(value), "[") {
			var items []json.RawMessage
			if err := json.Unmarshal([]byte(value), &items); err != nil {
				return nil, fmt.Errorf("want a JSON array: %w", err)
			}
			out := make([]any, len(items))
			for i, item := range items {
				out[i] = item
			}
			return out, nil
		}
		item, ok := arrayItem(key)
		if !ok {
			item = commands.Key{Type: "string"}
		}
		switch item.Type {
		case "dictionary", "array", "any":
			return nil, fmt.Errorf("want a JSON array of <%s>", item.Type)
		}
		var items []any
		for part := range strings.SplitSeq(value, ",") {
			v, err := jsonValue(item, strings.TrimSpace(part), readFile)
			if err != nil {
				return nil, fmt.Errorf("item %q: %w", part, err)
			}
			items = append(items, v)
		}
		return items, nil
	case "dictionary":
		if !json.Valid([]byte(value)) {
			return nil, errors.New("want a JSON object")
		}
		return json.RawMessage(value), nil
	case "any":
		// JSON when it parses as JSON, otherwise the string itself.
		if json.Valid([]byte(value)) {
			return json.RawMessage(value), nil
		}
	}
	return value, nil
}

// jsonNumber returns s as a JSON number when it is one number literal.
func jsonNumber(s string) (json.Number, bool) {
	s = strings.TrimSpace(s)
	if s == "" || !json.Valid([]byte(s)) || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return "", false
	}
	return json.Number(s), true
}

// encodeJSON encodes v without HTML escaping (a command's strings are
// shown to people and piped to curl, never put in a page), indented by
// indent unless it is empty, with a final newline when indented.
func encodeJSON(v any, indent string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if indent != "" {
		enc.SetIndent("", indent)
	}
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}
	if indent == "" {
		return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
	}
	return b.Bytes(), nil
}

// writeJSON appends v to b as JSON.
func writeJSON(b *bytes.Buffer, v any) error {
	raw, err := encodeJSON(v, "")
	if err != nil {
		return err
	}
	b.Write(raw)
	return nil
}
