package sink_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/produktly/produktly-segment/sink"
	"github.com/produktly/produktly-segment/sink/segmenttest"
)

// A consumer hands each encoded call to the sink and commits its offset
// only when Done reports Delivered (or, after dead-lettering, Rejected).
func Example() {
	srv := segmenttest.NewServer("wk_example")
	defer srv.Close()
	srv.RejectMessages(func(m segmenttest.Received) bool { return m.MessageID == "bad" })

	s, err := sink.NewSegment(sink.Options{Endpoint: srv.URL(), WriteKey: "wk_example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	var run sync.WaitGroup
	run.Go(func() { _ = s.Run(ctx) })

	results := make(chan sink.Result, 2)
	for _, id := range []string{"good", "bad"} {
		err := s.Enqueue(ctx, sink.Message{
			ID:   id,
			JSON: fmt.Appendf(nil, `{"type":"track","event":"Tour Start","messageId":%q,"userId":"u1"}`, id),
			Done: func(r sink.Result) { results <- r },
		})
		if err != nil {
			fmt.Println(err)
		}
	}
	for range 2 {
		r := <-results
		var rej *sink.RejectedError
		switch {
		case r.Outcome == sink.Delivered:
			fmt.Println("delivered: commit")
		case errors.As(r.Err, &rej):
			fmt.Println("rejected with status", rej.Status, ": dead-letter, then commit")
		default:
			fmt.Println("abandoned: do not commit:", r.Err)
		}
	}
	cancel()
	run.Wait()
	fmt.Println("segment kept", srv.Distinct())
	// Unordered output:
	// delivered: commit
	// rejected with status 400 : dead-letter, then commit
	// segment kept 1
}

// In accounts mode every message names its destination: the account's
// write key and its region's endpoint. A failing account is listed by
// Status (without its key) while the others are delivered.
func Example_accounts() {
	us := segmenttest.NewServer("wk_acme", segmenttest.WithWriteKeys("wk_globex"))
	defer us.Close()
	eu := segmenttest.NewServer("wk_initech")
	defer eu.Close()
	us.FailKey("wk_globex", 503, 0)

	s, err := sink.NewSegment(sink.Options{Accounts: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	var run sync.WaitGroup
	run.Go(func() { _ = s.Run(ctx) })

	dests := []sink.Destination{
		{Account: "acme", WriteKey: "wk_acme", Endpoint: us.URL()},
		{Account: "initech", WriteKey: "wk_initech", Endpoint: eu.URL()},
		{Account: "globex", WriteKey: "wk_globex", Endpoint: us.URL()},
	}
	results := make(chan string, len(dests))
	for _, d := range dests {
		err := s.Enqueue(ctx, sink.Message{
			ID:          d.Account,
			JSON:        fmt.Appendf(nil, `{"type":"track","event":"Tour Start","messageId":%q,"userId":"u1"}`, d.Account),
			Destination: d,
			Done:        func(r sink.Result) { results <- d.Account + ": " + r.Outcome.String() },
		})
		if err != nil {
			fmt.Println(err)
		}
	}
	fmt.Println(<-results)
	fmt.Println(<-results)
	for len(s.Status()) == 0 {
		time.Sleep(time.Millisecond)
	}
	for _, st := range s.Status() {
		fmt.Println(st.Account, st.State)
	}
	cancel()
	run.Wait()
	fmt.Println(<-results)
	fmt.Println("US got", us.Count(), "EU got", eu.Count())
	// Unordered output:
	// acme: delivered
	// initech: delivered
	// globex failing
	// globex: abandoned
	// US got 1 EU got 1
}
