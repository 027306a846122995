// Package integrations holds the table of Segment integrations of
// Produktly accounts (contract v2, accounts mode): for each account, its
// write key, its region and whether it is active.
//
// A Table is loaded from one source and followed while it runs:
//
//   - NewTopic: a compacted Kafka topic, key = account id, value = the
//     integration object, a tombstone removes the account, the last record
//     per key wins. Every partition is read from its first offset with
//     partition-level readers and no consumer group, so every replica reads
//     all of it. The table is Ready once every partition has been read up
//     to the end offsets it had when reading started; later records take
//     effect within a second.
//     Partitions added later, or a topic deleted, are noticed within
//     MetadataInterval: the topic is read again from the start while the
//     current snapshot stays in force. Producers of the topic must key by
//     account id with Kafka's default (murmur2) partitioner, as Publisher
//     does, so that all records of an account share a partition and the
//     last one wins.
//   - NewFile: a JSON file mapping account id → integration object (a
//     Kubernetes Secret mounted as a file), polled for changes, including
//     the Secret's ..data symlink swap. It is loaded before NewFile returns.
//
// The table publishes immutable snapshots swapped atomically: Lookup, on
// the per-record path, is one atomic load and one map read, with no lock and
// no allocation.
//
// Write keys are secrets. They are held as WriteKey, whose String, Format,
// MarshalJSON, MarshalText and zerolog marshalling all print "[redacted]";
// WriteKey.Reveal is the one way to read one, for the Authorization header.
// No error, log line or metric of this package carries a key.
package integrations
