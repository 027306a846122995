package sink_test

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
