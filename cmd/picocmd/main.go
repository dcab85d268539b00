// Command picocmd builds a raw MDM command plist for any command
// RequestType of Apple's device-management schemas, typing each key=value
// argument from a table generated from those schemas (commands_gen.go,
// written by tools/schemagen). The plist goes to standard output, ready
// for PicoMDM's enqueue API:
//
//	picocmd DeviceInformation Queries=UDID,OSVersion | curl -T - …/v1/enqueue/ID
//	picocmd -uuid 0F0E… InstallProfile Payload=@profile.mobileconfig
//	picocmd -list
//	picocmd -keys ScheduleOSUpdate
//
// Values are typed by the key's plist type: <string> as is, <integer> and
// <real> parsed, <boolean> true/false, <date> RFC 3339, <data> base64 or
// @file, <array> of scalars as a comma-separated list or by repeating the
// key (or a JSON array), <dictionary> as a JSON object.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it parses args, writes the result to
// stdout and problems to stderr, and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("picocmd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	uuid := fs.String("uuid", "", "CommandUUID (default: a random upper-case UUID)")
	list := fs.Bool("list", false, "print every command RequestType and exit")
	keys := fs.String("keys", "", "print the keys of this `RequestType` and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: picocmd [-uuid UUID] RequestType [key=value ...]")
		fmt.Fprintln(stderr, "       picocmd -list | -keys RequestType")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case *list:
		for _, c := range commandTable {
			fmt.Fprintln(stdout, c.RequestType)
		}
		return 0
	case *keys != "":
		spec, err := lookup(*keys)
		if err != nil {
			fmt.Fprintln(stderr, "picocmd:", err)
			return 1
		}
		fmt.Fprint(stdout, describeKeys(spec.Keys))
		return 0
	case fs.NArg() == 0:
		fs.Usage()
		return 2
	}
	raw, err := Build(fs.Arg(0), fs.Args()[1:], *uuid, os.ReadFile)
	if err != nil {
		fmt.Fprintln(stderr, "picocmd:", err)
		return 1
	}
	stdout.Write(raw)
	return 0
}
