// Package export turns detect.Finding values into the formats findings leave Phantom in:
// GuardDuty's own JSON (the stored form, ToStore and FromStore), the OCSF Detection
// Finding (class 2004) that SIEMs ingest, and the AWS Security Finding Format (ASFF) in
// which GuardDuty sends findings to Security Hub. It does not detect, store or serve.
package export
