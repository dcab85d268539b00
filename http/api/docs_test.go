package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/picomdm/picomdm/mdm/commands"
)

var (
	guidePath   = filepath.Join("..", "..", "docs", "operations-guide.md")
	openAPIPath = filepath.Join("..", "..", "docs", "openapi.yaml")
)

// documentedRequestTypes are the commands the docs must show examples of.
var documentedRequestTypes = []string{"DeviceInformation", "InstallProfile", "DeviceLock", "Settings"}

// guideCommandExamples returns the JSON code blocks of the operations
// guide's "Typed commands" section that are POST /v1/commands bodies.
func guideCommandExamples(t *testing.T) [][]byte {
	t.Helper()
	b, err := os.ReadFile(guidePath)
	if err != nil {
		t.Fatal(err)
	}
	guide := string(b)
	start := strings.Index(guide, "\n### Typed commands")
	if start < 0 {
		t.Fatalf("%s has no Typed commands section", guidePath)
	}
	section := guide[start+1:]
	if end := strings.Index(section, "\n### "); end >= 0 {
		section = section[:end]
	}
	var out [][]byte
	for _, m := range regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(section, -1) {
		var probe map[string]json.RawMessage
		if json.Unmarshal([]byte(m[1]), &probe) == nil && probe["targets"] != nil {
			out = append(out, []byte(m[1]))
		}
	}
	return out
}

// openAPIDoc is the part of docs/openapi.yaml these tests read.
type openAPIDoc struct {
	Paths map[string]struct {
		Post struct {
			RequestBody struct {
				Content map[string]struct {
					Examples map[string]struct {
						Value map[string]any `yaml:"value"`
					} `yaml:"examples"`
				} `yaml:"content"`
			} `yaml:"requestBody"`
		} `yaml:"post"`
		Get struct {
			Responses map[string]struct {
				Content map[string]struct {
					Example any `yaml:"example"`
				} `yaml:"content"`
			} `yaml:"responses"`
		} `yaml:"get"`
	} `yaml:"paths"`
}

func readOpenAPI(t *testing.T) *openAPIDoc {
	t.Helper()
	b, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := new(openAPIDoc)
	if err := yaml.Unmarshal(b, doc); err != nil {
		t.Fatalf("%s: %v", openAPIPath, err)
	}
	return doc
}

// TestDocumentedCommandExamples posts every POST /v1/commands example of
// the operations guide and of openapi.yaml: each is accepted, builds the
// RequestType it names, and together they show DeviceInformation,
// InstallProfile, DeviceLock and Settings.
func TestDocumentedCommandExamples(t *testing.T) {
	type example struct {
		where, name string
		body        []byte
	}
	var examples []example
	for i, b := range guideCommandExamples(t) {
		examples = append(examples, example{"operations guide", fmt.Sprintf("block %d", i+1), b})
	}
	for name, ex := range readOpenAPI(t).Paths["/v1/commands"].Post.RequestBody.Content["application/json"].Examples {
		b, err := json.Marshal(ex.Value)
		if err != nil {
			t.Fatalf("openapi example %s: %v", name, err)
		}
		examples = append(examples, example{"openapi", name, b})
	}

	shown := map[string]map[string]bool{"operations guide": {}, "openapi": {}}
	for _, ex := range examples {
		t.Run(ex.where+" "+ex.name, func(t *testing.T) {
			var req struct {
				Command struct{ RequestType string }
			}
			if err := json.Unmarshal(ex.body, &req); err != nil {
				t.Fatalf("%s: %v", ex.body, err)
			}
			store := new(fakeStore)
			rec := postJSON(t, commandsServer(store, new(fakePusher), newFakeInspection()), "/v1/commands", "application/json", ex.body)
			if rec.Code != http.StatusOK {
				t.Fatalf("documented example %s: %d %s", ex.body, rec.Code, rec.Body)
			}
			if len(store.cmds) != 1 || store.cmds[0].RequestType() != req.Command.RequestType {
				t.Fatalf("stored %v, want one %s", store.cmds, req.Command.RequestType)
			}
			shown[ex.where][req.Command.RequestType] = true
		})
	}
	for _, where := range []string{"operations guide", "openapi"} {
		for _, rt := range documentedRequestTypes {
			if !shown[where][rt] {
				t.Errorf("%s has no POST /v1/commands example of %s", where, rt)
			}
		}
	}
}

// TestDocumentedSchemaExample: openapi.yaml's example Spec is what the
// server answers for that RequestType.
func TestDocumentedSchemaExample(t *testing.T) {
	ex := readOpenAPI(t).Paths["/v1/commands/schema/{request_type}"].Get.Responses["200"].Content["application/json"].Example
	b, err := json.Marshal(ex)
	if err != nil {
		t.Fatal(err)
	}
	var documented commands.Spec
	if err := json.Unmarshal(b, &documented); err != nil {
		t.Fatalf("example %s: %v", b, err)
	}
	spec, ok := commands.Lookup(documented.RequestType)
	if !ok || !reflect.DeepEqual(&documented, spec) {
		got, _ := json.Marshal(spec)
		t.Errorf("openapi.yaml's Spec example\n%s\nis not the server's\n%s", b, got)
	}
}
