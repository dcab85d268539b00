package load

import (
	"crypto"
	"io"
	"sync/atomic"
	"time"
)

// timedSigner is a device key that counts its signatures and the time they
// took, so a report can say when the client is the bottleneck.
type timedSigner struct {
	signer crypto.Signer
	total  atomic.Int64 // nanoseconds
	count  atomic.Int64
}

// Public implements crypto.Signer.
func (s *timedSigner) Public() crypto.PublicKey { return s.signer.Public() }

// Sign implements crypto.Signer.
func (s *timedSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := s.signer.Sign(rand, digest, opts)
	s.total.Add(int64(time.Since(start)))
	s.count.Add(1)
	return sig, err
}
