// Command picopush makes the files of Apple's MDM push certificate flow
// ("Setting Up Push Notifications for Your MDM Customers", "MDM Vendor
// CSR Signing Overview"): the customer's key and CSR, and, for an MDM
// vendor holding an MDM signing certificate, the Push Certificate Request
// uploaded at https://identity.apple.com/pushcert.
//
//	picopush csr -key push.key -csr push.csr -cn "Example Inc MDM" -email it@example.com
//	picopush sign -csr push.csr -vendor-cert vendor.pem -vendor-key vendor.key \
//	    -chain apple-chain.pem -o PushCertificateRequest
//
// It never goes to the network: the operator downloads Apple's
// certificates.
package main

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/picomdm/picomdm/mdm/pemkey"
	"github.com/picomdm/picomdm/push/certrequest"
)

const usage = `Usage:
  picopush csr  -key push.key -csr push.csr -cn NAME [-email ADDRESS] [-org ORG]
  picopush sign -csr push.csr -vendor-cert vendor.pem -vendor-key vendor.key \
                -chain apple-chain.pem [-o PushCertificateRequest]

picopush makes the files of Apple's MDM push certificate flow ("Setting Up
Push Notifications for Your MDM Customers"). It never goes to the network.

 1. The customer, who runs PicoMDM, runs "picopush csr". It creates the RSA
    2048 key -key (mode 0600) or, if that file exists, reuses it (a renewal
    may keep the key), and writes the CSR to -csr (PEM). Keep the key; send
    the CSR to the MDM vendor.
 2. The MDM vendor, who holds an MDM signing certificate from Apple's
    developer portal and its private key, runs "picopush sign".
    -vendor-cert is that certificate (PEM or the portal's DER .cer);
    -vendor-key its unencrypted key (PEM; a Keychain .p12 converts with
    "openssl pkcs12 -in vendor.p12 -nodes -out vendor.pem", then give
    vendor.pem to both flags). -chain is the Apple Worldwide Developer
    Relations intermediate that issued the vendor certificate and the Apple
    Inc. root, downloaded from https://www.apple.com/certificateauthority/
    (PEM or DER; repeat -chain for several files). The vendor sends the
    -o file back to the customer.
 3. The customer uploads that file at https://identity.apple.com/pushcert
    (Renew an existing certificate to keep its topic; Create makes a new
    topic) and downloads the push certificate, push.pem.
 4. The customer gives the certificate and the key to PicoMDM:
      cat push.pem push.key | curl -u picomdm:KEY -T - https://mdm.example.com/v1/pushcert

Run "picopush csr -h" or "picopush sign -h" for the flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it dispatches to the subcommand,
// reports problems to stderr and returns the exit status (2 for bad
// usage, 1 for a failure).
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "csr":
		return runCSR(args[1:], stdout, stderr)
	case "sign":
		return runSign(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "picopush: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// parse sets the subcommand's usage, parses its flags and refuses
// arguments and missing required flags; ok is false when run should
// return code.
func parse(set *flag.FlagSet, synopsis string, args []string, stderr io.Writer, required map[string]*string) (code int, ok bool) {
	set.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\nRun \"picopush help\" for the whole flow.\n\n", synopsis)
		set.PrintDefaults()
	}
	if err := set.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if set.NArg() > 0 {
		fmt.Fprintf(stderr, "picopush %s: unexpected arguments %q\n", set.Name(), set.Args())
		return 2, false
	}
	var missing []string
	set.VisitAll(func(f *flag.Flag) {
		if v, ok := required[f.Name]; ok && *v == "" {
			missing = append(missing, "-"+f.Name)
		}
	})
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "picopush %s: missing %s\n", set.Name(), strings.Join(missing, ", "))
		return 2, false
	}
	return 0, true
}

// runCSR is "picopush csr".
func runCSR(args []string, stdout, stderr io.Writer) int {
	set := flag.NewFlagSet("csr", flag.ContinueOnError)
	set.SetOutput(stderr)
	var (
		keyFile = set.String("key", "push.key", "PEM `file` of the push certificate's RSA key; created (mode 0600) if it does not exist")
		csrFile = set.String("csr", "push.csr", "`file` to write the CSR to (PEM)")
		cn      = set.String("cn", "", "subject common `name` of the CSR (required)")
		email   = set.String("email", "", "subject email `address` of the CSR")
		org     = set.String("org", "", "subject `organization` of the CSR")
	)
	if code, ok := parse(set, "picopush csr -key push.key -csr push.csr -cn NAME [-email ADDRESS] [-org ORG]", args, stderr, map[string]*string{"cn": cn, "key": keyFile, "csr": csrFile}); !ok {
		return code
	}
	subject := pkix.Name{CommonName: *cn}
	if *org != "" {
		subject.Organization = []string{*org}
	}
	created, err := makeCSR(*keyFile, *csrFile, subject, *email, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "picopush csr:", err)
		return 1
	}
	how := "reused the key in"
	if created {
		how = "created the key"
	}
	fmt.Fprintf(stdout, "wrote %s (%s %s)\nsend %s to your MDM vendor for signing; keep %s for the push certificate\n", *csrFile, how, *keyFile, *csrFile, *keyFile)
	return 0
}

// makeCSR loads or creates the key in keyFile and writes a CSR for it to
// csrFile. The CSR is made before a new key is written, so bad input
// leaves no key behind.
func makeCSR(keyFile, csrFile string, subject pkix.Name, email string, stderr io.Writer) (created bool, err error) {
	key, err := readRSAKey(keyFile, stderr)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if key, err = certrequest.NewKey(); err != nil {
			return false, err
		}
		created = true
	case err != nil:
		return false, err
	}
	der, err := certrequest.NewCSR(key, subject, email)
	if err != nil {
		return false, err
	}
	if created {
		if err := writeKey(keyFile, key); err != nil {
			return false, err
		}
	}
	if err := os.WriteFile(csrFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644); err != nil {
		return created, fmt.Errorf("writing CSR: %w", err)
	}
	return created, nil
}

// readRSAKey reads an existing RSA key (PKCS #1 or PKCS #8 PEM). Its error
// wraps fs.ErrNotExist when the file does not exist. A key readable by
// others is used, with a warning.
func readRSAKey(file string, stderr io.Writer) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(stderr, "picopush csr: warning: %s is readable by others (mode %v)\n", file, fi.Mode().Perm())
	}
	signer, err := parseKey(b)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", file, err)
	}
	key, ok := signer.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key %s is %T, Apple's push certificate needs RSA", file, signer)
	}
	return key, nil
}

// writeKey writes key as PKCS #8 PEM to a new file of mode 0600, never
// over an existing one.
func writeKey(file string, key *rsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding key: %w", err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(file)
		return fmt.Errorf("writing key: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(file)
		return fmt.Errorf("writing key: %w", err)
	}
	return nil
}

// files is a repeatable flag of file names.
type files []string

func (f *files) String() string { return strings.Join(*f, ",") }

func (f *files) Set(s string) error {
	*f = append(*f, s)
	return nil
}

// runSign is "picopush sign".
func runSign(args []string, stdout, stderr io.Writer) int {
	set := flag.NewFlagSet("sign", flag.ContinueOnError)
	set.SetOutput(stderr)
	var (
		chain      files
		csrFile    = set.String("csr", "push.csr", "the customer's CSR `file` (PEM or DER)")
		vendorCert = set.String("vendor-cert", "", "`file` of the MDM signing certificate (PEM or DER; PEM may hold the chain too) (required)")
		vendorKey  = set.String("vendor-key", "", "PEM `file` of the MDM signing certificate's unencrypted RSA key (required)")
		outFile    = set.String("o", "PushCertificateRequest", "`file` to write the Push Certificate Request to")
	)
	set.Var(&chain, "chain", "`file` of the WWDR intermediate and the Apple Inc. root (PEM or DER); repeatable")
	if code, ok := parse(set, "picopush sign -csr push.csr -vendor-cert vendor.pem -vendor-key vendor.key -chain apple-chain.pem [-o PushCertificateRequest]", args, stderr, map[string]*string{"csr": csrFile, "vendor-cert": vendorCert, "vendor-key": vendorKey, "o": outFile}); !ok {
		return code
	}
	cn, err := sign(*csrFile, *vendorCert, *vendorKey, chain, *outFile)
	if err != nil {
		fmt.Fprintln(stderr, "picopush sign:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s for the CSR of %q\nthe customer uploads it at https://identity.apple.com/pushcert\n", *outFile, cn)
	return 0
}

// sign reads the files, signs the CSR and writes the request; it returns
// the CSR's subject common name for the report.
func sign(csrFile, vendorCertFile, vendorKeyFile string, chainFiles []string, outFile string) (commonName string, err error) {
	b, err := os.ReadFile(csrFile)
	if err != nil {
		return "", fmt.Errorf("reading CSR: %w", err)
	}
	csrDER := b
	if block := findPEM(b, "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"); block != nil {
		csrDER = block.Bytes
	}
	b, err = os.ReadFile(vendorKeyFile)
	if err != nil {
		return "", fmt.Errorf("reading vendor key: %w", err)
	}
	key, err := parseKey(b)
	if err != nil {
		return "", fmt.Errorf("vendor key %s: %w", vendorKeyFile, err)
	}
	certs, err := readCerts(vendorCertFile)
	if err != nil {
		return "", err
	}
	// The vendor file may hold the chain too (openssl pkcs12 output): the
	// vendor certificate is the one of the key.
	vendor, extra := certs[0], certs[1:]
	for i, c := range certs {
		if pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(key.Public()) {
			vendor = c
			extra = append(append([]*x509.Certificate(nil), certs[:i]...), certs[i+1:]...)
			break
		}
	}
	if len(chainFiles) == 0 && len(extra) == 0 {
		return "", errors.New("-chain is required: the WWDR intermediate and the Apple Inc. root certificates")
	}
	chain := extra
	for _, f := range chainFiles {
		c, err := readCerts(f)
		if err != nil {
			return "", err
		}
		chain = append(chain, c...)
	}
	req, err := certrequest.Sign(csrDER, vendor, key, chain)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(outFile, req, 0o644); err != nil {
		return "", fmt.Errorf("writing push certificate request: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER) // Sign checked it
	if err != nil {
		return "", fmt.Errorf("parsing CSR: %w", err)
	}
	return csr.Subject.CommonName, nil
}

// findPEM returns the first PEM block of b of one of types, or nil.
func findPEM(b []byte, types ...string) *pem.Block {
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return nil
		}
		for _, t := range types {
			if block.Type == t {
				return block
			}
		}
	}
}

// readCerts reads every certificate of a PEM file, or of a DER file (such
// as the .cer files Apple's sites hand out) when it holds no PEM.
func readCerts(file string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading certificates: %w", err)
	}
	var certs []*x509.Certificate
	sawPEM := false
	for rest := b; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		sawPEM = true
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate in %s: %w", file, err)
		}
		certs = append(certs, c)
	}
	if !sawPEM {
		if certs, err = x509.ParseCertificates(b); err != nil {
			return nil, fmt.Errorf("%s is neither PEM nor DER certificates: %w", file, err)
		}
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("no certificate in %s", file)
	}
	return certs, nil
}

// parseKey reads the first private key of PEM b: PKCS #8, PKCS #1 or SEC 1
// (Sign then says what it thinks of a key that is not RSA). Encrypted keys
// are refused.
func parseKey(b []byte) (crypto.Signer, error) {
	key, err := pemkey.Parse(b)
	if errors.Is(err, pemkey.ErrEncrypted) {
		return nil, fmt.Errorf("%w; decrypt it first (openssl pkey -in KEY -out PLAIN)", err)
	}
	return key, err
}
