package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// ReplayOptions selects dead-lettered records to re-produce.
type ReplayOptions struct {
	// Brokers are the bootstrap addresses. Required.
	Brokers []string
	// Transport carries TLS and SASL settings. Default kafka.DefaultTransport.
	Transport kafka.RoundTripper
	// Dialer carries the same settings for the readers. Default kafka.DefaultDialer.
	Dialer *kafka.Dialer
	// DeadLetterTopic is read from its first offset to the end offsets
	// at the start of the replay. Required.
	DeadLetterTopic string
	// Topic is where records go. Default: each record's
	// produktly-source-topic header.
	Topic string
	// Codes keeps only records with these error codes. Default: all.
	Codes []string
	// Since and Until keep only records whose timestamp (the original
	// record's) is in [Since, Until). Zero means unbounded.
	Since, Until time.Time
	// DryRun counts what would be replayed and writes nothing.
	DryRun bool
}

// ReplayStats counts what a replay did.
type ReplayStats struct {
	Scanned  int // records read from the dead-letter topic
	Matched  int // records that passed the filters
	Replayed int // records written (0 on a dry run)
	// Incomplete counts matched dead letters written without their value
	// (HeaderOmitted); they cannot be replayed and are skipped. The whole
	// record is on the source topic at its source coordinates, until
	// retention removes it.
	Incomplete int
	ByCode     map[string]int // matched records by error code
}

// Replay re-produces dead-lettered records to their source topic with their
// original key, value, timestamp and headers (the dead-letter headers
// removed, HeaderReplayedFrom added), each write acknowledged by all in-sync
// replicas. It reads up to the end offsets seen at its start, so it ends
// even while records keep arriving.
//
// Per-key order: a record goes back to the partition its source headers
// name, where the other records of its key are; where that partition does
// not exist (or Topic names another topic) it goes to murmur2 of its key,
// the partition a Java producer would choose. The dead-letter topic keeps
// the records of one key in one partition, in order, and Replay writes
// them in that order. A write that fails ends the replay with an error;
// running it again is safe (the messageId does not change).
func Replay(ctx context.Context, o ReplayOptions) (ReplayStats, error) {
	st := ReplayStats{ByCode: map[string]int{}}
	if len(o.Brokers) == 0 || o.DeadLetterTopic == "" {
		return st, errors.New("replay: brokers and dead-letter topic are required")
	}
	if o.Transport == nil {
		o.Transport = kafka.DefaultTransport
	}
	if o.Dialer == nil {
		o.Dialer = kafka.DefaultDialer
	}
	client := &kafka.Client{Addr: kafka.TCP(o.Brokers...), Transport: o.Transport, Timeout: 30 * time.Second}
	bounds, err := partitionBounds(ctx, client, o.DeadLetterTopic)
	if err != nil {
		return st, err
	}
	w := newTopicWriter(writerConfig{Brokers: o.Brokers, Transport: o.Transport, Pin: true})
	defer w.Close()
	write := func(msgs []kafka.Message) error {
		for i, err := range w.write(ctx, msgs) {
			if err != nil {
				return fmt.Errorf("replay: write %s: %w", msgs[i].Topic, err)
			}
		}
		st.Replayed += len(msgs)
		return nil
	}
	codes := map[string]bool{}
	for _, c := range o.Codes {
		codes[c] = true
	}
	for p, b := range bounds {
		if b[0] >= b[1] {
			continue
		}
		var out []kafka.Message
		err := readRange(ctx, o, p, b[0], b[1], func(m kafka.Message) error {
			st.Scanned++
			re, code, ok := replayOf(m, o.Topic)
			if !ok || (len(codes) > 0 && !codes[code]) ||
				(!o.Since.IsZero() && m.Time.Before(o.Since)) || (!o.Until.IsZero() && !m.Time.Before(o.Until)) {
				return nil
			}
			st.Matched++
			st.ByCode[code]++
			if _, ok := headerValue(m, HeaderOmitted); ok {
				st.Incomplete++
				return nil
			}
			if !o.DryRun {
				out = append(out, re)
			}
			if len(out) >= 500 {
				if err := write(out); err != nil {
					return err
				}
				out = out[:0]
			}
			return nil
		})
		if err != nil {
			return st, err
		}
		if len(out) > 0 {
			if err := write(out); err != nil {
				return st, err
			}
		}
	}
	return st, nil
}

// partitionBounds returns [first, end) offsets per partition of topic.
func partitionBounds(ctx context.Context, client *kafka.Client, topic string) (map[int][2]int64, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("replay: metadata: %w", err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return nil, fmt.Errorf("replay: topic %q: %v", topic, md.Topics[0].Error)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range md.Topics[0].Partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	res, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("replay: list offsets: %w", err)
	}
	out := map[int][2]int64{}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("replay: offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		out[po.Partition] = [2]int64{po.FirstOffset, po.LastOffset}
	}
	return out, nil
}

// readRange calls fn for every record of partition p in [from, to).
func readRange(ctx context.Context, o ReplayOptions, p int, from, to int64, fn func(kafka.Message) error) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: o.Brokers, Dialer: o.Dialer, Topic: o.DeadLetterTopic, Partition: p,
		MaxBytes: 4 << 20, MaxWait: 250 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return err
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return fmt.Errorf("replay: read %s/%d: %w", o.DeadLetterTopic, p, err)
		}
		if err := fn(m); err != nil {
			return err
		}
		if m.Offset+1 >= to {
			return nil
		}
	}
}

// replayOf turns a dead-letter record back into its original: same key,
// value, timestamp and headers, without the headers this service added.
// Its Partition is the source partition when it goes back to its source
// topic, else -1 (murmur2 of the key).
func replayOf(m kafka.Message, topic string) (kafka.Message, string, bool) {
	var code, srcTopic, srcPart, srcOffset string
	headers := make([]kafka.Header, 0, len(m.Headers))
	for _, h := range m.Headers {
		switch h.Key {
		case HeaderErrorCode:
			code = string(h.Value)
		case HeaderSourceTopic:
			srcTopic = string(h.Value)
		case HeaderSourcePartition:
			srcPart = string(h.Value)
		case HeaderSourceOffset:
			srcOffset = string(h.Value)
		default:
			if !ownHeader(h.Key) {
				headers = append(headers, h)
			}
		}
	}
	if code == "" || srcTopic == "" {
		return kafka.Message{}, "", false // not written by this service
	}
	partition := -1
	if topic == "" || topic == srcTopic {
		topic = srcTopic
		if p, err := strconv.Atoi(srcPart); err == nil && p >= 0 {
			partition = p
		}
	}
	from := srcTopic + "/" + srcPart + "/" + srcOffset
	for _, h := range m.Headers {
		if h.Key == HeaderReplayedFrom {
			from = string(h.Value) // keep the first origin across repeated replays
		}
	}
	headers = append(headers, kafka.Header{Key: HeaderReplayedFrom, Value: []byte(from)})
	return kafka.Message{Topic: topic, Partition: partition, Key: m.Key, Value: m.Value, Headers: headers, Time: m.Time}, code, true
}

// replayOrigin returns the original coordinates of a replayed record.
func replayOrigin(m kafka.Message) (topic string, partition int, offset int64, ok bool) {
	for _, h := range m.Headers {
		if h.Key != HeaderReplayedFrom {
			continue
		}
		parts := strings.Split(string(h.Value), "/")
		if len(parts) < 3 {
			return "", 0, 0, false
		}
		n := len(parts)
		p, err1 := strconv.Atoi(parts[n-2])
		o, err2 := strconv.ParseInt(parts[n-1], 10, 64)
		if err1 != nil || err2 != nil {
			return "", 0, 0, false
		}
		return strings.Join(parts[:n-2], "/"), p, o, true
	}
	return "", 0, 0, false
}

func headerValue(m kafka.Message, key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}
