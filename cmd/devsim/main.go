// Command devsim simulates Apple devices against an MDM server: it enrolls
// them (Authenticate, TokenUpdate) with identities issued by a device CA,
// prints their enrollment IDs, then drains their command queues, printing
// each command as "<id> <CommandUUID> <RequestType>" and answering it.
//
//	devsim -ca-cert ca.pem -ca-key ca.key [-url http://127.0.0.1:9000/mdm] [-devices N] [-watch 10s] [-v]
//	devsim -profile-url http://127.0.0.1:9000/mdm/enroll [-devices N] [-watch 10s] [-v]
//
// With -profile-url each device enrolls as a real one does from a served
// profile: it downloads the profile, gets its identity certificate by
// SCEP with the profile's challenge, and checks in at the profile's
// ServerURL.
//
// "devsim bench" is a load generator for any NanoMDM-compatible server
// (see package test/load for its phases), reporting "name value unit"
// lines or, with -json, one JSON object:
//
//	devsim bench -url http://127.0.0.1:9000/mdm -api-key KEY -ca-cert ca.pem -ca-key ca.key \
//		-devices 1000 -concurrency 32 -commands 5 [-apns-listen 127.0.0.1:8443 -apns-cert apns.pem -apns-key apns.key]
//
// "devsim push-cert -topic T -cert push.pem -key push.key" writes a
// throw-away MDM push certificate for topic T, to upload with PUT
// /v1/pushcert to a server whose devices are simulated.
//
// "devsim ca -cert ca.pem -key ca.key" writes a throw-away device CA for a
// server's -ca. "devsim apns-cert -cert apns.pem -key apns.key" writes the certificate
// the bench's mock APNs serves; start the server with
// -push-url https://127.0.0.1:8443 -push-ca apns.pem to push to it.
//
// The device logic lives in package test/device, the load generator in
// test/load; this is flag parsing.
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
	if len(args) > 0 {
		switch args[0] {
		case "bench":
			return runBench(ctx, args[1:], stdout, os.Stderr)
		case "apns-cert":
			return runAPNsCert(args[1:])
		case "ca":
			return runCA(args[1:])
		case "push-cert":
			return runPushCert(args[1:])
		}
	}
	fs := flag.NewFlagSet("devsim", flag.ContinueOnError)
	dev := addDeviceFlags(fs)
	var (
		caCert      = fs.String("ca-cert", "", "PEM file of the device CA certificate (required)")
		caKey       = fs.String("ca-key", "", "PEM file of the device CA private key (required unless -profile-url)")
		profileURL  = fs.String("profile-url", "", "enroll from this served enrollment profile (e.g. http://127.0.0.1:9000/mdm/enroll): each device downloads it, gets its identity from the profile's SCEP payload and talks to its ServerURL (-url, -ca-cert, -ca-key and -topic are then unused)")
		devices     = fs.Int("devices", 1, "number of devices to simulate")
		certHeader  = fs.String("cert-header", "", "send the certificate in this header (RFC 9440 form) instead of signing")
		watch       = fs.Duration("watch", 0, "poll with Idle every `DURATION` until interrupted (0: drain once and exit)")
		answer      = fs.String("answer", "Acknowledged", "status to answer commands with")
		concurrency = fs.Int("concurrency", 64, "devices talking to the server at once (0: all)")
		verbose     = fs.Bool("v", false, "print each command's raw plist")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var opts []device.Option
	if *dev.checkinURL != "" {
		opts = append(opts, device.WithCheckinURL(*dev.checkinURL))
	}
	if *certHeader != "" {
		opts = append(opts, device.WithCertHeader(*certHeader, device.CertHeaderRFC9440))
	}
	var fleet *device.Fleet
	if *profileURL != "" {
		f, err := device.NewFleetFromProfile(ctx, *profileURL, *devices, opts...)
		if err != nil {
			return fmt.Errorf("enrolling from %s: %w", *profileURL, err)
		}
		fleet = f
	} else {
		if *caCert == "" || *caKey == "" {
			return errors.New("-ca-cert and -ca-key are required (the device CA the server trusts, e.g. the files picomdm -dev writes), or -profile-url")
		}
		kt, err := device.ParseKeyType(*dev.keyType)
		if err != nil {
			return err
		}
		ca, err := loadCA(*caCert, *caKey)
		if err != nil {
			return err
		}
		opts = append([]device.Option{device.WithKeyType(kt), device.WithTopic(*dev.topic)}, opts...)
		if fleet, err = device.NewFleet(ca, *dev.serverURL, *devices, opts...); err != nil {
			return err
		}
	}
	fleet.Concurrency = *concurrency
	fleet.Answer = device.Answer(*answer)
	fleet.PrintTo(stdout, *verbose)
	return fleet.Run(ctx, *watch)
}

// deviceFlags are the flags devsim and devsim bench share: where the
// simulated devices talk and what keys and topic they have.
type deviceFlags struct {
	serverURL, checkinURL, keyType, topic *string
}

// addDeviceFlags registers the deviceFlags on fs.
func addDeviceFlags(fs *flag.FlagSet) deviceFlags {
	return deviceFlags{
		serverURL:  fs.String("url", "http://127.0.0.1:9000/mdm", "server MDM URL the devices use"),
		checkinURL: fs.String("checkin-url", "", "separate check-in URL (servers run with -checkin)"),
		keyType:    fs.String("key-type", "rsa", "device identity key type: rsa (RSA-2048, what SCEP issues) or ecdsa (P-256)"),
		topic:      fs.String("topic", device.DefaultTopic, "push topic the devices report"),
	}
}

// parseFlags parses args with fs, refusing arguments after the flags.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return nil
}

// loadCA reads the device CA from its certificate and key files; an empty
// certFile means the key file holds both.
func loadCA(certFile, keyFile string) (*device.CA, error) {
	if certFile == "" {
		certFile = keyFile
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	return device.LoadCA(certPEM, keyPEM)
}
