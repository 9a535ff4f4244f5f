package store

// Hooks for the external tests of the PostgreSQL listener.

// ListenerConnects returns how many times the listener has connected and started
// listening.
func (p *Postgres) ListenerConnects() int64 { return p.listens.Load() }

// ListenerPID returns the server process id of the listener's latest connection.
func (p *Postgres) ListenerPID() uint32 { return p.listenerPID.Load() }
