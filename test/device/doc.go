// Package device simulates Apple devices talking to an MDM server, for
// PicoMDM's end-to-end tests and the devsim tool.
//
// A Device holds an identity (a key and a certificate issued by a CA), the
// identifiers of one MDM channel (UDID or EnrollmentID, plus UserID or
// EnrollmentUserID for user channels) and push details, and speaks the
// check-in and command protocols of Apple's "Device Management"
// documentation the way a real device does: XML plist bodies sent with PUT,
// each signed with a detached CMS signature in the Mdm-Signature header
// (the behaviour of an MDM payload with SignMessage set), or, for servers
// behind a TLS-terminating proxy, with the certificate in a header.
//
// Low-level helpers (Send, NewRequest, SignBody) let tests spoof or break
// any part of a request. A Fleet drives many devices at once.
package device
