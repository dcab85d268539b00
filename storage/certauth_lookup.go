package storage

import "context"

// CertAuthLookup finds the enrollment an identity certificate belongs to,
// the reverse of the cert-auth association (see CertAuthStore). Services
// that authenticate a device by its certificate alone, such as the auth
// proxy, use it to learn which enrollment is calling.
type CertAuthLookup interface {
	// EnrollmentFromCertHash returns the device-channel enrollment ID hash
	// (lower-case hex SHA-256 of the certificate DER) is associated with;
	// ErrNotFound when it is associated with none. Cert-auth refuses a
	// hash already associated with another enrollment, so there is at
	// most one in practice; should a store hold several (e.g. data
	// migrated in), the lowest ID is returned, so every replica and
	// backend answers alike.
	EnrollmentFromCertHash(ctx context.Context, hash string) (string, error)
}
