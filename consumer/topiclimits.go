package consumer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/produktly/produktly-segment/backoff"
)

// copyHeadroom is how many bytes more than the source topic a topic that
// receives copies of its records (dead-letter, retry) must accept: room
// for the headers this service adds (the longest is the error message,
// capped at maxReasonBytes) and their framing.
const copyHeadroom = 2 << 10

// errLimitUnknown: DescribeConfigs gave no max.message.bytes.
var errLimitUnknown = errors.New("max.message.bytes not reported")

// topicLimit is the largest record batch topic accepts: its
// max.message.bytes, or the broker's message.max.bytes when the topic
// sets none.
func topicLimit(ctx context.Context, client *kafka.Client, topic string) (int, error) {
	res, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"max.message.bytes"},
	}}})
	if err != nil {
		return 0, fmt.Errorf("describe configs of %q: %w", topic, err)
	}
	for _, r := range res.Resources {
		if r.Error != nil {
			return 0, fmt.Errorf("describe configs of %q: %w", topic, r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "max.message.bytes" && e.ConfigValue != "" {
				return parseLimit(topic, e.ConfigValue)
			}
		}
	}
	return brokerLimit(ctx, client, topic)
}

func brokerLimit(ctx context.Context, client *kafka.Client, topic string) (int, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil || len(md.Brokers) == 0 {
		return 0, fmt.Errorf("%q: %w, and no broker to ask: %v", topic, errLimitUnknown, err)
	}
	b := md.Brokers[0]
	res, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{
		Addr: kafka.TCP(net.JoinHostPort(b.Host, strconv.Itoa(b.Port))),
		Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeBroker, ResourceName: strconv.Itoa(b.ID), ConfigNames: []string{"message.max.bytes"},
		}},
	})
	if err != nil {
		return 0, fmt.Errorf("describe configs of broker %d: %w", b.ID, err)
	}
	for _, r := range res.Resources {
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "message.max.bytes" && e.ConfigValue != "" {
				return parseLimit(topic, e.ConfigValue)
			}
		}
	}
	return 0, fmt.Errorf("%q: %w by the topic or broker %d", topic, errLimitUnknown, b.ID)
}

func parseLimit(topic, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q: max.message.bytes %q is not a size", topic, v)
	}
	return n, nil
}

// limitCheck is the start-up check that a topic receiving copies of the
// source topic's records accepts records as large as the source does,
// plus copyHeadroom.
//
// A shortfall is reported, not enforced: it is logged at error level and
// produktly_segment_topic_size_shortfall_bytes{topic} turns positive
// (alerted on), but readiness is unaffected. Refusing readiness would stop
// all delivery for a condition that concerns only records within a few KB
// of the limit, and the writers handle those records anyway (the
// dead-letter writer writes them without their value; the retry writer
// leaves them with the caller); the alert asks the operator to raise the
// topic's max.message.bytes.
type limitCheck struct {
	brokers   []string
	transport kafka.RoundTripper
	source    string
	target    string
	log       zerolog.Logger
	metrics   *metrics
}

// run checks once Kafka answers, retrying with backoff until it does or
// ctx ends.
func (lc limitCheck) run(ctx context.Context) {
	client := &kafka.Client{Addr: kafka.TCP(lc.brokers...), Transport: lc.transport, Timeout: 10 * time.Second}
	retry := backoff.Policy{Base: time.Second, Max: time.Minute, Jitter: 0.5}
	for attempt := 0; ; attempt++ {
		err := lc.check(ctx, client)
		if err == nil {
			return
		}
		lc.log.Warn().Err(err).Str("target_topic", lc.target).Msg("cannot check the topic's size limit yet")
		if backoff.Sleep(ctx, retry.Delay(attempt)) != nil {
			return
		}
	}
}

func (lc limitCheck) check(ctx context.Context, client *kafka.Client) error {
	src, err := topicLimit(ctx, client, lc.source)
	if err != nil {
		return err
	}
	dst, err := topicLimit(ctx, client, lc.target)
	if err != nil {
		return err
	}
	need := src + copyHeadroom
	short := max(need-dst, 0)
	lc.metrics.sizeShortfall.WithLabelValues(lc.target).Set(float64(short))
	if short > 0 {
		lc.log.Error().Str("source_topic", lc.source).Int("source_max_message_bytes", src).
			Str("target_topic", lc.target).Int("target_max_message_bytes", dst).Int("want_at_least", need).
			Msgf("topic %q accepts smaller records than copies of %q's largest need: set its max.message.bytes to at least %d", lc.target, lc.source, need)
	} else {
		lc.log.Info().Str("target_topic", lc.target).Int("max_message_bytes", dst).Int("source_max_message_bytes", src).
			Msg("topic size limit checked")
	}
	return nil
}
