package endpoint

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"net/http"
	"net/netip"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// Audit vocabulary; see the package comment.
const (
	eventSource   = "vpce.amazonaws.com"
	eventType     = "AwsVpceEvent"
	eventCategory = "NetworkActivity"

	eventConnect = "Connect"
	eventInvoke  = "Invoke"

	codeSecurityGroupDenied = "SecurityGroupDenied"
	codePlaintextRefused    = "PlaintextRefused"
	codeTLSHandshakeFailed  = "TLSHandshakeFailed"
	codeConnectionLimit     = "ConnectionLimitExceeded"
	codeAccessDenied        = "VpceAccessDenied"
	codeBadRequest          = "BadRequest"
	codeGatewayUnreachable  = "GatewayUnreachable"
	codeGatewayTimeout      = "GatewayTimeout"
)

// errorMessages are the errorMessage of each code.
var errorMessages = map[string]string{
	codeSecurityGroupDenied: "No ingress rule of the endpoint's security group admits the source address and port.",
	codePlaintextRefused:    "The endpoint accepts TLS only.",
	codeTLSHandshakeFailed:  "The TLS handshake did not complete.",
	codeConnectionLimit:     "Too many TLS handshakes are in progress.",
	codeAccessDenied:        "The endpoint does not serve the API the request names.",
	codeBadRequest:          "The endpoint serves origin-form HTTP requests only.",
	codeGatewayUnreachable:  "No gateway replica could be reached.",
	codeGatewayTimeout:      "The gateway did not answer in time.",
}

// newEvent returns an event with the fields every endpoint record shares.
func (e *Endpoint) newEvent(name, code string, src netip.Addr, requestID string) *audit.Event {
	ev := &audit.Event{
		EventVersion:    audit.EventVersion,
		EventTime:       e.now().UTC(),
		EventSource:     eventSource,
		EventName:       name,
		ErrorCode:       code,
		ErrorMessage:    errorMessages[code],
		RequestID:       requestID,
		EventID:         newID(),
		ReadOnly:        true,
		EventType:       eventType,
		ManagementEvent: false,
		EventCategory:   eventCategory,
		VPCEndpointID:   e.id,
	}
	if src.IsValid() {
		ev.SourceIPAddress = src.String()
	}
	if s := e.cfg.Spec(); s != nil {
		ev.AWSRegion, ev.RecipientAccountID = s.Region, s.Account
	}
	return ev
}

// tlsDetails is CloudTrail's tlsDetails of a caller's request.
func tlsDetails(r *http.Request) *audit.TLSDetails {
	if r.TLS == nil {
		return nil
	}
	return &audit.TLSDetails{
		TLSVersion:               tlsVersionName(r.TLS.Version),
		CipherSuite:              tls.CipherSuiteName(r.TLS.CipherSuite),
		ClientProvidedHostHeader: r.Host,
	}
}

// tlsVersionName names a TLS version as CloudTrail's tlsDetails does ("TLSv1.3").
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1"
	}
	return tls.VersionName(v)
}

// newID returns a random UUIDv4, the form of AWS request and event ids.
func newID() string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails (Go 1.24+)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var buf [36]byte
	hex.Encode(buf[0:8], u[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], u[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], u[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], u[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], u[10:])
	return string(buf[:])
}
