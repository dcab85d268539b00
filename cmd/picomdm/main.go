// Command picomdm is the PicoMDM server: an Apple MDM server, drop-in
// compatible with NanoMDM. Run it with -h for its flags; every flag can
// also be set as PICOMDM_<NAME> (or NANOMDM_<NAME>).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/picomdm/picomdm/cmd/picomdm/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "picomdm:", err)
		os.Exit(1)
	}
}
