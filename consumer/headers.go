package consumer

// The headers this service adds to the records it writes, in one place.
// The data contract names the produktly-error-*, produktly-source-* and
// produktly-retry-* ones.
const (
	// Dead-letter topic: why the record was dead-lettered.
	HeaderErrorCode = "produktly-error-code"
	HeaderError     = "produktly-error"

	// Dead-letter and retry topics: where the record first came from. A
	// record parked again, or dead-lettered after a park, keeps the
	// coordinates of its first copy, so its messageId never changes.
	HeaderSourceTopic     = "produktly-source-topic"
	HeaderSourcePartition = "produktly-source-partition"
	HeaderSourceOffset    = "produktly-source-offset"

	// HeaderOmitted is set on a dead letter that the dead-letter topic
	// would not take whole: "value" (the value is left out, key and
	// headers kept) or "value,key,headers" (only this service's headers
	// are kept). HeaderOriginalValueSize and HeaderOriginalKeySize give
	// the sizes, in bytes, of what was left out. The record itself is
	// still on the source topic at its source coordinates until retention
	// removes it.
	HeaderOmitted           = "produktly-omitted"
	HeaderOriginalValueSize = "produktly-original-value-size"
	HeaderOriginalKeySize   = "produktly-original-key-size"

	// HeaderReplayedFrom marks a record that `dlq replay` re-produced; its
	// value is the original "topic/partition/offset". The consumer derives
	// the messageId of such a record from those original coordinates, so
	// replaying the same dead-lettered record twice never creates two
	// Segment events.
	HeaderReplayedFrom = "produktly-replayed-from"

	// Retry topic (contract v2, accounts).
	HeaderRetryAccount   = "produktly-retry-account"
	HeaderRetryAttempt   = "produktly-retry-attempt"
	HeaderRetryNotBefore = "produktly-retry-not-before"
)

// ownHeader reports whether key is one of the headers this service adds
// to a copy of a record (as opposed to the record's own headers).
func ownHeader(key string) bool {
	switch key {
	case HeaderErrorCode, HeaderError, HeaderSourceTopic, HeaderSourcePartition, HeaderSourceOffset,
		HeaderOmitted, HeaderOriginalValueSize, HeaderOriginalKeySize, HeaderReplayedFrom,
		HeaderRetryAccount, HeaderRetryAttempt, HeaderRetryNotBefore:
		return true
	}
	return false
}
