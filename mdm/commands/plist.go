package commands

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/micromdm/plist"

	"github.com/picomdm/picomdm/mdm"
)

// encodeCommand is Plist.
func encodeCommand(commandUUID string, dict map[string]any) (raw []byte, err error) {
	if err := mdm.CheckCommandUUID(commandUUID); err != nil {
		return nil, fmt.Errorf("commands: %w", err)
	}
	if rt, _ := dict["RequestType"].(string); rt == "" {
		return nil, fmt.Errorf("commands: %w", mdm.ErrNoRequestType)
	}
	// The encoder panics on values it has no plist form for (a nil, a
	// channel): dict is FromJSON's, which has none, but this is an API.
	defer func() {
		if r := recover(); r != nil {
			raw, err = nil, fmt.Errorf("commands: encoding the command plist: %v", r)
		}
	}()
	raw, err = plist.MarshalIndent(map[string]any{
		"CommandUUID": commandUUID,
		"Command":     dict,
	}, "\t")
	if err != nil {
		return nil, fmt.Errorf("commands: encoding the command plist: %w", err)
	}
	return raw, nil
}

// errResultPanic marks a panic of the plist decoder that resultJSON turned
// into an error; mdm.DecodeCommandResults checks the plist first so that
// it does not happen.
var errResultPanic = errors.New("plist decoder panicked")

// resultJSON is ResultJSON.
func resultJSON(raw []byte) ([]byte, error) {
	// The hardened decoder refuses what would make micromdm/plist recurse
	// too deep, loop, panic or expand: after it, decoding the same bytes
	// into an interface is safe.
	if _, err := mdm.DecodeCommandResults(raw); err != nil {
		return nil, fmt.Errorf("commands: result: %w", err)
	}
	v, err := decodeAny(raw)
	if err != nil {
		return nil, fmt.Errorf("commands: result: %w", err)
	}
	c := jsonConverter{binary: bytes.HasPrefix(raw, []byte("bplist0"))}
	out, err := json.Marshal(c.value(v))
	if err != nil {
		return nil, fmt.Errorf("commands: result: %w", err)
	}
	return out, nil
}

// decodeAny decodes a plist into an interface, turning a panic into an
// error.
func decodeAny(raw []byte) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("%w: %v", errResultPanic, r)
		}
	}()
	err = plist.Unmarshal(raw, &v)
	return v, err
}

// jsonConverter converts a decoded plist value to one encoding/json spells
// as ResultJSON documents. binary says the plist was binary, whose
// integers micromdm/plist gives as uint64 even when they are negative.
type jsonConverter struct {
	binary bool
}

func (c jsonConverter) value(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = c.value(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = c.value(e)
		}
		return out
	case uint64:
		// A binary plist's 8-byte integers are signed (Apple writes a
		// negative number so); an unsigned one of 2^63 or more, which
		// Apple writes in 16 bytes, cannot be told from it after
		// decoding and shows as negative.
		if c.binary && v > math.MaxInt64 {
			return int64(v)
		}
		return v
	case []byte:
		return base64.StdEncoding.EncodeToString(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case float64:
		return jsonReal(v)
	}
	// string, bool, int64, uint64. micromdm/plist would give a float32
	// for a 32-bit binary real, but fails to read one (it reads 8 bytes),
	// so such a result never gets here: mdm.DecodeCommandResults refuses
	// it first, as the MDM endpoint does.
	return v
}

// jsonReal spells a real as the shortest number that reads back as the
// same value, or as an XML plist spells what JSON cannot.
func jsonReal(f float64) any {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
}
