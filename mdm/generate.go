package mdm

// The test data testdata/checkin_schemas.json and
// testdata/command_schemas.json, and package commands' Spec table
// (commands/specs_gen.go), are generated from Apple's device-management
// schemas (shared/apple-device-management beside the repository); a test
// in tools/schemagen fails when any of them is stale.
//go:generate go run ../tools/schemagen
