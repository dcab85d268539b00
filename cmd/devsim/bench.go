package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/picomdm/picomdm/test/apnsmock"
	"github.com/picomdm/picomdm/test/device"
	"github.com/picomdm/picomdm/test/load"
)

// runBench is "devsim bench": flags → load.Config → report.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devsim bench", flag.ContinueOnError)
	dev := addDeviceFlags(fs)
	var (
		apiURL       = fs.String("api-url", "", "server base URL for /v1 and /migration (default: -url's scheme and host)")
		apiKey       = fs.String("api-key", "", "server API key (required)")
		caCert       = fs.String("ca-cert", "", "PEM file of the device CA certificate (default: read it from -ca-key)")
		caKey        = fs.String("ca-key", "", "PEM file of the device CA private key (required)")
		devices      = fs.Int("devices", 1000, "number of simulated devices")
		concurrency  = fs.Int("concurrency", 32, "devices or API calls in flight at once")
		commands     = fs.Int("commands", 5, "commands per device in the round-trip phase")
		depth        = fs.Int("depth", 20, "queue depth per device in the poll-latency phase (0: skip)")
		multiTargets = fs.Int("multi-targets", 0, "targets of the multi-target enqueue; beyond -devices they are added through /migration (server needs -migration); 0: -devices")
		keys         = fs.Int("keys", 16, "distinct device keys, shared round-robin (every device still has its own certificate)")
		apnsListen   = fs.String("apns-listen", "", "run a mock APNs on this address for the push phase (the server needs -push-url https://ADDR -push-ca FILE); empty skips the phase")
		apnsCert     = fs.String("apns-cert", "", "PEM certificate the mock APNs serves (see devsim apns-cert)")
		apnsKey      = fs.String("apns-key", "", "PEM private key of -apns-cert")
		serverPID    = fs.Int("server-pid", 0, "server process ID, to report its resident memory after the run (Linux)")
		jsonOut      = fs.Bool("json", false, "print the results as one JSON object")
		progress     = fs.Duration("progress", 2*time.Second, "print progress to stderr every `DURATION` (0: off)")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *apiKey == "" || *caKey == "" {
		return errors.New("bench: -api-key and -ca-key are required")
	}
	ca, err := loadCA(*caCert, *caKey)
	if err != nil {
		return err
	}
	kt, err := device.ParseKeyType(*dev.keyType)
	if err != nil {
		return err
	}
	cfg := load.Config{
		MDMURL: *dev.serverURL, CheckinURL: *dev.checkinURL, APIURL: *apiURL, APIKey: *apiKey, CA: ca,
		Devices: *devices, Concurrency: *concurrency, Commands: *commands, Depth: *depth,
		MultiTargets: *multiTargets, KeyType: kt, Keys: *keys, Topic: *dev.topic, ServerPID: *serverPID,
	}
	if *depth == 0 {
		cfg.Depth = -1
	}
	if *progress > 0 {
		cfg.Progress, cfg.ProgressEvery = stderr, *progress
	}
	if *apnsListen != "" {
		certPEM, err := os.ReadFile(*apnsCert)
		if err != nil {
			return fmt.Errorf("-apns-cert: %w", err)
		}
		keyPEM, err := os.ReadFile(*apnsKey)
		if err != nil {
			return fmt.Errorf("-apns-key: %w", err)
		}
		mock, err := apnsmock.Listen(*apnsListen, certPEM, keyPEM)
		if err != nil {
			return err
		}
		defer mock.Close()
		cfg.APNs = mock
	}
	report, runErr := load.Run(ctx, cfg)
	if report != nil {
		var err error
		if *jsonOut {
			err = report.WriteJSON(stdout)
		} else {
			err = report.WriteText(stdout)
		}
		if err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	if !report.Correct() {
		return errors.New("bench: commands were lost, duplicated, reordered or unexpected (see commands_* above)")
	}
	return nil
}

// runAPNsCert is "devsim apns-cert": it writes a self-signed certificate
// and key for the bench's mock APNs.
func runAPNsCert(args []string) error {
	fs := flag.NewFlagSet("devsim apns-cert", flag.ContinueOnError)
	certFile := fs.String("cert", "apns.pem", "where to write the PEM certificate (give it to the server as -push-ca)")
	keyFile := fs.String("key", "apns.key", "where to write the PEM private key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	certPEM, keyPEM, err := apnsmock.NewServerCertificate()
	if err != nil {
		return err
	}
	return writePair(*certFile, *keyFile, certPEM, keyPEM)
}

// runPushCert is "devsim push-cert": it writes a throw-away MDM push
// certificate and key for a topic, to PUT at /v1/pushcert on a server
// whose devices are simulated (APNs refuses it; the bench's mock APNs and
// -push-url test servers take it).
func runPushCert(args []string) error {
	fs := flag.NewFlagSet("devsim push-cert", flag.ContinueOnError)
	topic := fs.String("topic", device.DefaultTopic, "APNs topic (the certificate subject's UID)")
	certFile := fs.String("cert", "push.pem", "where to write the PEM certificate")
	keyFile := fs.String("key", "push.key", "where to write the PEM private key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	certPEM, keyPEM := apnsmock.NewProviderCertificate(*topic)
	return writePair(*certFile, *keyFile, certPEM, keyPEM)
}

// runCA is "devsim ca": it writes a throw-away device CA (certificate and
// key) for a server's -ca and devsim's -ca-cert/-ca-key.
func runCA(args []string) error {
	fs := flag.NewFlagSet("devsim ca", flag.ContinueOnError)
	certFile := fs.String("cert", "ca.pem", "where to write the PEM CA certificate (give it to the server as -ca)")
	keyFile := fs.String("key", "ca.key", "where to write the PEM CA private key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ca, err := device.NewCA()
	if err != nil {
		return err
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	return writePair(*certFile, *keyFile, ca.CertPEM(), keyPEM)
}

// writePair writes a PEM certificate (readable by all) and its private
// key (by the owner only).
func writePair(certFile, keyFile string, certPEM, keyPEM []byte) error {
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyFile, keyPEM, 0o600)
}
