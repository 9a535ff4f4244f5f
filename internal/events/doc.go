// Package events carries audit records from the processes that write them to the
// detectors that read them, over NATS JetStream, when the perimeter outgrows one host.
//
// Each process's audit chains stay the source of truth. A Publisher follows the chains
// its process writes, as a reader of the files (never inside the request path: a call is
// answered once its record is in the local chain, as without a broker), and publishes
// every record, exactly as the chain holds it, to the stream's subject
// phantom.audit.<account>.<chain>.<source>, with its place in the chain in headers. It
// persists how far the broker has acknowledged each chain, so a publisher that was
// disconnected, or restarted, goes on from there: the records written meanwhile are read
// back from the chain. JetStream's Nats-Msg-Id deduplicates what is published twice
// within the stream's duplicate window; consumers drop what comes again after it.
//
// Nothing is trusted because it came over the stream: ParseMessage checks that a
// message is a well-formed record of the chain its subject names, whose hash is the hash
// of its content, and consumers check that each chain's records follow one another
// (package consume). NATS is a transport, not a witness.
//
// It does not detect (package detect) or commit cursors (package consume).
package events
