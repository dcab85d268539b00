// Command picocmd builds an MDM command for any command RequestType of
// Apple's device-management schemas from key=value arguments. It turns
// the arguments into a JSON command object and builds the plist with
// mdm/commands, the validator and converter behind PicoMDM's POST
// /v1/commands, so picocmd refuses and converts exactly what the API
// does. The plist goes to standard output, ready for the enqueue API; with
// -json, the POST /v1/commands body instead:
//
//	picocmd DeviceInformation Queries=UDID,OSVersion | curl -T - …/v1/enqueue/ID
//	picocmd -uuid 0F0E… InstallProfile Payload=@profile.mobileconfig
//	picocmd -json -targets ID1,ID2 DeviceLock PIN=123456 | curl --json @- …/v1/commands
//	picocmd -list
//	picocmd -keys ScheduleOSUpdate
//
// Values are spelled by the key's plist type: <string> as is, <integer>
// and <real> as numbers, <boolean> true/false, <date> RFC 3339, <data>
// base64 or @file, <array> of scalars as a comma-separated list or by
// repeating the key (or a JSON array), <dictionary> as a JSON object (its
// <data> as base64, its <date>s RFC 3339, like the API's JSON).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/picomdm/picomdm/mdm/commands"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it parses args, writes the result to
// stdout and problems to stderr, and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("picocmd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	uuid := fs.String("uuid", "", "CommandUUID (default: a random one)")
	asJSON := fs.Bool("json", false, "print the POST /v1/commands JSON body instead of the plist")
	targets := fs.String("targets", "", "with -json, the body's targets: comma-separated enrollment `IDs` (default: none, \"targets\": [])")
	list := fs.Bool("list", false, "print every command RequestType and exit")
	keys := fs.String("keys", "", "print the keys of this `RequestType` and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: picocmd [-uuid UUID] [-json [-targets ID,…]] RequestType [key=value ...]")
		fmt.Fprintln(stderr, "       picocmd -list | -keys RequestType")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case *list:
		for _, s := range commands.Specs() {
			fmt.Fprintln(stdout, s.RequestType)
		}
		return 0
	case *keys != "":
		spec, ok := commands.Lookup(*keys)
		if !ok {
			fmt.Fprintln(stderr, "picocmd:", unknownRequestType(*keys))
			return 1
		}
		fmt.Fprint(stdout, describeKeys(spec.Keys, true))
		return 0
	case fs.NArg() == 0:
		fs.Usage()
		return 2
	case *targets != "" && !*asJSON:
		fmt.Fprintln(stderr, "picocmd: -targets goes with -json")
		return 2
	}
	var out []byte
	var err error
	if *asJSON {
		out, err = BuildBody(fs.Arg(0), fs.Args()[1:], *uuid, splitTargets(*targets), os.ReadFile)
	} else {
		out, _, err = Build(fs.Arg(0), fs.Args()[1:], *uuid, os.ReadFile)
	}
	if err != nil {
		// A refusal ends with the list of keys, itself ending in a newline.
		fmt.Fprintln(stderr, "picocmd:", strings.TrimSuffix(err.Error(), "\n"))
		return 1
	}
	stdout.Write(out)
	return 0
}

// splitTargets splits a comma-separated list of IDs, leaving out empty
// ones; the API checks the IDs themselves.
func splitTargets(s string) []string {
	var ids []string
	for id := range strings.SplitSeq(s, ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}
