package consumer

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/segmentio/kafka-go"
)

// Offsets are asked of the brokers, not of a running member: what an
// operator's tool, a benchmark or a test sees from outside the group.

// CommittedOffsets returns the offsets group has committed for partitions
// 0 to partitions-1 of topic, as the group coordinator holds them: the
// offset of the next record a new owner reads, -1 where the group has
// committed nothing. A group-level or partition-level error (for example
// COORDINATOR_LOAD_IN_PROGRESS on a fresh broker, which kafka.Error marks
// Temporary) is returned; retrying is the caller's choice.
func CommittedOffsets(ctx context.Context, client *kafka.Client, group, topic string, partitions int) (map[int]int64, error) {
	ps, err := committed(ctx, client, group, topic, partitions)
	if err != nil {
		return nil, err
	}
	out := make(map[int]int64, partitions)
	for _, p := range ps {
		out[p.Partition] = p.CommittedOffset
	}
	return out, nil
}

// CommittedAcked returns what group's commits for partitions 0 to
// partitions-1 of topic say, with the acknowledged spans above each
// committed offset (acked.go); a partition whose metadata carries none has
// no spans. Errors as CommittedOffsets, and for metadata that does not
// decode.
func CommittedAcked(ctx context.Context, client *kafka.Client, group, topic string, partitions int) (map[int]Acked, error) {
	ps, err := committed(ctx, client, group, topic, partitions)
	if err != nil {
		return nil, err
	}
	out := make(map[int]Acked, partitions)
	for _, p := range ps {
		a, err := ParseAcked(p.Metadata)
		switch {
		case errors.Is(err, ErrNoAcked):
			a = Acked{}
		case err != nil:
			return nil, fmt.Errorf("commit of group %q on %s/%d: %w", group, topic, p.Partition, err)
		}
		a.Commit = p.CommittedOffset
		out[p.Partition] = a
	}
	return out, nil
}

func committed(ctx context.Context, client *kafka.Client, group, topic string, partitions int) ([]kafka.OffsetFetchPartition, error) {
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %q: %w", group, err)
	}
	if res.Error != nil {
		return nil, fmt.Errorf("committed offsets of group %q: %w", group, res.Error)
	}
	out := res.Topics[topic]
	for _, p := range out {
		if p.Error != nil {
			return nil, fmt.Errorf("committed offset of group %q on %s/%d: %w", group, topic, p.Partition, p.Error)
		}
	}
	if len(out) != partitions {
		return nil, fmt.Errorf("committed offsets of group %q: %d partitions of %s answered, want %d", group, len(out), topic, partitions)
	}
	return out, nil
}

// EndOffsets returns the end offset (the high watermark: the offset the
// next record written gets) of partitions 0 to partitions-1 of topic. A
// partition that has no leader for a moment answers an error that
// kafka.Error marks Temporary.
func EndOffsets(ctx context.Context, client *kafka.Client, topic string, partitions int) (map[int]int64, error) {
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for p := 0; p < partitions; p++ {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p))
	}
	res, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	out := make(map[int]int64, partitions)
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("end offset of %s/%d: %w", topic, po.Partition, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	if len(out) != partitions {
		return nil, fmt.Errorf("end offsets of %s: %d partitions answered, want %d", topic, len(out), partitions)
	}
	return out, nil
}

// CaughtUp reports whether group has committed every partition of topic
// to its end offset: at the moment of asking, every record written so far
// was delivered or dead-lettered and nothing would be read again. An empty
// partition counts as caught up whether or not the group committed it.
func CaughtUp(ctx context.Context, client *kafka.Client, group, topic string, partitions int) (bool, error) {
	ends, err := EndOffsets(ctx, client, topic, partitions)
	if err != nil {
		return false, err
	}
	committed, err := CommittedOffsets(ctx, client, group, topic, partitions)
	if err != nil {
		return false, err
	}
	for p, end := range ends {
		if end == 0 && committed[p] < 0 {
			committed[p] = 0
		}
	}
	return maps.Equal(committed, ends), nil
}
