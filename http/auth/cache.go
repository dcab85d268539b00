package auth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"sync"
)

// certKey identifies a certificate by the SHA-256 of its DER.
type certKey = [sha256.Size]byte

// boundedCache is a concurrency-safe map whose entries' costs add up to
// at most max. When it is full, arbitrary entries (Go randomises map
// iteration) make room for a new one: cheap, and good enough for what it
// holds, the certificates of devices that talk in bursts (an enrollment, a
// command round trip, a queue drain).
type boundedCache[V any] struct {
	mu    sync.Mutex
	max   int
	total int
	m     map[certKey]costed[V]
}

type costed[V any] struct {
	v    V
	cost int
}

func newBoundedCache[V any](max int) *boundedCache[V] {
	return &boundedCache[V]{max: max, m: make(map[certKey]costed[V])}
}

func (c *boundedCache[V]) get(k certKey) (V, bool) {
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	return e.v, ok
}

// put adds or replaces an entry of the given cost (at least 1); one
// costing more than a sixteenth of the cache is not kept.
func (c *boundedCache[V]) put(k certKey, v V, cost int) {
	cost = max(cost, 1)
	if cost > c.max/16 && c.max >= 16 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[k]; ok {
		c.total -= old.cost
		delete(c.m, k)
	}
	for old, e := range c.m {
		if c.total+cost <= c.max {
			break
		}
		c.total -= e.cost
		delete(c.m, old)
	}
	c.m[k] = costed[V]{v: v, cost: cost}
	c.total += cost
}

func (c *boundedCache[V]) delete(k certKey) {
	c.mu.Lock()
	if e, ok := c.m[k]; ok {
		c.total -= e.cost
		delete(c.m, k)
	}
	c.mu.Unlock()
}

// parsedCertCacheBytes bounds parsedCerts by the DER size of what it holds
// (a parsed certificate takes several times that): a device certificate is
// about 1 KiB, so it holds about a thousand — the devices exchanging
// commands at any moment, which is where the parse would repeat — and
// keeps the server's resident memory flat as the fleet grows (at 8 MiB a
// 10,000-device bench ended at 116 MiB RSS).
const parsedCertCacheBytes = 1 << 20

// parsedCerts memoises x509.ParseCertificate, which costs more than the
// SHA-256 of the DER it is keyed by. Parsing is a pure function of the DER,
// so entries never go stale. The certificates are shared between requests
// and must not be modified (nothing in PicoMDM does).
var parsedCerts = newBoundedCache[*x509.Certificate](parsedCertCacheBytes)

// parseCertificate parses one DER certificate, from parsedCerts when it was
// seen before. der may be a scratch buffer: a new entry is parsed from a
// copy, since x509.ParseCertificate keeps references into its input.
func parseCertificate(der []byte) (*x509.Certificate, error) {
	key := sha256.Sum256(der)
	if cert, ok := parsedCerts.get(key); ok {
		return cert, nil
	}
	cert, err := x509.ParseCertificate(append([]byte(nil), der...))
	if err != nil {
		return nil, err
	}
	parsedCerts.put(key, cert, len(der))
	return cert, nil
}

// scratch holds the buffers one identity check decodes into; they are
// pooled, as headers run to a few KiB and every request has one.
type scratch struct {
	text []byte // the header value, as bytes
	der  []byte // decoded from text
}

// maxPooledScratch is the largest buffer put back into scratchPool, so
// that one huge header does not stay pinned in the pool.
const maxPooledScratch = 64 << 10

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(s *scratch) {
	if cap(s.text) > maxPooledScratch || cap(s.der) > maxPooledScratch {
		return
	}
	s.text, s.der = s.text[:0], s.der[:0]
	scratchPool.Put(s)
}

// decodeBase64 decodes the standard base64 in value into s.der, as
// base64.StdEncoding.DecodeString does but without allocating.
func (s *scratch) decodeBase64(value string) ([]byte, error) {
	s.text = append(s.text[:0], value...)
	n := base64.StdEncoding.DecodedLen(len(s.text))
	if cap(s.der) < n {
		s.der = make([]byte, n)
	}
	s.der = s.der[:n]
	m, err := base64.StdEncoding.Decode(s.der, s.text)
	if err != nil {
		return nil, err
	}
	return s.der[:m], nil
}
