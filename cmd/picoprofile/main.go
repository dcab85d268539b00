// Command picoprofile writes PicoMDM's enrollment profile (.mobileconfig)
// so nobody edits its XML by hand: an MDM payload pointing at the server
// and a SCEP (or PKCS#12) identity payload, optionally signed.
//
//	picoprofile -server-url https://mdm.example.com/mdm \
//	    -topic com.apple.mgmt.External.… \
//	    -scep-url https://mdm.example.com/scep -scep-challenge secret \
//	    -sign-cert signer.pem -sign-key signer.key -o enroll.mobileconfig
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/picomdm/picomdm/mdm/profile"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it parses args, writes the profile to
// -o or stdout, reports problems to stderr and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("picoprofile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		opts       profile.Options
		scep       profile.SCEP
		p12File    = fs.String("pkcs12", "", "PKCS#12 `file` to use as the device identity instead of SCEP")
		p12Pass    = fs.String("pkcs12-password", "", "password of the -pkcs12 file")
		signCert   = fs.String("sign-cert", "", "PEM `file` of the signing certificate (then intermediates); signs the profile")
		signKey    = fs.String("sign-key", "", "PEM `file` of the signing certificate's private key")
		outFile    = fs.String("o", "", "output `file` (default: standard output)")
		identifier = fs.String("identifier", "", "profile PayloadIdentifier (default "+profile.DefaultIdentifier+")")
	)
	fs.StringVar(&opts.ServerURL, "server-url", "", "MDM ServerURL (required)")
	fs.StringVar(&opts.CheckInURL, "checkin-url", "", "MDM CheckInURL (default: the ServerURL)")
	fs.StringVar(&opts.Topic, "topic", "", "APNs push topic, the push certificate's UID (required)")
	fs.IntVar(&opts.AccessRights, "access-rights", profile.DefaultAccessRights, "MDM AccessRights bit mask")
	fs.StringVar(&opts.Name, "name", profile.DefaultName, "profile PayloadDisplayName")
	fs.StringVar(&opts.Organization, "org", "", "profile PayloadOrganization")
	fs.StringVar(&scep.URL, "scep-url", "", "SCEP server URL (required unless -pkcs12)")
	fs.StringVar(&scep.Challenge, "scep-challenge", "", "SCEP challenge password")
	fs.StringVar(&scep.Subject, "scep-subject", profile.DefaultSCEPSubject, "SCEP certificate subject")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "picoprofile: unexpected arguments %q\n", fs.Args())
		return 2
	}
	opts.Identifier = *identifier
	if err := build(&opts, scep, *p12File, *p12Pass, *signCert, *signKey, *outFile, stdout); err != nil {
		fmt.Fprintln(stderr, "picoprofile:", err)
		return 1
	}
	return 0
}

// build fills in the identity, generates and optionally signs the
// profile, and writes it out.
func build(opts *profile.Options, scep profile.SCEP, p12File, p12Pass, signCert, signKey, outFile string, stdout io.Writer) error {
	if p12File != "" {
		if scep.URL != "" {
			return errors.New("give -scep-url or -pkcs12, not both")
		}
		data, err := os.ReadFile(p12File)
		if err != nil {
			return err
		}
		opts.PKCS12 = &profile.PKCS12{Data: data, Password: p12Pass}
	} else {
		opts.SCEP = &scep
	}
	b, err := profile.Generate(*opts)
	if err != nil {
		return err
	}
	if (signCert == "") != (signKey == "") {
		return errors.New("-sign-cert and -sign-key go together")
	}
	if signCert != "" {
		certPEM, err := os.ReadFile(signCert)
		if err != nil {
			return err
		}
		keyPEM, err := os.ReadFile(signKey)
		if err != nil {
			return err
		}
		if b, err = profile.SignPEM(b, certPEM, keyPEM); err != nil {
			return err
		}
	}
	if outFile == "" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(outFile, b, 0o644)
}
