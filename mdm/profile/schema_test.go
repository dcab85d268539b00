package profile_test

// The keys Apple's Device Management schema gives the payloads an
// enrollment profile carries (apple/device-management, mdm/profiles:
// TopLevel.yaml, com.apple.mdm.yaml, com.apple.security.scep.yaml): each
// key's type and presence, and the rules its content documents. The
// shared/apple-device-management copy beside this repository holds the
// check-in and command schemas only, so these facts are written here; a
// generated profile must satisfy every one.

import (
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/micromdm/plist"

	"github.com/picomdm/picomdm/mdm/profile"
)

// schemaKey is one payload key: its plist type, whether it is required,
// and an extra check of its value.
type schemaKey struct {
	typ      string // string, integer, boolean, array, dictionary, data
	required bool
	check    func(v any) string // "" when fine
}

// Keys every payload has (Apple's common payload keys).
var commonPayloadKeys = map[string]schemaKey{
	"PayloadType":         {typ: "string", required: true},
	"PayloadVersion":      {typ: "integer", required: true, check: equalsInt(1)},
	"PayloadIdentifier":   {typ: "string", required: true},
	"PayloadUUID":         {typ: "string", required: true, check: matches(uuidRE)},
	"PayloadDisplayName":  {typ: "string"},
	"PayloadDescription":  {typ: "string"},
	"PayloadOrganization": {typ: "string"},
}

var uuidRE = regexp.MustCompile(`^[0-9A-Za-z]{8}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{12}$`)

// topLevelKeys are TopLevel.yaml's (a Configuration profile).
var topLevelKeys = merge(commonPayloadKeys, map[string]schemaKey{
	"PayloadContent":           {typ: "array"},
	"PayloadRemovalDisallowed": {typ: "boolean"},
	"PayloadScope":             {typ: "string"},
	"PayloadType":              {typ: "string", required: true, check: equalsString("Configuration")},
})

// mdmKeys are com.apple.mdm.yaml's.
var mdmKeys = merge(commonPayloadKeys, map[string]schemaKey{
	"IdentityCertificateUUID": {typ: "string", required: true, check: matches(uuidRE)},
	"Topic":                   {typ: "string", required: true, check: hasPrefix("com.apple.mgmt.")},
	"ServerURL":               {typ: "string", required: true, check: matches(regexp.MustCompile(`^https://.*$`))},
	"CheckInURL":              {typ: "string", check: matches(regexp.MustCompile(`^https://.*$`))},
	"SignMessage":             {typ: "boolean"},
	"AccessRights":            {typ: "integer", check: accessRights},
	"UseDevelopmentAPNS":      {typ: "boolean"},
	"ServerCapabilities": {typ: "array", check: stringsIn("com.apple.mdm.per-user-connections",
		"com.apple.mdm.bootstraptoken", "com.apple.mdm.token")},
	"CheckOutWhenRemoved": {typ: "boolean"},
})

// scepKeys are com.apple.security.scep.yaml's top level; scepContentKeys
// its PayloadContent dictionary's.
var scepKeys = merge(commonPayloadKeys, map[string]schemaKey{
	"PayloadContent": {typ: "dictionary", required: true},
})

var scepContentKeys = map[string]schemaKey{
	"URL":                {typ: "string", required: true},
	"Name":               {typ: "string"},
	"Subject":            {typ: "array", check: scepSubject},
	"Challenge":          {typ: "string"},
	"Keysize":            {typ: "integer", check: intIn(1024, 2048, 4096)},
	"Key Type":           {typ: "string", check: equalsString("RSA")},
	"Key Usage":          {typ: "integer", check: intIn(0, 1, 4, 5)},
	"CAFingerprint":      {typ: "data"},
	"Retries":            {typ: "integer"},
	"RetryDelay":         {typ: "integer"},
	"SubjectAltName":     {typ: "dictionary"},
	"KeyIsExtractable":   {typ: "boolean"},
	"AllowAllAppsAccess": {typ: "boolean"},
}

func TestProfileMatchesAppleSchema(t *testing.T) {
	for name, opts := range map[string]profile.Options{
		"defaults": {
			ServerURL: "https://mdm.example.com/mdm", Topic: "com.apple.mgmt.External.1f2e3d4c-0000-4000-8000-000000000000",
			SCEP: &profile.SCEP{URL: "https://mdm.example.com/scep", Challenge: "c"},
		},
		"everything": {
			ServerURL: "https://mdm.example.com/mdm?group=staff", CheckInURL: "https://mdm.example.com/checkin?group=staff",
			Topic: "com.apple.mgmt.External.1f2e3d4c-0000-4000-8000-000000000000", AccessRights: 3,
			Name: "Acme", Organization: "Acme Inc.", Description: "Enroll",
			SCEP: &profile.SCEP{URL: "https://mdm.example.com/scep", Challenge: "c", Subject: "/C=FR/O=Acme/CN=Device", Name: "PicoMDM", KeySize: 1024},
		},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := profile.Generate(opts)
			if err != nil {
				t.Fatal(err)
			}
			var top map[string]any
			if err := plist.Unmarshal(b, &top); err != nil {
				t.Fatal(err)
			}
			validate(t, "profile", top, topLevelKeys)
			content, _ := top["PayloadContent"].([]any)
			byType := map[string]map[string]any{}
			for i, p := range content {
				payload, ok := p.(map[string]any)
				if !ok {
					t.Fatalf("PayloadContent[%d] is %T, want a dictionary", i, p)
				}
				typ, _ := payload["PayloadType"].(string)
				byType[typ] = payload
			}
			mdmPayload, scepPayload := byType["com.apple.mdm"], byType["com.apple.security.scep"]
			if mdmPayload == nil || scepPayload == nil || len(content) != 2 {
				t.Fatalf("payloads %v, want com.apple.mdm and com.apple.security.scep", slices.Collect(maps.Keys(byType)))
			}
			validate(t, "com.apple.mdm", mdmPayload, mdmKeys)
			validate(t, "com.apple.security.scep", scepPayload, scepKeys)
			if c, ok := scepPayload["PayloadContent"].(map[string]any); ok {
				validate(t, "com.apple.security.scep PayloadContent", c, scepContentKeys)
			}
			if mdmPayload["IdentityCertificateUUID"] != scepPayload["PayloadUUID"] {
				t.Errorf("IdentityCertificateUUID %v does not name the SCEP payload (%v)", mdmPayload["IdentityCertificateUUID"], scepPayload["PayloadUUID"])
			}
			uuids := map[any]bool{top["PayloadUUID"]: true, mdmPayload["PayloadUUID"]: true, scepPayload["PayloadUUID"]: true}
			if len(uuids) != 3 {
				t.Error("PayloadUUIDs are not distinct")
			}
		})
	}
}

// validate checks dict against keys: every required key present, every
// key known and of its type, every check passed.
func validate(t *testing.T, where string, dict map[string]any, keys map[string]schemaKey) {
	t.Helper()
	for name, k := range keys {
		if _, ok := dict[name]; !ok && k.required {
			t.Errorf("%s: required key %s missing", where, name)
		}
	}
	for name, v := range dict {
		k, ok := keys[name]
		if !ok {
			t.Errorf("%s: key %s is not in Apple's schema", where, name)
			continue
		}
		if got := plistType(v); got != k.typ {
			t.Errorf("%s: %s is %s, want %s", where, name, got, k.typ)
			continue
		}
		if k.check != nil {
			if msg := k.check(v); msg != "" {
				t.Errorf("%s: %s: %s", where, name, msg)
			}
		}
	}
}

func plistType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return "integer"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "dictionary"
	case []byte:
		return "data"
	}
	return "unknown"
}

func toInt(v any) int64 {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int64:
		return n
	case uint64:
		return int64(n)
	}
	return -1 << 62
}

func equalsInt(want int64) func(any) string {
	return func(v any) string {
		if toInt(v) != want {
			return "want " + strconv.FormatInt(want, 10)
		}
		return ""
	}
}

func intIn(allowed ...int64) func(any) string {
	return func(v any) string {
		if !slices.Contains(allowed, toInt(v)) {
			return "not one of the values Apple allows"
		}
		return ""
	}
}

func equalsString(want string) func(any) string {
	return func(v any) string {
		if v != want {
			return "want " + want
		}
		return ""
	}
}

func hasPrefix(prefix string) func(any) string {
	return func(v any) string {
		if s, _ := v.(string); !strings.HasPrefix(s, prefix) {
			return "must begin with " + prefix
		}
		return ""
	}
}

func matches(re *regexp.Regexp) func(any) string {
	return func(v any) string {
		if s, _ := v.(string); !re.MatchString(s) {
			return "does not match " + re.String()
		}
		return ""
	}
}

func stringsIn(allowed ...string) func(any) string {
	return func(v any) string {
		for _, item := range v.([]any) {
			if s, ok := item.(string); !ok || !slices.Contains(allowed, s) {
				return "item not in Apple's list"
			}
		}
		return ""
	}
}

// accessRights follows Apple's rules: 1…8191, never 0, 2 needs 1, 128
// needs 64.
func accessRights(v any) string {
	n := toInt(v)
	switch {
	case n < 1 || n > 8191:
		return "outside 1…8191"
	case n&2 != 0 && n&1 == 0:
		return "2 without 1"
	case n&128 != 0 && n&64 == 0:
		return "128 without 64"
	}
	return ""
}

// scepSubject checks the [[[OID, value]], …] form: every pair two strings.
func scepSubject(v any) string {
	for _, rdn := range v.([]any) {
		pairs, ok := rdn.([]any)
		if !ok {
			return "an RDN is not an array"
		}
		for _, p := range pairs {
			pair, ok := p.([]any)
			if !ok || len(pair) != 2 {
				return "a pair is not an array of two"
			}
			for _, s := range pair {
				if _, ok := s.(string); !ok {
					return "a pair item is not a string"
				}
			}
		}
	}
	return ""
}

func merge(base, over map[string]schemaKey) map[string]schemaKey {
	out := maps.Clone(base)
	maps.Copy(out, over)
	return out
}
