package integrations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Publisher writes integrations to the integrations topic, for the
// operator's command (Produktly's app writes the topic itself).
//
// Records are keyed by account id and partitioned with the murmur2 hash of
// Kafka's Java client, so an account's records land in the partition any
// Java-compatible producer puts them in and compaction keeps the last one.
type Publisher struct {
	o TopicOptions
	w *kafka.Writer
}

// ErrUnknownAccount is returned by Deactivate for an account without an
// integration on the topic.
var ErrUnknownAccount = errors.New("no integration for this account")

// NewPublisher returns a publisher of o.Topic. Close it when done.
func NewPublisher(o TopicOptions) (*Publisher, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.defaults()
	w := &kafka.Writer{
		Addr: kafka.TCP(o.Brokers...), Topic: o.Topic, Transport: o.Transport,
		Balancer: kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll,
		BatchSize: 1, AllowAutoTopicCreation: false,
	}
	return &Publisher{o: o, w: w}, nil
}

// Close releases the writer.
func (p *Publisher) Close() error { return p.w.Close() }

// Put writes the account's integration; it returns once all in-sync
// replicas have it. The write key must not be empty.
func (p *Publisher) Put(ctx context.Context, account string, it Integration) error {
	if err := checkAccount(account); err != nil {
		return err
	}
	if it.WriteKey.IsZero() {
		return &InvalidError{Account: account, Problem: "writeKey is empty"}
	}
	if _, err := ParseRegion(string(it.Region)); err != nil {
		return &InvalidError{Account: account, Problem: err.Error()}
	}
	return p.write(ctx, account, it.appendJSON(nil, it.WriteKey.Reveal()))
}

// Deactivate sets "active": false on the account's current integration,
// keeping its other members (its key among them). An account that has no
// integration on the topic is ErrUnknownAccount.
func (p *Publisher) Deactivate(ctx context.Context, account string) error {
	if err := checkAccount(account); err != nil {
		return err
	}
	var cur []byte
	err := p.readAll(ctx, func(m kafka.Message) {
		if string(m.Key) == account {
			cur = m.Value // nil for a tombstone
		}
	})
	if err != nil {
		return err
	}
	if cur == nil {
		return fmt.Errorf("account %s: %w", quoteAccount(account), ErrUnknownAccount)
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(cur, &members) != nil || members == nil {
		members = map[string]json.RawMessage{}
	}
	members["active"] = json.RawMessage("false")
	v, err := json.Marshal(members)
	if err != nil {
		return err
	}
	return p.write(ctx, account, v)
}

// Entry is one account of List: everything but the key.
type Entry struct {
	Account string
	Region  Region // "" for an invalid integration
	Active  bool
	State   State
	Problem string // why the integration is invalid, "" when it is not
}

// List reads the topic up to its end offsets and returns every account
// that has an integration, sorted by account id. It never returns a key.
func (p *Publisher) List(ctx context.Context) ([]Entry, error) {
	byAccount := map[string]Entry{}
	err := p.readAll(ctx, func(m kafka.Message) {
		account := string(m.Key)
		if m.Value == nil {
			delete(byAccount, account)
			return
		}
		it, err := Parse(account, m.Value)
		e := Entry{Account: account, Region: it.Region, Active: it.Active, State: it.state()}
		var ie *InvalidError
		if errors.As(err, &ie) {
			e.Problem = ie.Problem
		}
		byAccount[account] = e
	})
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(byAccount))
	for _, e := range byAccount {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Account, b.Account) })
	return out, nil
}

func (p *Publisher) write(ctx context.Context, account string, value []byte) error {
	if err := p.w.WriteMessages(ctx, kafka.Message{Key: []byte(account), Value: value}); err != nil {
		return &TopicError{Topic: p.o.Topic, Err: err}
	}
	return nil
}

// readAll calls fn for every record of the topic up to the end offsets it
// has now, in one goroutine.
func (p *Publisher) readAll(ctx context.Context, fn func(kafka.Message)) error {
	client := p.o.client()
	bounds, err := partitionBounds(ctx, client, p.o.Topic)
	// A leader election (a new topic, a broker restart) passes: retry
	// what Kafka calls temporary for a few seconds.
	for try := 0; err != nil && isTemporary(err) && try < 20; try++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		bounds, err = partitionBounds(ctx, client, p.o.Topic)
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := &funcHandler{fn: fn, done: cancel}
	err = follow(ctx, &p.o, client, bounds, h)
	if h.caught {
		return nil
	}
	if err == nil || errors.Is(err, context.Canceled) {
		err = ctx.Err()
	}
	return &TopicError{Topic: p.o.Topic, Err: err}
}

type funcHandler struct {
	fn     func(kafka.Message)
	done   func()
	caught bool
}

func (h *funcHandler) record(m kafka.Message) {
	if !h.caught {
		h.fn(m)
	}
}
func (h *funcHandler) caughtUp() { h.caught = true; h.done() }
func (h *funcHandler) publish()  {}

// isTemporary reports a Kafka error worth retrying; a missing topic is not
// (Kafka calls it retriable, but an operator wants to hear of it at once).
func isTemporary(err error) bool {
	var ke kafka.Error
	return errors.As(err, &ke) && ke.Temporary() && ke != kafka.UnknownTopicOrPartition
}

func checkAccount(account string) error {
	if account == "" || strings.TrimSpace(account) != account {
		return &InvalidError{Account: account, Problem: "the account id must be non-empty, without surrounding blanks"}
	}
	return nil
}
