// Command devsim simulates Apple devices against an MDM server: it enrolls
// them (Authenticate, TokenUpdate) with identities issued by a device CA,
// prints their enrollment IDs, then drains their command queues, printing
// each command as "<id> <CommandUUID> <RequestType>" and answering it.
//
//	devsim -ca-cert ca.pem -ca-key ca.key [-url http://127.0.0.1:9000/mdm] [-devices N] [-watch 10s] [-v]
//
// The device logic lives in package test/device; this is flag parsing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/picomdm/picomdm/test/device"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "devsim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("devsim", flag.ContinueOnError)
	var (
		serverURL   = fs.String("url", "http://127.0.0.1:9000/mdm", "server MDM URL")
		checkinURL  = fs.String("checkin-url", "", "separate check-in URL (servers run with -checkin)")
		caCert      = fs.String("ca-cert", "", "PEM file of the device CA certificate (required)")
		caKey       = fs.String("ca-key", "", "PEM file of the device CA private key (required)")
		devices     = fs.Int("devices", 1, "number of devices to simulate")
		keyType     = fs.String("key-type", "rsa", "device identity key type: rsa or ecdsa")
		topic       = fs.String("topic", device.DefaultTopic, "push topic the devices report")
		certHeader  = fs.String("cert-header", "", "send the certificate in this header (RFC 9440 form) instead of signing")
		watch       = fs.Duration("watch", 0, "poll with Idle every `DURATION` until interrupted (0: drain once and exit)")
		answer      = fs.String("answer", "Acknowledged", "status to answer commands with")
		concurrency = fs.Int("concurrency", 64, "devices talking to the server at once (0: all)")
		verbose     = fs.Bool("v", false, "print each command's raw plist")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *caCert == "" || *caKey == "" {
		return errors.New("-ca-cert and -ca-key are required (the device CA the server trusts, e.g. the files picomdm -dev writes)")
	}
	kt, err := device.ParseKeyType(*keyType)
	if err != nil {
		return err
	}
	certPEM, err := os.ReadFile(*caCert)
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(*caKey)
	if err != nil {
		return err
	}
	ca, err := device.LoadCA(certPEM, keyPEM)
	if err != nil {
		return err
	}

	opts := []device.Option{device.WithKeyType(kt), device.WithTopic(*topic)}
	if *checkinURL != "" {
		opts = append(opts, device.WithCheckinURL(*checkinURL))
	}
	if *certHeader != "" {
		opts = append(opts, device.WithCertHeader(*certHeader, device.CertHeaderRFC9440))
	}
	fleet, err := device.NewFleet(ca, *serverURL, *devices, opts...)
	if err != nil {
		return err
	}
	fleet.Concurrency = *concurrency
	fleet.Answer = device.Answer(*answer)
	fleet.PrintTo(stdout, *verbose)
	return fleet.Run(ctx, *watch)
}
