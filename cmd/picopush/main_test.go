package main

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/micromdm/plist"

	"github.com/picomdm/picomdm/test/testpki"
)

// vendorFiles names the files fakeVendor writes.
type vendorFiles struct {
	cert, key, chain         string // vendor.pem, vendor.key, apple-chain.pem
	intermediateDER, rootDER string // the chain as Apple's .cer files
	otherKey, ecKey          string // a key of no certificate, an EC key
	bundle                   string // key, root, vendor, intermediate in one PEM, like openssl pkcs12 -nodes
	rootOnly, encryptedKey   string
}

func writeFile(t *testing.T, name string, pems ...[]byte) {
	t.Helper()
	if err := os.WriteFile(name, bytes.Join(pems, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fakeVendor writes a fake Apple chain (root → intermediate → vendor,
// RSA) and the vendor's keys into dir.
func fakeVendor(t *testing.T, dir string) vendorFiles {
	t.Helper()
	root := testpki.NewCA(t, "Fake Apple Root CA", testpki.RSA())
	inter := root.Intermediate(t, "Fake Apple WWDR CA", testpki.RSA())
	vendor := inter.Issue(t, "MDM Vendor: Example", testpki.RSA())
	key := vendor.KeyPEM(t, "RSA PRIVATE KEY")

	f := vendorFiles{}
	for name, p := range map[string]*string{
		"vendor.pem": &f.cert, "vendor.key": &f.key, "apple-chain.pem": &f.chain,
		"wwdr.cer": &f.intermediateDER, "root.cer": &f.rootDER, "other.key": &f.otherKey, "ec.key": &f.ecKey,
		"bundle.pem": &f.bundle, "root.pem": &f.rootOnly, "encrypted.key": &f.encryptedKey,
	} {
		*p = filepath.Join(dir, name)
	}
	writeFile(t, f.cert, vendor.PEM())
	writeFile(t, f.key, key)
	writeFile(t, f.chain, inter.PEM(), root.PEM())
	writeFile(t, f.otherKey, inter.KeyPEM(t, "RSA PRIVATE KEY"))
	writeFile(t, f.ecKey, testpki.KeyPEM(t, testpki.NewECDSAKey(t), "EC PRIVATE KEY"))
	writeFile(t, f.bundle, key, root.PEM(), vendor.PEM(), inter.PEM())
	writeFile(t, f.rootOnly, root.PEM())
	writeFile(t, f.encryptedKey, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("opaque")}))
	for name, c := range map[string]*x509.Certificate{f.intermediateDER: inter.Cert, f.rootDER: root.Cert} {
		if err := os.WriteFile(name, c.Raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// readCSR reads the CSR PEM the csr command wrote.
func readCSR(t *testing.T, file string) *x509.CertificateRequest {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("%s is not a CSR PEM: %q", file, b)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	return csr
}

// checkRequest checks that file is base64 of the Push Certificate Request
// plist for csr.
func checkRequest(t *testing.T, file string, csr *x509.CertificateRequest) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(string(b))
	if err != nil {
		t.Fatalf("%s is not base64: %v", file, err)
	}
	var req map[string]string
	if err := plist.Unmarshal(raw, &req); err != nil {
		t.Fatalf("%s is not a plist of strings: %v", file, err)
	}
	for _, k := range []string{"PushCertRequestCSR", "PushCertCertificateChain", "PushCertSignature"} {
		if req[k] == "" {
			t.Errorf("%s: no %s", file, k)
		}
	}
	if req["PushCertRequestCSR"] != base64.StdEncoding.EncodeToString(csr.Raw) {
		t.Errorf("%s: PushCertRequestCSR is not the CSR", file)
	}
	if n := strings.Count(req["PushCertCertificateChain"], "-----BEGIN CERTIFICATE-----"); n != 3 {
		t.Errorf("%s: chain has %d certificates, want 3", file, n)
	}
}

// TestCSRThenSign runs the customer's and the vendor's steps.
func TestCSRThenSign(t *testing.T) {
	dir := t.TempDir()
	keyFile, csrFile := filepath.Join(dir, "push.key"), filepath.Join(dir, "push.csr")
	var out, errOut bytes.Buffer
	if code := run([]string{"csr", "-key", keyFile, "-csr", csrFile, "-cn", "Example MDM", "-email", "it@example.com", "-org", "Example Inc"}, &out, &errOut); code != 0 {
		t.Fatalf("csr: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "created the key") {
		t.Errorf("csr stdout = %q", out.String())
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	csr := readCSR(t, csrFile)
	if csr.Subject.CommonName != "Example MDM" || len(csr.Subject.Organization) != 1 || csr.Subject.Organization[0] != "Example Inc" {
		t.Errorf("CSR subject %v", csr.Subject)
	}
	email := false
	for _, n := range csr.Subject.Names {
		email = email || n.Type.String() == "1.2.840.113549.1.9.1" && n.Value == "it@example.com"
	}
	if !email {
		t.Errorf("CSR subject %v has no emailAddress it@example.com", csr.Subject.Names)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Public().(*rsa.PublicKey).Equal(csr.PublicKey) {
		t.Error("CSR is not for the key written")
	}

	// A second run reuses the key.
	out.Reset()
	if code := run([]string{"csr", "-key", keyFile, "-csr", csrFile, "-cn", "Renewed"}, &out, &errOut); code != 0 {
		t.Fatalf("csr again: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "reused") {
		t.Errorf("csr again stdout = %q", out.String())
	}
	if again, err := os.ReadFile(keyFile); err != nil || !bytes.Equal(again, keyPEM) {
		t.Errorf("key file changed (%v)", err)
	}
	csr = readCSR(t, csrFile)
	if csr.Subject.CommonName != "Renewed" || !key.Public().(*rsa.PublicKey).Equal(csr.PublicKey) {
		t.Errorf("second CSR: subject %v, same key %v", csr.Subject, key.Public().(*rsa.PublicKey).Equal(csr.PublicKey))
	}

	v := fakeVendor(t, dir)
	for name, args := range map[string][]string{
		"PEM chain":      {"-vendor-cert", v.cert, "-vendor-key", v.key, "-chain", v.chain},
		"DER chain":      {"-vendor-cert", v.cert, "-vendor-key", v.key, "-chain", v.intermediateDER, "-chain", v.rootDER},
		"pkcs12 bundle":  {"-vendor-cert", v.bundle, "-vendor-key", v.bundle},
		"bundle + chain": {"-vendor-cert", v.bundle, "-vendor-key", v.bundle, "-chain", v.chain},
	} {
		reqFile := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".req")
		out.Reset()
		errOut.Reset()
		if code := run(append([]string{"sign", "-csr", csrFile, "-o", reqFile}, args...), &out, &errOut); code != 0 {
			t.Errorf("sign %s: exit %d: %s", name, code, errOut.String())
			continue
		}
		if !strings.Contains(out.String(), `"Renewed"`) || !strings.Contains(out.String(), "identity.apple.com/pushcert") {
			t.Errorf("sign %s: stdout %q", name, out.String())
		}
		checkRequest(t, reqFile, csr)
	}
}

// TestRunRefuses checks exit codes and messages for bad usage (2) and
// failures (1), and that a failed csr leaves no key behind.
func TestRunRefuses(t *testing.T) {
	dir := t.TempDir()
	v := fakeVendor(t, dir)
	csrFile := filepath.Join(dir, "push.csr")
	var out, errOut bytes.Buffer
	if code := run([]string{"csr", "-key", filepath.Join(dir, "push.key"), "-csr", csrFile, "-cn", "x"}, &out, &errOut); code != 0 {
		t.Fatalf("csr: exit %d: %s", code, errOut.String())
	}
	sign := func(args ...string) []string {
		return append([]string{"sign", "-csr", csrFile, "-o", filepath.Join(dir, "req")}, args...)
	}
	newKey := filepath.Join(dir, "new.key")

	for name, tc := range map[string]struct {
		args   []string
		code   int
		stderr string
	}{
		"no command":         {nil, 2, "Usage:"},
		"unknown command":    {[]string{"mdmcert"}, 2, `unknown command "mdmcert"`},
		"csr without -cn":    {[]string{"csr", "-key", newKey}, 2, "missing -cn"},
		"csr unknown flag":   {[]string{"csr", "-cn", "x", "-bogus"}, 2, "flag provided but not defined: -bogus"},
		"csr extra argument": {[]string{"csr", "-cn", "x", "extra"}, 2, `unexpected arguments ["extra"]`},
		"csr bad email":      {[]string{"csr", "-key", newKey, "-csr", filepath.Join(dir, "n.csr"), "-cn", "x", "-email", "é@example.com"}, 1, "not printable ASCII"},
		"csr EC key":         {[]string{"csr", "-key", v.ecKey, "-csr", filepath.Join(dir, "n.csr"), "-cn", "x"}, 1, "needs RSA"},
		"sign no vendor":     {sign(), 2, "missing -vendor-cert, -vendor-key"},
		"sign extra":         {sign("-vendor-cert", v.cert, "-vendor-key", v.key, "-chain", v.chain, "x"), 2, "unexpected arguments"},
		"sign no chain":      {sign("-vendor-cert", v.cert, "-vendor-key", v.key), 1, "-chain is required"},
		"sign root only":     {sign("-vendor-cert", v.cert, "-vendor-key", v.key, "-chain", v.rootOnly), 1, "chain is incomplete"},
		"sign other key":     {sign("-vendor-cert", v.cert, "-vendor-key", v.otherKey, "-chain", v.chain), 1, "does not match"},
		"sign EC key":        {sign("-vendor-cert", v.cert, "-vendor-key", v.ecKey, "-chain", v.chain), 1, "not an RSA key"},
		"sign encrypted key": {sign("-vendor-cert", v.cert, "-vendor-key", v.encryptedKey, "-chain", v.chain), 1, "encrypted"},
		"sign key as cert":   {sign("-vendor-cert", v.key, "-vendor-key", v.key, "-chain", v.chain), 1, "no certificate in"},
		"sign missing CSR":   {[]string{"sign", "-csr", filepath.Join(dir, "none.csr"), "-vendor-cert", v.cert, "-vendor-key", v.key, "-chain", v.chain}, 1, "reading CSR"},
		"sign chain as CSR":  {[]string{"sign", "-csr", v.chain, "-vendor-cert", v.cert, "-vendor-key", v.key, "-chain", v.chain}, 1, "invalid certificate signing request"},
	} {
		out.Reset()
		errOut.Reset()
		if code := run(tc.args, &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.stderr) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", name, code, errOut.String(), tc.code, tc.stderr)
		}
	}
	if _, err := os.Stat(newKey); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed csr left %s behind (%v)", newKey, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "req")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed sign wrote a request (%v)", err)
	}

	for _, args := range [][]string{{"help"}, {"csr", "-h"}, {"sign", "-h"}} {
		out.Reset()
		errOut.Reset()
		if code := run(args, &out, &errOut); code != 0 || !strings.Contains(out.String()+errOut.String(), "Usage") {
			t.Errorf("%v: exit %d, output %q", args, code, out.String()+errOut.String())
		}
	}
}
