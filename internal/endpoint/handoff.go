package endpoint

import (
	"errors"
	"net"

	"github.com/phantom-perimeter/phantom/internal/admission"
	"github.com/phantom-perimeter/phantom/internal/handoff"
)

// PassFD is a Config.Handoff for a gateway on the same host: each connection's descriptor
// goes to the gateway over s's Unix socket, and the endpoint closes its own copy at once;
// the caller's TCP connection lives on in the gateway. Nothing of the caller's traffic
// passes through the endpoint process after its first byte.
func PassFD(s *handoff.FDSender) func(net.Conn, handoff.Preamble) error {
	return func(c net.Conn, p handoff.Preamble) error {
		tc := admission.TCP(c)
		if tc == nil {
			c.Close()
			return errors.New("not a TCP connection: its descriptor cannot be passed")
		}
		if err := s.Send(tc, p); err != nil {
			admission.Reset(c)
			return err
		}
		// Only this process's descriptor: the socket stays open in the gateway, and no
		// FIN or RST is sent (no SetLinger: the option belongs to the shared socket).
		c.Close()
		return nil
	}
}
