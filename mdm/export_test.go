package mdm

// Internals the external tests (package mdm_test) check.
var (
	ErrPlistPanic     = errPlistPanic
	ErrBadBinaryPlist = errBadBinaryPlist
	ErrXMLTooDeep     = errXMLTooDeep
	PlistMaxDepth     = plistMaxDepth
)

// DecodeXMLFast is the decoders' XML fast path: done says it decoded raw
// into v.
func DecodeXMLFast(raw []byte, v any) (done bool, err error) { return unmarshalXML(raw, v) }

// DecodeWithLibrary decodes raw into v with github.com/micromdm/plist only.
func DecodeWithLibrary(raw []byte, v any) error { return unmarshalPlist(raw, v) }

// DecodeCheckinFast is DecodeCheckin's XML fast path.
func DecodeCheckinFast(raw []byte) (Checkin, bool, error) { return decodeCheckinXML(raw) }

// DecodeCheckinWithLibrary is DecodeCheckin with github.com/micromdm/plist
// only.
func DecodeCheckinWithLibrary(raw []byte) (Checkin, error) { return decodeCheckinPlist(raw) }

// FastPathPanics returns how many panics the XML fast path recovered from.
func FastPathPanics() int64 { return fastPathPanics.Load() }

// XMLTooDeep is the depth scan of XML documents left to micromdm/plist.
func XMLTooDeep(src []byte, max int) bool { return xmlTooDeep(src, max) }
