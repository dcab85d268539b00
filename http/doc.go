// Package http holds what PicoMDM's HTTP handlers share: the one mapping
// from errors to status codes (StatusFor), the error writers for the device
// path (status only) and the API path (JSON), size-limited body reading,
// and the API's basic-auth middleware. The handlers themselves live in
// http/mdm (devices) and http/api (operators).
package http
