package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// runFranzChild is the second reference: a bare franz-go consumer group
// member that polls every record, marks it processed and lets the client
// commit the marks every second (as the kafka-go ceiling commits every
// second), until SIGTERM. No mapping, no Segment.
func runFranzChild(args []string, stdout, stderr io.Writer) int {
	c, ok := parseChild("franz", args)
	if !ok {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.brokers...),
		kgo.ConsumerGroup(c.group),
		kgo.ConsumeTopics(c.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(time.Second),
	)
	if err != nil {
		fmt.Fprintf(stderr, "franz: %v\n", err)
		return 1
	}
	n := 0
	for ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		fetches.EachError(func(t string, p int32, err error) {
			if ctx.Err() == nil {
				fmt.Fprintf(stderr, "franz: fetch %s/%d: %v\n", t, p, err)
			}
		})
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			n += len(p.Records)
			cl.MarkCommitRecords(p.Records...)
		})
	}
	// Close commits the marks once more before leaving the group.
	cl.Close()
	fmt.Fprintf(stdout, "franz read %d records\n", n)
	return 0
}
