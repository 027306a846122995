package integrations

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPublisher(t *testing.T) {
	bs := brokers(t)
	topic := createTopic(t, bs, 3)
	p, err := NewPublisher(TopicOptions{Brokers: bs, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := t.Context()

	if got, err := p.List(ctx); err != nil || len(got) != 0 {
		t.Fatalf("List of an empty topic: %v, %v", got, err)
	}
	for _, put := range []struct {
		account, key string
		region       Region
	}{{"acct-1", "wk-p-1", RegionUS}, {"acct-2", "wk-p-2", RegionEU}, {"acct-3", "wk-p-3", RegionUS}, {"acct-1", "wk-p-1b", RegionEU}} {
		if err := p.Put(ctx, put.account, Integration{WriteKey: NewWriteKey(put.key), Region: put.region, Active: true}); err != nil {
			t.Fatalf("Put %s: %v", put.account, err)
		}
	}
	produce(t, bs, topic, rec("acct-bad", `{"writeKey":"wk-p-bad","region":"ap"}`), rec("acct-gone", integ("wk-gone", "us", true)), rec("acct-gone", ""))
	if err := p.Deactivate(ctx, "acct-3"); err != nil {
		t.Fatalf("Deactivate: %v", err)
	}
	err = p.Deactivate(ctx, "acct-gone")
	if !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("Deactivate of a removed account: got %v, want ErrUnknownAccount", err)
	}
	if err := p.Deactivate(ctx, "nobody"); !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("Deactivate of an unknown account: got %v, want ErrUnknownAccount", err)
	}
	var ie *InvalidError
	if err := p.Put(ctx, "acct-4", Integration{Region: RegionUS}); !errors.As(err, &ie) {
		t.Errorf("Put without a key: got %v, want an *InvalidError", err)
	}
	if err := p.Put(ctx, "", Integration{WriteKey: NewWriteKey("k"), Region: RegionUS}); !errors.As(err, &ie) {
		t.Errorf("Put without an account: got %v, want an *InvalidError", err)
	}

	got, err := p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range got {
		lines = append(lines, fmt.Sprintf("%s %s %v %s %s", e.Account, e.Region, e.Active, e.State, e.Problem))
	}
	want := []string{
		"acct-1 eu true active ",
		"acct-2 eu true active ",
		"acct-3 us false inactive ",
		`acct-bad  false invalid region must be "us" or "eu"`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("List:\n got %q\nwant %q", lines, want)
	}
	noSecrets(t, []string{"wk-p-1", "wk-p-2", "wk-p-3", "wk-p-bad"}, fmt.Sprintf("%v %+v %#v", got, got, got))

	// What the service reads agrees, and deactivate kept acct-3's key.
	tb, err := NewTopic(TopicOptions{Brokers: bs, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	runTable(t, tb)
	waitFor(t, 30*time.Second, "loaded", tb.Ready)
	if it, ok := tb.Lookup("acct-3"); ok || it.WriteKey.Reveal() != "wk-p-3" {
		t.Errorf("acct-3 after Deactivate: key %q, ok %v; want its key kept, inactive", it.WriteKey.Reveal(), ok)
	}
	if it, ok := tb.Lookup("acct-1"); !ok || it.WriteKey.Reveal() != "wk-p-1b" || it.Region != RegionEU {
		t.Errorf("acct-1: %s %s %v", it.WriteKey.Reveal(), it.Region, ok)
	}
}
