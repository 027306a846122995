package consumer

import (
	"testing"
	"time"
)

func TestConsumerDeliversAndCommits(t *testing.T) {
	tc := newTestConsumer(t, 2, nil)
	tc.topic.produce(0, 30)
	tc.topic.produce(1, 20)
	stop := tc.run(t)
	tc.fc.start(t, 1, 0, 1)
	tc.fc.waitCommitted(t, 0, 30, 10*time.Second)
	tc.fc.waitCommitted(t, 1, 20, 10*time.Second)
	stop()
	tc.sink.mu.Lock()
	defer tc.sink.mu.Unlock()
	if len(tc.sink.got) != 50 {
		t.Errorf("sink got %d messages, want 50", len(tc.sink.got))
	}
	for id, n := range tc.sink.byID {
		if n != 1 {
			t.Errorf("message %s enqueued %d times, want 1", id, n)
		}
	}
}
