// Package mdm holds the Apple MDM protocol types PicoMDM speaks: check-in
// messages, command reports, commands and enrollment identifiers, and the
// plist decoding that turns a device's request body into them.
//
// It follows Apple's "Device Management" documentation (the check-in and
// command protocols) and keeps the raw bytes of everything it decodes, so
// that storage and webhooks see exactly what the device sent.
package mdm
