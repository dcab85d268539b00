package main

import (
	"bytes"
	"fmt"
	"go/format"
	"math"
	"strconv"
	"strings"
)

// specsOutput is where the command specs of package mdm/commands go,
// relative to the repository root.
const specsOutput = "mdm/commands/specs_gen.go"

// renderSpecs writes the Go source of mdm/commands' spec table: every
// command RequestType with its title, channels, platforms and keys in the
// shape of commands.Spec and commands.Key. The model's types lose their
// brackets, presence becomes Required, a rangelist becomes AllowedValues
// typed as the key (int64, float64, string or bool), a range becomes
// Min/Max, and subkeys become Keys, except the subkeys of a <string>,
// which list the values it may take (DeviceInformation's query names) and
// so become its AllowedValues. Anything the spec shape cannot carry fails
// here rather than producing a table that validates the wrong thing.
func renderSpecs(commands []Schema) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// "+generatedComment+"\n\n", "mdm/commands")
	b.WriteString("package commands\n\n")
	b.WriteString("// specs lists every command RequestType Apple documents, sorted by\n")
	b.WriteString("// RequestType and, at every level, by key name.\n")
	b.WriteString("var specs = []Spec{\n")
	for _, s := range commands {
		fmt.Fprintf(&b, "{RequestType: %q, Title: %q,\n", s.RequestType, s.Title)
		if len(s.Channels) > 0 {
			fmt.Fprintf(&b, "Channels: %#v,\n", s.Channels)
		}
		if len(s.Platforms) > 0 {
			b.WriteString("Platforms: []Platform{\n")
			for _, p := range s.Platforms {
				writePlatform(&b, p)
			}
			b.WriteString("},\n")
		}
		b.WriteString("Keys: ")
		if err := writeSpecKeys(&b, s.PayloadKeys, s.RequestType, false); err != nil {
			return nil, err
		}
		b.WriteString("},\n")
	}
	b.WriteString("}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("formatting %s: %w", specsOutput, err)
	}
	return src, nil
}

// writePlatform writes one Platform literal, leaving out zero fields.
func writePlatform(b *bytes.Buffer, p Platform) {
	fmt.Fprintf(b, "{OS: %q, Introduced: %q", p.OS, p.Introduced)
	for _, f := range []struct{ name, value string }{
		{"Deprecated", p.Deprecated}, {"Removed", p.Removed}, {"AccessRights", p.AccessRights},
	} {
		if f.value != "" {
			fmt.Fprintf(b, ", %s: %q", f.name, f.value)
		}
	}
	if p.Supervised {
		b.WriteString(", Supervised: true")
	}
	if p.RequiresDEP {
		b.WriteString(", RequiresDEP: true")
	}
	b.WriteString("},\n")
}

// writeSpecKeys writes keys as a []Key literal. items says they are an
// array's item types, whose presence means nothing (an item is there or
// it is not), so they are never Required. No keys are written as
// []Key{} at the top (the API serves "keys": [] for a command without
// any) and left out below.
func writeSpecKeys(b *bytes.Buffer, keys []Key, path string, items bool) error {
	if len(keys) == 0 {
		b.WriteString("[]Key{}")
		return nil
	}
	b.WriteString("[]Key{\n")
	for _, k := range keys {
		p := path + "." + k.Key
		typ := strings.TrimSuffix(strings.TrimPrefix(k.Type, "<"), ">")
		fmt.Fprintf(b, "{Name: %q, Type: %q", k.Key, typ)
		if k.Presence == "required" && !items {
			b.WriteString(", Required: true")
		}
		allowed, err := allowedValues(k, typ, p)
		if err != nil {
			return err
		}
		switch {
		case len(allowed) > 8: // one a line, for reading diffs
			fmt.Fprintf(b, ", AllowedValues: []any{\n%s,\n}", strings.Join(allowed, ",\n"))
		case len(allowed) > 0:
			fmt.Fprintf(b, ", AllowedValues: []any{%s}", strings.Join(allowed, ", "))
		}
		if k.Range != nil {
			if typ != "integer" && typ != "real" {
				return fmt.Errorf("%s: range on a %s", p, k.Type)
			}
			if k.Range.Min != nil {
				fmt.Fprintf(b, ", Min: bound(%s)", goFloat(*k.Range.Min))
			}
			if k.Range.Max != nil {
				fmt.Fprintf(b, ", Max: bound(%s)", goFloat(*k.Range.Max))
			}
		}
		if len(k.Subkeys) > 0 && typ != "string" {
			b.WriteString(", Keys: ")
			if err := writeSpecKeys(b, k.Subkeys, p, typ == "array"); err != nil {
				return err
			}
		}
		b.WriteString("},\n")
	}
	b.WriteString("}")
	return nil
}

// allowedValues returns the Go literals of a key's allowed values: its
// rangelist converted to the key's type, or a <string>'s subkey names.
func allowedValues(k Key, typ, path string) ([]string, error) {
	if typ == "string" && len(k.Subkeys) > 0 {
		if len(k.RangeList) > 0 {
			return nil, fmt.Errorf("%s: a <string> with both a rangelist and subkeys", path)
		}
		out := make([]string, len(k.Subkeys))
		for i, s := range k.Subkeys {
			if len(s.Subkeys) > 0 {
				return nil, fmt.Errorf("%s.%s: a <string> value with subkeys", path, s.Key)
			}
			out[i] = strconv.Quote(s.Key)
		}
		return out, nil
	}
	out := make([]string, 0, len(k.RangeList))
	for _, v := range k.RangeList {
		lit, ok := literal(v, typ)
		if !ok {
			return nil, fmt.Errorf("%s: rangelist value %#v is not a %s", path, v, k.Type)
		}
		out = append(out, lit)
	}
	return out, nil
}

// literal spells a rangelist value (as yaml.v3 decodes it: int, float64,
// string or bool) as a Go literal of the key's type. Only scalar types
// can be enumerations: the validator compares values with ==.
func literal(v any, typ string) (string, bool) {
	switch typ {
	case "string":
		s, ok := v.(string)
		return strconv.Quote(s), ok
	case "boolean":
		t, ok := v.(bool)
		return strconv.FormatBool(t), ok
	case "integer":
		switch n := v.(type) {
		case int:
			return fmt.Sprintf("int64(%d)", n), true
		case float64:
			if n == math.Trunc(n) && math.Abs(n) < 1<<53 {
				return fmt.Sprintf("int64(%d)", int64(n)), true
			}
		}
	case "real":
		switch n := v.(type) {
		case int:
			return goFloat(float64(n)), true
		case float64:
			if !math.IsInf(n, 0) && !math.IsNaN(n) {
				return goFloat(n), true
			}
		}
	}
	return "", false
}

// goFloat spells f as a float64 constant expression.
func goFloat(f float64) string {
	return "float64(" + strconv.FormatFloat(f, 'g', -1, 64) + ")"
}
