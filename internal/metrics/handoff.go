package metrics

import "github.com/prometheus/client_golang/prometheus"

// Handoff counts the callers a gateway's tunnel server delivers, by how the caller's
// bytes after its ClientHello crossed from the endpoint process:
//
//	phantom_handoff_tunnel_connections_total{endpoint, crossing}   counter (raw | tunnel)
//
// raw: on the tunnel's socket outside its TLS (a TLS 1.3 caller); tunnel: inside it (a
// TLS 1.2 caller, or a ClientHello the endpoint could not read whole in time).
type Handoff struct {
	conns *prometheus.CounterVec
}

// NewHandoff registers the handoff collectors on reg.
func NewHandoff(reg prometheus.Registerer) *Handoff {
	h := &Handoff{conns: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "handoff", Name: "tunnel_connections_total",
		Help: "Callers delivered through handoff tunnels from endpoint processes, by how their bytes after the ClientHello crossed: raw (outside the tunnel's TLS, TLS 1.3 callers) or tunnel (inside it).",
	}, []string{"endpoint", "crossing"})}
	reg.MustRegister(h.conns)
	return h
}

// Delivered counts one caller of endpoint delivered through a tunnel; once per
// connection, not per request.
func (h *Handoff) Delivered(endpoint string, raw bool) {
	crossing := "tunnel"
	if raw {
		crossing = "raw"
	}
	h.conns.WithLabelValues(token(endpoint), crossing).Inc()
}
