package endpoint

import (
	"net/http"
	"net/netip"

	"github.com/phantom-perimeter/phantom/internal/admission"
	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/requestid"
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
	codeConnectionLimit     = admission.CodeConnectionLimit
	codeAccessDenied        = "VpceAccessDenied"
	codeMisdirected         = "MisdirectedRequest"
	codeBadRequest          = "BadRequest"
	codeGatewayUnreachable  = "GatewayUnreachable"
	codeGatewayTimeout      = "GatewayTimeout"
)

// errorMessages are the errorMessage of each code.
var errorMessages = map[string]string{
	codeSecurityGroupDenied: "No ingress rule of the endpoint's security group admits the source address and port.",
	codePlaintextRefused:    "The endpoint accepts TLS only.",
	codeTLSHandshakeFailed:  "The TLS handshake did not complete.",
	codeConnectionLimit:     "Too many connections are open or in their TLS handshake.",
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
		EventID:         requestid.New(),
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
		TLSVersion:               audit.TLSVersionName(r.TLS.Version),
		CipherSuite:              audit.CipherSuiteName(r.TLS.CipherSuite),
		ClientProvidedHostHeader: r.Host,
	}
}
