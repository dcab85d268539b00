package commands_test

import (
	"errors"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/mdm/commands"
	"github.com/picomdm/picomdm/mdm/commands/commandstest"
)

// FuzzFromJSON checks that FromJSON never panics, refuses only with a
// *PathError, and that whatever it accepts encodes with Plist to a
// command mdm.DecodeCommand takes and a device decodes to exactly the
// dictionary FromJSON returned: valid by construction.
func FuzzFromJSON(f *testing.F) {
	for _, spec := range commands.Specs() {
		for _, allOptional := range []bool{false, true} {
			body, _ := commandstest.SampleJSON(spec, allOptional)
			f.Add(body)
		}
	}
	for _, s := range []string{
		``, `{}`, `[]`, `null`, `{"RequestType":"DeviceLock"}{}`,
		`{"RequestType":"DeviceLock","PIN":"\u0000"}`,
		`{"RequestType":"InstallApplication","Configuration":{"a":[1,2.5,-0,1e400,"x\r\ny",{"b":null}]}}`,
		`{"RequestType":"Settings","Settings":[{"Item":"Wallpaper","Image":"AA==","Where":2}]}`,
		`{"RequestType":"InstallProfile","Payload":"YQ"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rt, dict, err := commands.FromJSON(body)
		if err != nil {
			var pe *commands.PathError
			if !errors.As(err, &pe) {
				t.Fatalf("refusal %T %v is not a *PathError", err, err)
			}
			return
		}
		raw, err := commands.Plist("FUZZ-UUID", dict)
		if err != nil {
			t.Fatalf("Plist of accepted %q: %v", body, err)
		}
		cmd, err := mdm.DecodeCommand(raw)
		if err != nil || cmd.RequestType() != rt || cmd.CommandUUID != "FUZZ-UUID" {
			t.Fatalf("DecodeCommand: %v %+v\n%s", err, cmd, raw)
		}
		_, got, err := commandstest.DecodeCommand(raw)
		if err != nil {
			t.Fatalf("decoding %s: %v", raw, err)
		}
		if d := commandstest.Diff(got, dict); d != "" {
			t.Fatalf("%q: the device gets something else: %s\n%s", body, d, raw)
		}
	})
}
