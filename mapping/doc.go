// Package mapping turns one raw Produktly interaction record into one Segment
// track call, following the data contract (docs/contract.md, contract v2).
//
// The package is pure: Map takes the record's value and the Kafka facts the
// contract needs (topic, partition, offset, record timestamp) and returns
// either a Call or an *Error. It does no I/O, reads no clock, keeps no state
// and imports neither Kafka nor HTTP; the same record always maps to the same
// bytes.
//
// The contract, briefly:
//
//   - The value is one JSON object in UTF-8. Its type names one of the 14
//     events of the catalogue, matched ignoring case and the separators
//     ' ', '_', '-' and '.'. Field names may be camelCase or snake_case; two
//     spellings of one field must carry the same value. null and "" count as
//     absent.
//   - The event name, the required id (tour_id, checklist_id, smart_tip_id,
//     announcement_id or nps_widget_id: a string or an integer) and, for
//     Tour Step and Checklist Step Completed, the metadata shape come from
//     one table, the catalogue.
//   - properties hold the required id, the metadata where required and
//     every extra field under its snake_case name, values forwarded
//     unchanged; the envelope fields (type, id, userId, anonymousId,
//     timestamp, accountId) are not repeated there.
//   - userId and anonymousId are strings and at least one is present.
//     timestamp is RFC 3339 or integer epoch milliseconds; without it the
//     Kafka record timestamp is used, never the time of sending.
//   - messageId is a version 5 UUID of the record's id, or of its topic,
//     partition and offset when it has none, so redeliveries de-duplicate.
//   - accountId (contract v2) is an envelope field: a string or an integer,
//     read as text into Call.AccountID, never a property. Map (single-source
//     mode) does not require it; MapAccount (accounts mode) does
//     (missing_account) and names a record's id with its account in the
//     messageId.
//   - context.integration is {"name":"Produktly","version":"1.0.0"}, and the
//     encoded call fits Segment's 32000-byte message limit.
//
// MapInto and MapAccountInto are Map and MapAccount for a caller that sends
// only Call.JSON: they append the same bytes to a buffer the caller passes
// and do not build Call.Properties. With a nil buffer one allocation holds
// the message and the call's strings; with a buffer that has room only the
// strings are allocated. MapOnto is MapInto for a caller that keeps a
// batch of calls alive together (the consumer's chunk in single source):
// it appends the strings to the caller's arena too, so that a call into
// an arena with room allocates nothing.
//
// A record that breaks a rule yields an *Error whose Code is one of Codes();
// the consumer dead-letters it with that code and message. Callers tell codes
// apart with errors.Is or errors.As, never by the text.
package mapping
