// Command schemagen turns Apple's device-management YAML schemas (the
// check-in messages in mdm/checkin and the commands in mdm/commands) into
// the JSON that PicoMDM's tests and tools read:
//
//	mdm/testdata/checkin_schemas.json  every check-in MessageType, its channels and typed keys
//	mdm/testdata/command_schemas.json  every command RequestType and its typed keys
//	mdm/commands/specs_gen.go          the commands as package commands' Spec table
//
// The output is sorted and deterministic, and it is committed; a test in
// this package fails when it is stale. Run it from anywhere inside the
// repository, directly or through go generate in package mdm:
//
//	go run ./tools/schemagen [-schemas DIR] [-out DIR]
//	go generate ./mdm
//
// By default the schemas are looked up as shared/apple-device-management
// beside the repository root (or beside one of its parent directories), and
// the output goes to the repository's mdm/testdata.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// modulePath is the module whose root the generator looks for.
const modulePath = "github.com/picomdm/picomdm"

// schemaSubdir is where the shared schemas live relative to a directory
// that holds the repository.
var schemaSubdir = filepath.Join("shared", "apple-device-management")

func main() {
	schemas := flag.String("schemas", "", "directory of Apple's device-management schemas (default: ../shared/apple-device-management relative to the repository root, searched upwards)")
	out := flag.String("out", "", "output directory (default: the repository's mdm/testdata)")
	specs := flag.String("specs", "", "output file of package commands' Spec table (default: the repository's "+specsOutput+")")
	flag.Parse()
	if err := run(*schemas, *out, *specs); err != nil {
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		os.Exit(1)
	}
}

// run resolves the default locations and writes the output files: the
// JSON test data into outDir and package commands' Spec table to
// specsFile.
func run(schemaDir, outDir, specsFile string) error {
	if schemaDir == "" || outDir == "" || specsFile == "" {
		root, err := findRepoRoot()
		if err != nil {
			return err
		}
		if schemaDir == "" {
			if schemaDir, err = findSchemaDir(root); err != nil {
				return err
			}
		}
		if outDir == "" {
			outDir = filepath.Join(root, "mdm", "testdata")
		}
		if specsFile == "" {
			specsFile = filepath.Join(root, filepath.FromSlash(specsOutput))
		}
	}
	files, err := render(schemaDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	for name, b := range files {
		dest := filepath.Join(outDir, name)
		if name == specsOutput {
			dest = specsFile
		}
		if err := writeFileAtomic(dest, b); err != nil {
			return err
		}
	}
	return nil
}

// findRepoRoot walks up from the working directory to the directory whose
// go.mod declares this module.
func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isModuleRoot(dir) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod for %s above the working directory", modulePath)
		}
		dir = parent
	}
}

// isModuleRoot reports whether dir/go.mod declares modulePath.
func isModuleRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`) == modulePath
		}
	}
	return false
}

// errNoSchemas says the shared schema directory was not found.
var errNoSchemas = errors.New("shared/apple-device-management not found beside the repository or its parents; pass -schemas")

// findSchemaDir looks for shared/apple-device-management beside root, then
// beside each of root's parents (a worktree may sit deeper than the main
// clone).
func findSchemaDir(root string) (string, error) {
	for dir := filepath.Dir(root); ; dir = filepath.Dir(dir) {
		candidate := filepath.Join(dir, schemaSubdir)
		if st, err := os.Stat(filepath.Join(candidate, "mdm", "checkin")); err == nil && st.IsDir() {
			return candidate, nil
		}
		if filepath.Dir(dir) == dir {
			return "", errNoSchemas
		}
	}
}

// writeFileAtomic replaces name with b, never leaving a half-written file.
func writeFileAtomic(name string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
