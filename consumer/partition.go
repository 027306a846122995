package consumer

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/integrations"
	"github.com/produktly/produktly-segment/mapping"
	"github.com/produktly/produktly-segment/sink"
)

// reader reads one partition: batchReader in production, a fake in unit
// tests.
type reader interface {
	SetOffset(offset int64) error
	// FetchBatch returns the partition's next records, at least one, in
	// offset order: from the offset set, then from one past the last
	// record returned. The slice and the messages' keys, values and
	// headers are valid until the next call (batchReader reads its next
	// answer into the same bytes): a caller copies what it keeps longer
	// (ownBytes).
	FetchBatch(ctx context.Context) ([]kafka.Message, error)
	Close() error
}

// partition is one assigned partition. It lives as long as this member owns
// the partition, which may span several generations (see runGeneration).
type partition struct {
	c     *Consumer
	topic string
	id    int
	// retry: a partition of the retry topic (accounts mode). Its records
	// are held until their not-before time, mapped with their original
	// coordinates and sent with sink.Message.Retry.
	retry bool
	tr    *tracker
	slots *budget // MaxInFlightPerPartition
	log   zerolog.Logger
	hwm   atomic.Int64 // high watermark seen on the last fetch
	// next is the next offset to fetch. Only the fetch loop changes it;
	// between generations (no fetch loop) takeOver reads it.
	next int64
	// committed is the last offset committed for the partition by this
	// member, or the offset it was assigned at.
	committed atomic.Int64
	// committedMeta is the metadata last committed with committed (the
	// acknowledged spans above it); only commits use it, one at a time.
	committedMeta string
	// fresh: made for this generation, not carried from the last one.
	fresh bool
	// skip holds the spans of records acknowledged before the last
	// commit by whoever read the partition then (acked.go): they are
	// acknowledged again without being sent.
	skip skipper

	// Scratch of the fetch loop, reused from chunk to chunk.
	offs []int64
	acts []action
	out  []sink.Message

	// work outlives fetching: it ends only when the partition's remaining
	// records are abandoned, so the sink stops retrying them.
	work    context.Context
	abandon context.CancelFunc
}

func (c *Consumer) newPartition(topic string, id int, start int64) *partition {
	work, abandon := context.WithCancel(context.Background())
	retry := c.accounts() && topic == c.opts.RetryTopic
	lc := c.log.With().Int("partition", id)
	if retry {
		lc = lc.Str("retry_topic", topic)
	}
	p := &partition{
		c:       c,
		topic:   topic,
		id:      id,
		retry:   retry,
		next:    start,
		tr:      newTracker(start),
		slots:   newBudget(c.opts.MaxInFlightPerPartition),
		log:     lc.Logger(),
		work:    work,
		abandon: abandon,
		fresh:   true,
	}
	p.committed.Store(start)
	p.hwm.Store(-1)
	return p
}

func (p *partition) key() topicPartition { return topicPartition{p.topic, p.id} }

// resume continues a partition carried from the last generation in one
// that assigned it at offset committed. That is only safe when committed is
// what this member last committed: otherwise another member owned the
// partition in between and its commit is what counts.
func (p *partition) resume(committed int64) bool {
	if committed != p.committed.Load() {
		return false
	}
	p.fresh = false
	next, ok := p.tr.resume(p.next)
	if !ok {
		return false
	}
	p.next = next
	return true
}

// maxChunk caps the records handed on together as one chunk. A chunk's
// bookkeeping (its copy of the kafka.Message headers, what was sent) lives
// until its last record finishes, so the cap bounds what one slow record
// keeps alive besides itself.
const maxChunk = 256

// fetch reads the partition from p.next until ctx ends, handing the
// records on in chunks. Before each chunk it waits for the span from the
// commit point to stay below MaxUncommitted and for in-flight slots: the
// back-pressure that keeps memory flat while Segment is down or a record
// never finishes. The span rule is the one of a fetch per record: a chunk
// ends at the first record that fetching one at a time would have waited
// for.
func (p *partition) fetch(ctx context.Context) {
	r := p.c.seams.newReader(p.topic, p.id)
	defer r.Close()
	if !p.setOffset(ctx, r) {
		return
	}
	p.log.Info().Str("start", humanOffset(p.next)).Msg("partition fetching")
	limit := int64(p.c.opts.MaxUncommitted)
	// pending: fetched and not taken yet, from p.next on. It points into
	// the reader's buffer, so FetchBatch is called again only once it is
	// empty, and every record leaves it through newChunk, which copies.
	var pending []kafka.Message
	for {
		if len(pending) == 0 {
			batch, err := r.FetchBatch(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				p.log.Warn().Err(err).Msg("fetch")
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
			pending = batch
		}
		if p.tr.spanFull(p.next, limit) {
			p.log.Warn().Int64("next", p.next).Int64("commit_point", p.tr.committable()).Int64("limit", limit).
				Msg("uncommitted span at its limit: fetching waits for the oldest record to finish")
			p.c.metrics.spanWaits.Inc()
			if err := p.tr.waitSpan(ctx, p.next, limit); err != nil {
				return
			}
		}
		n := p.admit(pending, limit)
		if p.retry {
			// Revoked or shutting down while the first record waited: it
			// is not taken (p.next stays at it) and is read again.
			var ok bool
			if n, ok = p.due(ctx, pending[:n]); !ok {
				return
			}
		}
		n, err := p.acquire(ctx, n)
		if err != nil {
			return
		}
		c := p.newChunk(pending[:n])
		pending = pending[n:]
		p.hwm.Store(c.msgs[n-1].HighWaterMark)
		p.next = c.msgs[n-1].Offset + 1
		p.handle(ctx, c)
	}
}

// admit returns how many of the records fetched (at least one) the next
// chunk takes: at most maxChunk and MaxInFlightPerPartition, and no further
// than the span cap allows.
func (p *partition) admit(pending []kafka.Message, limit int64) int {
	n := min(len(pending), maxChunk, p.c.opts.MaxInFlightPerPartition)
	p.offs = p.offs[:0]
	for i := range pending[:n] {
		p.offs = append(p.offs, pending[i].Offset)
	}
	return max(1, p.tr.admit(p.next, p.offs, limit))
}

// due holds a retry-topic chunk until its first record's not-before time,
// then returns how many of its records are due: a record not due yet ends
// the chunk there (it is held in turn by the next chunk). It returns false
// when ctx ends while the first record waits.
func (p *partition) due(ctx context.Context, msgs []kafka.Message) (int, bool) {
	if !p.hold(ctx, msgs[0]) {
		return 0, false
	}
	now := time.Now()
	for i := 1; i < len(msgs); i++ {
		if _, _, notBefore, ok := retryInfo(msgs[i]); ok && notBefore.After(now) {
			return i, true
		}
	}
	return len(msgs), true
}

// hold waits until a retry-topic record's not-before time. Only this
// partition's fetching waits (each partition has its own loop, so source
// partitions go on); it returns false when ctx ends first, at once. A
// record without readable retry headers is not held.
func (p *partition) hold(ctx context.Context, m kafka.Message) bool {
	_, _, notBefore, ok := retryInfo(m)
	if !ok {
		return ctx.Err() == nil
	}
	wait := time.Until(notBefore)
	if wait <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// setOffset positions the reader at p.next, retrying while it fails; the
// consumer reports not ready meanwhile, rather than leaving the partition
// stopped unseen. It returns false when ctx ends first.
func (p *partition) setOffset(ctx context.Context, r reader) bool {
	stalled := false
	defer func() {
		if stalled {
			p.c.stalled.Add(-1)
		}
	}()
	for {
		err := r.SetOffset(p.next)
		if err == nil {
			return true
		}
		if !stalled {
			stalled = true
			p.c.stalled.Add(1)
		}
		p.log.Error().Err(err).Int64("offset", p.next).Msg("set offset: partition stalled, not ready; retrying")
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}

// messageOverhead is what a record costs in flight beyond its key, value,
// headers and JSON: its copy of the kafka.Message in its chunk, what was
// sent, and the sink.Message that carries it.
const messageOverhead = 512

// weight is what a record counts against MaxInFlightBytes: everything it
// holds while in flight (the message with its key, value and headers, the
// mapped JSON and the sink's copy of it in a request body), or the whole
// cap for a record larger than it, so it can still pass on its own.
func (p *partition) weight(m kafka.Message, json []byte) int64 {
	n := int64(len(m.Key) + len(m.Value) + messageOverhead + 2*len(json))
	for _, h := range m.Headers {
		n += int64(len(h.Key) + len(h.Value))
	}
	return min(n, int64(p.c.opts.MaxInFlightBytes))
}

// acquire takes in-flight slots for up to n records, of the partition's
// cap and of the consumer's: at least one, as many as are free, in one
// operation each. It returns how many it took.
func (p *partition) acquire(ctx context.Context, n int) (int, error) {
	n, err := p.slots.take(ctx, n)
	if err != nil {
		return 0, err
	}
	k, err := p.c.slots.take(ctx, n)
	if err != nil {
		p.slots.release(n)
		return 0, err
	}
	if k < n {
		p.slots.release(n - k)
	}
	p.c.metrics.inFlight.Add(float64(k))
	return k, nil
}

// chunk is records of one partition taken together: their slots were
// acquired at once, their bytes of the byte cap too, they were added to
// the tracker as one range and handed to the sink in one EnqueueBatch. The
// sink reports each record's outcome through the chunk (sink.Acker, Seq =
// the record's index), so no closure is made per record.
//
// Each record gives its slot back as it finishes (so that one slow
// destination holds only its own records' slots), and the bytes of its
// payload (key, value, headers, JSON); the chunk's own bookkeeping
// (messageOverhead per record) is given back when its last record
// finishes, since it lives until then.
type chunk struct {
	p *partition
	// msgs are the records. A record's entry is not cleared when it
	// finishes: its key, value and headers live in the chunk's one array
	// (ownBytes) until the chunk goes, so clearing it frees nothing.
	msgs []kafka.Message
	sent []sent  // what each was sent as; cleared as each record finishes
	w    []int64 // payload bytes each record gives back
	offs []int64 // each record's offset, dense: what an acknowledgement reads
	// overhead is the bytes of the byte cap the chunk gives back once
	// left, the records not finished yet, reaches zero.
	overhead int64
	left     atomic.Int32
}

func (p *partition) newChunk(msgs []kafka.Message) *chunk {
	n := len(msgs)
	nums := make([]int64, 2*n)
	c := &chunk{p: p, msgs: ownBytes(msgs), sent: make([]sent, n), w: nums[:n:n], offs: nums[n:]}
	for i := range msgs {
		c.offs[i] = msgs[i].Offset
	}
	c.left.Store(int32(n))
	return c
}

// ownBytes copies msgs, with their keys, values and header values moved
// into one array of the chunk's own (header keys and Topic are strings
// already). The reader's messages point into its answer buffer, which it
// reads its next answer into (the reader contract): a record handed on,
// to the sink, the dead-letter or the retry topic, must not. Copied, a
// slow record also keeps its chunk's bytes alive and no more, which is
// what MaxInFlightBytes counts, rather than a whole Fetch response.
func ownBytes(msgs []kafka.Message) []kafka.Message {
	out := append(make([]kafka.Message, 0, len(msgs)), msgs...)
	size, nh := payloadSize(out)
	moveInto(out, make([]byte, 0, size), make([]kafka.Header, 0, nh))
	return out
}

// payloadSize returns the bytes of msgs' keys, values and header values,
// and the number of their headers: what moveInto needs room for.
func payloadSize(msgs []kafka.Message) (size, headers int) {
	for _, m := range msgs {
		size += len(m.Key) + len(m.Value)
		for _, h := range m.Headers {
			size += len(h.Value)
		}
		headers += len(m.Headers)
	}
	return size, headers
}

// moveInto appends the keys, values and header values of msgs to arena and
// their headers to headers, and points msgs at those copies. With room for
// payloadSize(msgs), nothing is allocated. It returns arena and headers.
func moveInto(msgs []kafka.Message, arena []byte, headers []kafka.Header) ([]byte, []kafka.Header) {
	own := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		from := len(arena)
		arena = append(arena, b...)
		return arena[from:len(arena):len(arena)]
	}
	for i := range msgs {
		m := &msgs[i]
		m.Key, m.Value = own(m.Key), own(m.Value)
		if len(m.Headers) > 0 {
			from := len(headers)
			for _, h := range m.Headers {
				headers = append(headers, kafka.Header{Key: h.Key, Value: own(h.Value)})
			}
			m.Headers = headers[from:len(headers):len(headers)]
		}
	}
	return arena, headers
}

// Ack takes the sink's outcome for record i.
func (c *chunk) Ack(i int, r sink.Result) {
	s := c.sent[i]
	c.sent[i] = sent{}
	c.p.finish(c.msgs[i], held{c: c, w: c.w[i]}, s, r)
}

// AckAll is sink.BatchAcker's: records of the chunk delivered together are
// acknowledged in the tracker under one lock, and give back their slots
// and bytes in one release of each cap. Any other outcome goes record by
// record (Ack).
func (c *chunk) AckAll(seqs []int, r sink.Result) {
	if r.Outcome != sink.Delivered {
		for _, i := range seqs {
			c.Ack(i, r)
		}
		return
	}
	var w int64
	run := true // seqs are consecutive: their offsets are a slice of c.offs
	for k, i := range seqs {
		run = run && i == seqs[0]+k
		w += c.w[i]
		c.sent[i] = sent{}
	}
	p, n := c.p, len(seqs)
	p.countDelivered(n)
	if run {
		p.tr.ackAll(c.offs[seqs[0] : seqs[0]+n])
	} else {
		// A destination's records of one chunk, scattered among other
		// destinations' (accounts mode): a few at a time, so that no
		// large buffer is zeroed for a run of two.
		var buf [32]int64
		for len(seqs) > 0 {
			k := min(len(seqs), len(buf))
			for j, i := range seqs[:k] {
				buf[j] = c.offs[i]
			}
			p.tr.ackAll(buf[:k])
			seqs = seqs[k:]
		}
	}
	c.release(n, w)
}

// held is one record's claim on the in-flight caps: one slot of each, and
// w payload bytes; its chunk's bookkeeping bytes go back with the chunk's
// last record. Every record's claim is released exactly once.
type held struct {
	c *chunk
	w int64
}

// release gives back the record's slots and bytes, and its chunk's
// bookkeeping once the chunk's last record finishes.
func (h held) release() { h.c.release(1, h.w) }

// release gives back the slots of n of the chunk's records and their w
// payload bytes, and the chunk's bookkeeping once its last record
// finishes.
func (c *chunk) release(n int, w int64) {
	p := c.p
	p.c.metrics.inFlight.Sub(float64(n))
	if c.left.Add(-int32(n)) == 0 {
		w += c.overhead
	}
	if w > 0 {
		p.c.bytes.Release(w)
	}
	p.c.slots.release(n)
	p.slots.release(n)
}

// action is what handle decided for one record of a chunk.
type action struct {
	kind   actionKind
	code   mapping.Code // dead letters
	reason string
}

type actionKind uint8

const (
	toSink actionKind = iota
	toSkip            // accounts mode: unknown or inactive account
	toDeadLetter
)

// handle maps a chunk's records and routes each one. ctx ends when
// fetching stops; a hand-over blocked by the byte cap or a full sink queue
// then gives up, so a revoke or shutdown never waits on it, and the
// chunk's records are read again (none of them was handed on: the sink
// takes a chunk's messages all or none, and skips and dead letters are
// handed on only after it did).
func (p *partition) handle(ctx context.Context, c *chunk) {
	n := len(c.msgs)
	p.tr.addRange(p.offs[:n])
	p.c.metrics.consumed.Add(float64(n))
	acts := p.acts[:0]
	var total int64
	// In single source the chunk's calls share arenas of its own
	// (mapping.MapOnto): its records go to one destination in order and
	// finish about together. In accounts mode each call is its own
	// allocation, so that a record lingering in a small account's batch
	// holds only its own.
	var arena []byte
	for i := range c.msgs {
		if p.skip.acked(c.msgs[i].Offset) {
			p.c.metrics.skippedAcked.Inc()
			acts = append(acts, action{kind: toSkip})
			continue
		}
		if !p.c.accounts() {
			arena = roomFor(arena, c.msgs[i:])
		}
		var a action
		a, arena = p.route(&c.msgs[i], &c.sent[i], arena)
		acts = append(acts, a)
		switch a.kind {
		case toSink:
			c.w[i] = p.weight(c.msgs[i], c.sent[i].json)
		case toDeadLetter:
			c.w[i] = p.weight(c.msgs[i], nil)
		}
		total += c.w[i]
	}
	p.acts = acts
	// A chunk heavier than the cap takes the whole of it, so that it can
	// still pass on its own; its bytes then go back with its last record.
	limit := int64(p.c.opts.MaxInFlightBytes)
	took := min(total, limit)
	if took > 0 {
		if err := p.c.bytes.Acquire(ctx, took); err != nil {
			p.dropChunk(c, 0)
			return
		}
	}
	if total > limit {
		clear(c.w)
		c.overhead = took
	} else {
		for i := range c.w {
			o := min(c.w[i], messageOverhead)
			c.w[i] -= o
			c.overhead += o
		}
	}
	out := p.out[:0]
	for i, a := range acts {
		if a.kind == toSink {
			s := &c.sent[i]
			out = append(out, sink.Message{ID: s.id, JSON: s.json, Cancel: p.work.Done(), Destination: s.dst, Retry: p.retry, Acker: c, Seq: i})
		}
	}
	if len(out) > 0 {
		err := p.c.opts.Sink.EnqueueBatch(ctx, out)
		clear(out)
		p.out = out[:0]
		if err != nil {
			// Fetching stopped (or the sink did) before the sink took
			// the chunk: it stays uncommitted and is read again.
			p.dropChunk(c, took)
			return
		}
	}
	for i, a := range acts {
		if a.kind == toSink {
			continue
		}
		m := c.msgs[i]
		c.sent[i] = sent{}
		h := held{c: c, w: c.w[i]}
		if a.kind == toSkip {
			p.done(m, h)
		} else {
			p.deadLetter(m, h, a.code, a.reason)
		}
	}
	clear(acts)
}

// dropChunk gives up a chunk none of whose records was handed on: they are
// dropped from the tracker (read again by whoever reads the partition
// next) and its slots and the bytes it took go back.
func (p *partition) dropChunk(c *chunk, took int64) {
	n := len(c.msgs)
	for _, o := range c.offs {
		p.tr.drop(o)
	}
	p.c.metrics.inFlight.Sub(float64(n))
	if took > 0 {
		p.c.bytes.Release(took)
	}
	p.c.slots.release(n)
	p.slots.release(n)
}

// route maps one record and decides what happens to it; it is the one
// place for that decision, and fills s for a record to deliver. A record
// that does not map is dead-lettered. Single-source mode: deliver.
// Accounts mode, by the account's integration in force now (at map time):
// active, deliver to its region's endpoint with its write key; unknown or
// inactive, skip (acknowledged like a delivered record, counted).
func (p *partition) route(m *kafka.Message, s *sent, arena []byte) (action, []byte) {
	rec := mapping.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Time: m.Time, Value: m.Value}
	if len(m.Headers) > 0 {
		switch {
		case p.retry:
			// A parked record keeps the messageId of its first copy.
			rec.Topic, rec.Partition, rec.Offset = origin(*m)
		default:
			// So does a replayed one.
			if t, part, off, ok := replayOrigin(*m); ok {
				rec.Topic, rec.Partition, rec.Offset = t, part, off
			}
		}
	}
	// Both skip the Properties the consumer never reads.
	var call mapping.Call
	var err error
	if p.c.accounts() {
		_, call, err = mapping.MapAccountInto(nil, rec)
	} else {
		arena, call, err = mapping.MapOnto(arena, rec)
	}
	if err != nil {
		var merr *mapping.Error
		if !errors.As(err, &merr) {
			merr = &mapping.Error{Code: mapping.CodeInvalidJSON, Msg: err.Error()}
		}
		return action{kind: toDeadLetter, code: merr.Code, reason: merr.Error()}, arena
	}
	var dst sink.Destination
	if in := p.c.opts.Integrations; in != nil {
		it, ok := in.Lookup(call.AccountID)
		if !ok {
			p.c.metrics.skippedInactive.Inc()
			return action{kind: toSkip}, arena
		}
		account := it.Account // one string per account, shared
		if account == "" {
			account = call.AccountID
		}
		dst = sink.Destination{Account: account, WriteKey: it.WriteKey.Reveal(), Endpoint: p.c.endpoint(it.Region)}
	}
	*s = sent{id: call.MessageID, json: call.JSON, dst: dst}
	return action{kind: toSink}, arena
}

// Arenas of a single-source chunk's calls (mapping.MapOnto): sized for
// callRoom bytes per record beyond its value (a call adds some 190 to the
// bench's records: its envelope, messageId, ISO timestamp and strings),
// and replaced once one has less than callMargin beyond the next value,
// so that a call seldom outgrows its arena (MapOnto would then copy it).
const (
	callRoom   = 256
	callMargin = 1024
)

// roomFor returns arena when it has room for the call of rest[0], else a
// new arena sized for the calls of rest.
func roomFor(arena []byte, rest []kafka.Message) []byte {
	if cap(arena)-len(arena) >= len(rest[0].Value)+callMargin {
		return arena
	}
	size := callMargin
	for i := range rest {
		size += len(rest[i].Value) + callRoom
	}
	return make([]byte, 0, size)
}

// sent is what a record was handed to the sink as, kept for a redelivery.
type sent struct {
	id   string
	json []byte
	dst  sink.Destination
}

// resend hands one record to the sink again, on its own, with Retry set
// (a parked record the retry topic refused as too large).
func (p *partition) resend(ctx context.Context, m kafka.Message, h held, s sent) {
	err := p.c.opts.Sink.EnqueueBatch(ctx, []sink.Message{{
		ID:          s.id,
		JSON:        s.json,
		Cancel:      p.work.Done(),
		Destination: s.dst,
		Retry:       true,
		Done:        func(r sink.Result) { p.finish(m, h, s, r) },
	}})
	if err != nil {
		p.tr.drop(m.Offset)
		h.release()
	}
}

// endpoint is the Tracking API of region.
func (c *Consumer) endpoint(r integrations.Region) string {
	if r == integrations.RegionEU {
		return c.opts.EUEndpoint
	}
	return c.opts.Endpoint
}

// finish takes the sink's outcome for one record, sent as s.
func (p *partition) finish(m kafka.Message, h held, s sent, r sink.Result) {
	switch r.Outcome {
	case sink.Delivered:
		p.countDelivered(1)
		p.done(m, h)
	case sink.Rejected:
		code := mapping.CodeRejected
		var rej *sink.RejectedError
		if errors.As(r.Err, &rej) && rej.Status == http.StatusRequestEntityTooLarge {
			code = mapping.CodeTooLarge
		}
		reason := "segment rejected the call"
		if r.Err != nil {
			reason = r.Err.Error()
		}
		p.deadLetter(m, h, code, reason)
	case sink.Parked:
		p.park(m, h, s)
	default:
		// Abandoned: the sink gave up on it (the partition was abandoned,
		// or the sink stopped). It no longer counts as in flight and the
		// commit point never passes it.
		p.tr.drop(m.Offset)
		h.release()
	}
}

// park writes a record of a parked account to the retry topic; its offset
// is acknowledged once the broker has the copy. A record the retry topic
// refuses as too large is delivered in place (sent again with Retry, so
// the sink attempts it while the account is parked); one whose partition
// was abandoned stays uncommitted.
func (p *partition) park(m kafka.Message, h held, s sent) {
	if p.c.retry == nil {
		// Single-source mode never parks (the sink's ParkAfter is unset).
		// Should it, the record is treated as abandoned: it stays
		// uncommitted and is read again, never lost.
		p.log.Error().Int64("offset", m.Offset).Msg("sink parked a record outside accounts mode; it stays uncommitted")
		p.tr.drop(m.Offset)
		h.release()
		return
	}
	p.c.retry.park(m, s.dst.Account, p.work.Done(), func(err error) {
		switch {
		case err == nil:
			p.done(m, h)
		case errors.Is(err, ErrRecordTooLarge):
			// Called from the retry writer's goroutine, never from a
			// sink callback, so it may enqueue.
			p.resend(p.work, m, h, s)
		default: // ErrParkAbandoned
			p.tr.drop(m.Offset)
			h.release()
		}
	})
}

// countDelivered counts n of the partition's records delivered.
func (p *partition) countDelivered(n int) {
	p.c.metrics.delivered.Add(float64(n))
	if p.retry {
		p.c.metrics.redelivered.Add(float64(n))
	}
}

// done acknowledges one record and frees its claim.
func (p *partition) done(m kafka.Message, h held) {
	p.tr.ack(m.Offset)
	h.release()
}

func (p *partition) deadLetter(m kafka.Message, h held, code mapping.Code, reason string) {
	p.log.Warn().Int64("offset", m.Offset).Str("code", string(code)).Str("reason", reason).Msg("dead-lettering record")
	p.c.dlq.send(dlqItem{
		msg:    m,
		code:   code,
		reason: reason,
		cancel: p.work.Done(),
		done: func(written bool) {
			if written {
				p.done(m, h)
			} else {
				p.tr.drop(m.Offset)
				h.release()
			}
		},
	})
}

func humanOffset(o int64) string {
	switch o {
	case kafka.FirstOffset:
		return "earliest"
	case kafka.LastOffset:
		return "latest"
	}
	return strconv.FormatInt(o, 10)
}
