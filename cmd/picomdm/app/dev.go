package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DevFiles are what -dev mode keeps under the storage directory.
type DevFiles struct {
	Dir        string
	CACert     string
	CAKey      string
	APIKeyFile string
	APIKey     string
}

// ensureDevFiles creates (once) a throw-away device CA and API key under
// dir/dev, and returns where they are. Existing files are reused, so a
// restarted dev server keeps accepting the devices it enrolled.
func ensureDevFiles(dir string) (*DevFiles, error) {
	d := &DevFiles{Dir: filepath.Join(dir, "dev")}
	d.CACert = filepath.Join(d.Dir, "ca.pem")
	d.CAKey = filepath.Join(d.Dir, "ca.key")
	d.APIKeyFile = filepath.Join(d.Dir, "api.key")
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating dev directory: %w", err)
	}
	if _, err := os.Stat(d.CACert); errors.Is(err, fs.ErrNotExist) {
		if err := writeDevCA(d.CACert, d.CAKey); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(d.APIKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		key = []byte(hex.EncodeToString(b))
		if err := os.WriteFile(d.APIKeyFile, append(key, '\n'), 0o600); err != nil {
			return nil, fmt.Errorf("writing dev API key: %w", err)
		}
	} else if err != nil {
		return nil, err
	}
	d.APIKey = strings.TrimSpace(string(key))
	return d, nil
}

func writeDevCA(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "PicoMDM development device CA (NOT FOR PRODUCTION)"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("creating dev CA: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("writing dev CA key: %w", err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("writing dev CA: %w", err)
	}
	return nil
}
