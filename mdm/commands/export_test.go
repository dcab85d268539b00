package commands

// FromJSONWith is FromJSON against specs instead of Apple's, for tests of
// shapes Apple's command schemas do not have (dates, reals, bounds).
func FromJSONWith(specs []Spec, command []byte) (string, map[string]any, error) {
	c, err := newCatalog(specs)
	if err != nil {
		return "", nil, err
	}
	return c.fromJSON(command)
}

// CompileSpecs compiles specs as the package compiles its own.
func CompileSpecs(specs []Spec) error {
	_, err := newCatalog(specs)
	return err
}

// Bound is the pointer helper of the generated Min and Max.
var Bound = bound
