package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// runCeilingChild is the ceiling: a plain kafka-go consumer group member
// that fetches every record and commits it (committed every second, as a
// consumer without mapping or delivery would), until SIGTERM.
func runCeilingChild(args []string, stdout, stderr io.Writer) int {
	c, ok := parseChild("ceiling", args)
	if !ok {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           c.brokers,
		GroupID:           c.group,
		Topic:             c.topic,
		StartOffset:       kafka.FirstOffset,
		MinBytes:          1,
		MaxBytes:          1 << 20,
		MaxWait:           250 * time.Millisecond,
		QueueCapacity:     256,
		CommitInterval:    time.Second,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
	})
	n := 0
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				fmt.Fprintf(stderr, "ceiling: fetch: %v\n", err)
			}
			break
		}
		n++
		if err := r.CommitMessages(ctx, m); err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(stderr, "ceiling: commit: %v\n", err)
		}
	}
	if err := r.Close(); err != nil {
		fmt.Fprintf(stderr, "ceiling: close: %v\n", err)
	}
	fmt.Fprintf(stdout, "ceiling read %d records\n", n)
	return 0
}
