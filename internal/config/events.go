package config

// Audit events about the spec itself, which every process records in its audit chains:
// a spec load is the most powerful change to a perimeter, and who changed what, when,
// must be on the record. eventSource is EventSource; requestParameters name the file,
// its owner and mode; responseElements the digest loaded and the one it replaced
// ("sha256:<hex>" of the file); additionalEventData the process.
const (
	EventSource = "config.phantom.internal"
	// EventSpecLoaded: the spec a process starts with.
	EventSpecLoaded = "PerimeterSpecLoaded"
	// EventSpecReloaded: a changed file swapped in while running.
	EventSpecReloaded = "PerimeterSpecReloaded"
	// EventSpecRejected: a changed file that did not validate; the running spec stays.
	EventSpecRejected = "PerimeterSpecRejected"
	// EventSpecMismatch: live replicas have enforced different specs for longer than a
	// reload interval; additionalEventData.digests maps each digest to its replicas.
	EventSpecMismatch = "PerimeterSpecMismatch"
)
