package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/segmentio/kafka-go"
)

// TestPartitionBalancerMatchesJava checks murmur2 partitioning against
// values computed with the Java client itself (kafka-clients 4.1.2:
// Utils.toPositive(Utils.murmur2(key)) % partitions), so a replayed or
// parked record lands where a Java producer puts the other records of its
// key.
func TestPartitionBalancerMatchesJava(t *testing.T) {
	parts := func(n int) []int {
		p := make([]int, n)
		for i := range p {
			p[i] = i
		}
		return p
	}
	for _, tc := range []struct {
		key    string
		p3, p7 int
	}{
		{"user-0", 1, 5}, {"user-1", 2, 3}, {"user-42", 1, 1}, {"k", 2, 1}, {"produktly", 1, 4},
		{"a-little-bit-long-string", 2, 1}, {"", 0, 2}, {"acct-1234567/user-99", 2, 4},
	} {
		for _, b := range []*partitionBalancer{{}, {pin: true}} {
			m := kafka.Message{Key: []byte(tc.key), Partition: -1}
			if got := b.Balance(m, parts(3)...); got != tc.p3 {
				t.Errorf("pin %v: key %q over 3 partitions: %d, Java gives %d", b.pin, tc.key, got, tc.p3)
			}
			if got := b.Balance(m, parts(7)...); got != tc.p7 {
				t.Errorf("pin %v: key %q over 7 partitions: %d, Java gives %d", b.pin, tc.key, got, tc.p7)
			}
		}
	}
}

func TestPartitionBalancerPinsWhereThePartitionExists(t *testing.T) {
	b := &partitionBalancer{pin: true}
	m := kafka.Message{Key: []byte("user-0"), Partition: 2}
	if got := b.Balance(m, 0, 1, 2); got != 2 {
		t.Errorf("pinned to existing partition 2: got %d", got)
	}
	m.Partition = 5 // the topic has fewer partitions now
	if got := b.Balance(m, 0, 1, 2); got != 1 {
		t.Errorf("pinned to missing partition 5: got %d, want murmur2's 1", got)
	}
	if got := (&partitionBalancer{}).Balance(kafka.Message{Key: []byte("user-0"), Partition: 2}, 0, 1, 2); got != 1 {
		t.Errorf("unpinned: got %d, want murmur2's 1 whatever the message names", got)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want writeClass
	}{
		{kafka.MessageSizeTooLarge, classTooLarge},
		{fmt.Errorf("wrapped: %w", kafka.MessageSizeTooLarge), classTooLarge},
		{kafka.RecordListTooLarge, classTooLarge},
		{kafka.MessageTooLargeError{}, classTooLarge},
		{ErrRecordTooLarge, classTooLarge},
		{kafka.TopicAuthorizationFailed, classRefused},
		{kafka.ClusterAuthorizationFailed, classRefused},
		{kafka.SASLAuthenticationFailed, classRefused},
		{kafka.InvalidRecord, classRefused},
		{kafka.NotLeaderForPartition, classTransient},
		{kafka.LeaderNotAvailable, classTransient},
		{kafka.RequestTimedOut, classTransient},
		{kafka.NotEnoughReplicas, classTransient},
		{kafka.UnknownTopicOrPartition, classTransient},
		{io.ErrUnexpectedEOF, classTransient},
		{syscall.ECONNREFUSED, classTransient},
		{context.DeadlineExceeded, classTransient},
		{errors.New("something new"), classTransient},
		{&writeError{class: classRefused, err: errors.New("x")}, classRefused},
	} {
		if got := classOf(tc.err); got != tc.want {
			t.Errorf("classOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
