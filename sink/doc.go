// Package sink delivers encoded Segment calls to Segment's HTTP Tracking API
// (POST /v1/batch) and reports one outcome per message, so that the caller
// can commit a Kafka offset only after Segment acknowledged everything before
// it.
//
// # Delivery rules
//
// Every message handed to [Segment.Enqueue] or [Segment.EnqueueBatch] (which
// takes a batch all or none) ends in exactly one call of its Done function,
// or of its Acker's Ack with its Seq, from a sink goroutine, with one of
// four outcomes:
//
//   - [Delivered]: Segment answered 2xx for a request that carried it.
//
//   - [Rejected]: Segment answered 400 for a request that carried this
//     message alone, or the message is over Segment's 32000-byte limit and
//     was never sent. No retry can succeed; the caller dead-letters it.
//     When Segment answers 400 to every call (Options.SystemicRejects
//     single-call requests in a row), the sink treats 400 as an outage
//     instead: it retries, and Healthy reports false.
//
//   - [Abandoned]: the sink gave up without an answer, because the message's
//     Cancel channel was closed (its partition was revoked) or because Run's
//     context ended. The message may or may not have reached Segment; the
//     caller must not commit it. Redelivery is safe because the messageId is
//     deterministic and Segment de-duplicates on it.
//
//   - [Parked]: not delivered because the message's destination is parked
//     (Options.ParkAfter, Options.ParkAbove): its deliveries kept failing
//     transiently. The caller keeps the message elsewhere (a retry topic)
//     and sends it again later with Message.Retry set.
//
// Everything else is retried for ever (until its destination is parked), with
// the same messages and messageIds:
// 5xx, 429, timeouts, connection errors, and also 401/403 (a wrong or revoked
// write key is an operator error that must not lose data) and any other
// status. The wait between attempts grows exponentially from
// Options.MinBackoff to Options.MaxBackoff with jitter, and is at least what a
// Retry-After header asks for. When a request carrying several messages gets
// 400 or 413, the batch is split in halves, recursively, so the good messages
// are delivered and only the bad ones are rejected. A 413 for one message is
// retried: every message is checked against Segment's limits before it is
// sent, so what refuses it is in between.
//
// # Destinations
//
// Every message names its [Destination]: an account label, a write key and
// an endpoint. The zero Destination is the single source of Options, so a
// single-source caller never sets it. Requests carry one write key each,
// so the sink keeps per destination its batches, its pacing (Options.MaxRPS:
// at the cap its batches fill up to Segment's limits instead of queueing
// requests), its backoff, its Retry-After pause and its health: a success
// of one destination never wakes another's sleeping batches, and one
// failing destination leaves Healthy true while others deliver. At most
// Options.DestinationConcurrency batches of one destination are out at
// once, and a batch waiting for its retry holds none of the Concurrency
// request slots. A destination whose deliveries keep failing is parked
// (see [Parked]); [Segment.Status] lists the failing and parked ones, and
// the gauges destinations_failing and destinations_parked count them. A
// destination that holds nothing is forgotten after a minute idle (a
// parked one after 15 minutes), so the state stays bounded by the
// destinations in use. Write keys never appear in logs, metrics, errors or
// Status.
//
// # Why not analytics-go's client
//
// github.com/segmentio/analytics-go/v3 (v3.3.0) is the official client, and
// this package keeps its wire format and limits: the {"batch":[...],
// "sentAt":...,"context":{"library":...}} body, basic auth with the write key
// as user name and an empty password, 500000 bytes per request and 32000
// bytes per message. Its client cannot be used for at-least-once delivery
// from Kafka, because it
//
//   - retries every failure, including a 400 for one bad message, 10 times
//     over about 43 seconds and then drops the whole batch;
//   - ignores Retry-After and uses no jitter, so replicas retry in lock step;
//   - fails batches that are waiting for a retry as soon as Close is called;
//   - has no back-pressure tied to delivery: Enqueue waits only for a
//     100-message channel that its loop drains at once, every batch gets
//     its own goroutine, and once 1000 requests are in flight (each may
//     retry for 43 seconds) further batches fail with ErrTooManyRequests;
//   - cannot tell a 400 caused by one message from a batch-wide failure;
//   - resends the body of the first attempt, so its sentAt is stale on every
//     retry. Segment computes timestamp = receivedAt - (sentAt -
//     originalTimestamp), so a stale sentAt shifts the event's time by the
//     retry delay. This package stamps a fresh sentAt on every attempt.
//   - closes the response body of a successful request without reading it,
//     which keeps net/http from reusing the connection, and uses
//     http.DefaultTransport's two idle connections per host for up to 1000
//     concurrent requests; both mean a new TLS handshake for most requests.
//
// Messages arrive already encoded (package mapping writes them in
// analytics-go's wire form and checks the size), so the hot path never
// re-encodes a message: a body up to the transport's write buffer is the
// messages appended into a pooled buffer, and a larger one is read from
// the messages themselves while the request is written.
package sink
