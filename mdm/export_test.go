package mdm

// Internals the external tests (package mdm_test) check.
var (
	ErrPlistPanic     = errPlistPanic
	ErrBadBinaryPlist = errBadBinaryPlist
)
