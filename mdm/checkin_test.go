package mdm_test

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/micromdm/plist"

	"github.com/picomdm/picomdm/mdm"
)

// checkinTypes maps each MessageType to the type DecodeCheckin returns.
var checkinTypes = map[string]reflect.Type{
	mdm.MessageAuthenticate:          reflect.TypeFor[*mdm.Authenticate](),
	mdm.MessageTokenUpdate:           reflect.TypeFor[*mdm.TokenUpdate](),
	mdm.MessageCheckOut:              reflect.TypeFor[*mdm.CheckOut](),
	mdm.MessageUserAuthenticate:      reflect.TypeFor[*mdm.UserAuthenticate](),
	mdm.MessageSetBootstrapToken:     reflect.TypeFor[*mdm.SetBootstrapToken](),
	mdm.MessageGetBootstrapToken:     reflect.TypeFor[*mdm.GetBootstrapToken](),
	mdm.MessageDeclarativeManagement: reflect.TypeFor[*mdm.DeclarativeManagement](),
	mdm.MessageGetToken:              reflect.TypeFor[*mdm.GetToken](),
}

// TestCheckinSchemasCoverMessageTypes checks that PicoMDM decodes exactly
// the check-in messages Apple's schemas define.
func TestCheckinSchemasCoverMessageTypes(t *testing.T) {
	var fromSchemas []string
	for _, s := range checkinSchemas(t) {
		fromSchemas = append(fromSchemas, s.MessageType)
	}
	decoded := slices.Clone(mdm.MessageTypes)
	slices.Sort(fromSchemas)
	slices.Sort(decoded)
	if !slices.Equal(fromSchemas, decoded) {
		t.Errorf("schemas define %q, mdm.MessageTypes lists %q", fromSchemas, decoded)
	}
	for _, mt := range decoded {
		if checkinTypes[mt] == nil {
			t.Errorf("test table checkinTypes misses %s", mt)
		}
	}
}

// TestDecodeCheckinSchemas decodes every check-in message synthesised from
// Apple's schemas, with every key filled, on every channel the schema
// allows, as XML and as a binary plist.
func TestDecodeCheckinSchemas(t *testing.T) {
	counts := map[string]int{}
	for _, c := range checkinCases(t) {
		counts[c.Schema.MessageType]++
		t.Run(c.Name, func(t *testing.T) {
			msg, err := mdm.DecodeCheckin(c.Raw)
			if err != nil {
				t.Fatalf("DecodeCheckin: %v", err)
			}
			if got, want := reflect.TypeOf(msg), checkinTypes[c.Schema.MessageType]; got != want {
				t.Fatalf("DecodeCheckin returned %v, want %v", got, want)
			}
			if got := msg.Type(); got != c.Schema.MessageType {
				t.Errorf("Type() = %q, want %q", got, c.Schema.MessageType)
			}
			if !bytes.Equal(msg.RawBytes(), c.Raw) {
				t.Error("RawBytes() differs from the input")
			}

			// Every key of Apple's schema lands in a typed field.
			v := reflect.ValueOf(msg).Elem()
			for key, want := range c.Values {
				f, ok := plistField(v, key)
				if !ok {
					t.Errorf("schema key %s has no field in %T", key, msg)
					continue
				}
				if !sameValue(f.Interface(), want) {
					t.Errorf("%s = %#v, want %#v", key, f.Interface(), want)
				}
			}
			// Identifying keys the channel does not send stay empty.
			ids := reflect.ValueOf(msg.EnrollmentKeys()).Elem()
			for _, key := range identityKeys {
				if _, sent := c.Values[key]; sent {
					continue
				}
				if f, _ := plistField(ids, key); f.String() != "" {
					t.Errorf("%s = %q, but the message has no %s", key, f.String(), key)
				}
			}
			checkTypedFields(t, msg, c.Values)
		})
	}
	for _, s := range checkinSchemas(t) {
		t.Logf("%-22s %2d cases (channels %q)", s.MessageType, counts[s.MessageType], s.Channels)
	}
}

// checkTypedFields spells out, per message, the fields the service chain
// relies on, so that the reflective check above cannot pass vacuously.
func checkTypedFields(t *testing.T, msg mdm.Checkin, values map[string]any) {
	t.Helper()
	field := func(key string, got any) {
		t.Helper()
		want, ok := values[key]
		if !ok {
			t.Errorf("test data has no %s", key)
			return
		}
		if !sameValue(got, want) {
			t.Errorf("%s = %#v, want %#v", key, got, want)
		}
	}
	switch m := msg.(type) {
	case *mdm.Authenticate:
		field("Topic", m.Topic)
		field("SerialNumber", m.SerialNumber)
		field("DeviceName", m.DeviceName)
		field("Model", m.Model)
		field("ModelName", m.ModelName)
		field("OSVersion", m.OSVersion)
		field("BuildVersion", m.BuildVersion)
		field("ProductName", m.ProductName)
		field("IMEI", m.IMEI)
		field("MEID", m.MEID)
	case *mdm.TokenUpdate:
		field("Topic", m.Topic)
		field("Token", m.Token)
		field("PushMagic", m.PushMagic)
		field("UnlockToken", m.UnlockToken)
		field("AwaitingConfiguration", m.AwaitingConfiguration)
		field("NotOnConsole", m.NotOnConsole)
	case *mdm.CheckOut:
		field("Topic", m.Topic)
	case *mdm.UserAuthenticate:
		field("DigestResponse", m.DigestResponse)
	case *mdm.SetBootstrapToken:
		field("BootstrapToken", m.BootstrapToken)
		field("AwaitingConfiguration", m.AwaitingConfiguration)
	case *mdm.GetBootstrapToken:
		field("AwaitingConfiguration", m.AwaitingConfiguration)
	case *mdm.DeclarativeManagement:
		field("Endpoint", m.Endpoint)
		field("Data", m.Data)
	case *mdm.GetToken:
		field("TokenServiceType", m.TokenServiceType)
		field("TokenParameters", m.TokenParameters)
	default:
		t.Errorf("no typed-field checks for %T", msg)
	}
	e := msg.EnrollmentKeys()
	for key, got := range map[string]string{
		"UDID": e.UDID, "UserID": e.UserID, "UserShortName": e.UserShortName,
		"UserLongName": e.UserLongName, "EnrollmentID": e.EnrollmentID, "EnrollmentUserID": e.EnrollmentUserID,
	} {
		if _, sent := values[key]; sent {
			field(key, got)
		}
	}
}

// mustXML encodes v as an XML plist.
func mustXML(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := plist.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// wantParseError checks that err, a decoder's refusal, is a
// *mdm.ParseError wrapping is (when is is not nil), and not a panic of
// the plist decoder.
func wantParseError(t *testing.T, err, is error) {
	t.Helper()
	var pe *mdm.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *mdm.ParseError", err, err)
	}
	if is != nil && !errors.Is(err, is) {
		t.Errorf("error %v does not wrap %v", err, is)
	}
	if errors.Is(err, mdm.ErrPlistPanic) {
		t.Errorf("the plist decoder panicked: %v", err)
	}
}

// fuzzCorpus seeds f with the raw bytes of every case, then garbageSeeds.
func fuzzCorpus[C any](f *testing.F, cases []C, raw func(C) []byte) {
	for _, c := range cases {
		f.Add(raw(c))
	}
	for _, seed := range garbageSeeds() {
		f.Add(seed)
	}
}

// fuzzDecode runs decode on a fuzz input: decode must leave raw as it
// was, and a refusal must pass wantParseError. It returns what decode
// returned and whether it accepted raw.
func fuzzDecode[T any](t *testing.T, raw []byte, decode func([]byte) (T, error)) (T, bool) {
	t.Helper()
	in := bytes.Clone(raw)
	v, err := decode(raw)
	if !bytes.Equal(raw, in) {
		t.Fatal("the decoder modified its input")
	}
	if err != nil {
		wantParseError(t, err, nil)
		return v, false
	}
	return v, true
}

// TestDecodeCheckinErrors checks that bodies a device must get a 400 for
// are *mdm.ParseError, wrapping the sentinel callers branch on.
func TestDecodeCheckinErrors(t *testing.T) {
	valid := mustXML(t, map[string]any{"MessageType": "TokenUpdate", "UDID": testUDID, "Topic": "com.apple.mgmt.test", "PushMagic": "magic", "Token": []byte{1, 2, 3}})
	if _, err := mdm.DecodeCheckin(valid); err != nil {
		t.Fatalf("the valid base message does not decode: %v", err)
	}
	tests := []struct {
		name string
		body []byte
		is   error // a sentinel the error must wrap, if any
	}{
		{"nil body", nil, nil},
		{"empty body", []byte{}, nil},
		{"whitespace", []byte(" \n\t"), nil},
		{"garbage", []byte("\x00\xffthis is not a plist\x01"), nil},
		{"JSON", []byte(`{"MessageType":"TokenUpdate","UDID":"x"}`), nil},
		{"truncated XML", valid[:len(valid)/2], nil},
		{"empty plist", []byte(`<?xml version="1.0"?><plist version="1.0"></plist>`), nil},
		{"unknown MessageType", mustXML(t, map[string]any{"MessageType": "Reticulate", "UDID": testUDID}), mdm.ErrUnknownMessageType},
		{"lower-case MessageType", mustXML(t, map[string]any{"MessageType": "tokenupdate", "UDID": testUDID}), mdm.ErrUnknownMessageType},
		{"missing MessageType", mustXML(t, map[string]any{"UDID": testUDID, "Topic": "com.apple.mgmt.test"}), mdm.ErrUnknownMessageType},
		{"empty MessageType", mustXML(t, map[string]any{"MessageType": "", "UDID": testUDID}), mdm.ErrUnknownMessageType},
		{"MessageType not a string", mustXML(t, map[string]any{"MessageType": int64(7), "UDID": testUDID}), nil},
		{"top-level array", mustXML(t, []any{"TokenUpdate"}), nil},
		{"top-level string", mustXML(t, "TokenUpdate"), nil},
		{"Token not data", mustXML(t, map[string]any{"MessageType": "TokenUpdate", "UDID": testUDID, "Token": "AQID"}), nil},
		{"UDID not a string", mustXML(t, map[string]any{"MessageType": "Authenticate", "UDID": int64(1)}), nil},
		{"binary header only", []byte("bplist00"), mdm.ErrBadBinaryPlist},
		{"binary garbage", append([]byte("bplist00"), bytes.Repeat([]byte{0xff}, 64)...), mdm.ErrBadBinaryPlist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := mdm.DecodeCheckin(tt.body)
			if err == nil {
				t.Fatalf("DecodeCheckin = %T, want an error", msg)
			}
			if msg != nil {
				t.Errorf("DecodeCheckin returned %T with its error", msg)
			}
			wantParseError(t, err, tt.is)
		})
	}
}

// TestDecodeCheckinKeepsRawBytes checks that Raw is the caller's input,
// byte for byte, including bytes the plist decoder ignores.
func TestDecodeCheckinKeepsRawBytes(t *testing.T) {
	body := mustXML(t, map[string]any{"MessageType": "CheckOut", "UDID": testUDID, "Topic": "com.apple.mgmt.test"})
	body = append(body, "\n<!-- trailing comment -->\n"...)
	msg, err := mdm.DecodeCheckin(body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(msg.RawBytes(), body) {
		t.Errorf("RawBytes() = %q, want %q", msg.RawBytes(), body)
	}
}

// FuzzDecodeCheckin feeds DecodeCheckin arbitrary bodies. Its seeds (every
// synthesised message, garbage and the binary plists that used to crash the
// decoder) also run in plain go test.
func FuzzDecodeCheckin(f *testing.F) {
	fuzzCorpus(f, checkinCases(f), func(c checkinCase) []byte { return c.Raw })
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg, ok := fuzzDecode(t, raw, mdm.DecodeCheckin)
		if !ok {
			return
		}
		if !bytes.Equal(msg.RawBytes(), raw) {
			t.Fatal("RawBytes() differs from the input")
		}
		want, ok := checkinTypes[msg.Type()]
		if !ok {
			t.Fatalf("decoded unknown MessageType %q", msg.Type())
		}
		if got := reflect.TypeOf(msg); got != want {
			t.Fatalf("MessageType %q decoded as %v, want %v", msg.Type(), got, want)
		}
		if id, err := msg.EnrollmentKeys().Resolve(); err == nil && id.ID == "" {
			t.Fatal("Resolve succeeded with an empty ID")
		}
	})
}

// BenchmarkDecodeCheckin decodes a TokenUpdate with every key Apple's
// schema lists, on the device channel.
func BenchmarkDecodeCheckin(b *testing.B) {
	for _, c := range checkinCases(b) {
		if c.Schema.MessageType != mdm.MessageTokenUpdate || c.Channel.Type != mdm.Device {
			continue
		}
		b.Run(c.Name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.Raw)))
			for b.Loop() {
				if _, err := mdm.DecodeCheckin(c.Raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
