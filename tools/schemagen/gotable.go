package main

import (
	"bytes"
	"fmt"
	"go/format"
)

// tableOutput is where the Go command table goes, relative to the
// repository root.
const tableOutput = "cmd/picocmd/commands_gen.go"

// renderTable writes the Go source of cmd/picocmd's command table: every
// command RequestType with its keys' names, plist types, presence and
// subkeys. Descriptions, defaults and platforms stay in the JSON; picocmd
// only needs what it takes to type a command-line value.
func renderTable(commands []Schema) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// "+generatedComment+"\n\n", "mdm/commands")
	b.WriteString("package main\n\n")
	b.WriteString("// commandTable lists every command RequestType and its payload keys,\n")
	b.WriteString("// sorted by RequestType and, at every level, by key name.\n")
	b.WriteString("var commandTable = []commandSpec{\n")
	for _, s := range commands {
		fmt.Fprintf(&b, "{RequestType: %q, Keys: ", s.RequestType)
		writeKeys(&b, s.PayloadKeys)
		b.WriteString("},\n")
	}
	b.WriteString("}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("formatting %s: %w", tableOutput, err)
	}
	return src, nil
}

// writeKeys writes keys as a []keySpec literal (nil when there are none).
func writeKeys(b *bytes.Buffer, keys []Key) {
	if len(keys) == 0 {
		b.WriteString("nil")
		return
	}
	b.WriteString("[]keySpec{\n")
	for _, k := range keys {
		fmt.Fprintf(b, "{Name: %q, Type: %q", k.Key, k.Type)
		if k.Presence == "required" {
			b.WriteString(", Required: true")
		}
		if len(k.Subkeys) > 0 {
			b.WriteString(", Subkeys: ")
			writeKeys(b, k.Subkeys)
		}
		b.WriteString("},\n")
	}
	b.WriteString("}")
}
