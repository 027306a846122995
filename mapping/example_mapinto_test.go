package mapping_test

import (
	"fmt"
	"time"

	"github.com/produktly/produktly-segment/mapping"
)

func ExampleMapInto() {
	kafkaTime := time.Date(2026, 11, 29, 10, 0, 5, 250_000_000, time.UTC)
	values := []string{
		`{"type":"tour_start","id":"int_1","userId":"user-1","tourId":7}`,
		`{"type":"tour_finish","id":"int_2","userId":"user-1","tourId":7}`,
	}
	// Both calls land in one buffer; each Call.JSON is its own part of it.
	buf := make([]byte, 0, 4096)
	var calls []mapping.Call
	for i, v := range values {
		var call mapping.Call
		var err error
		buf, call, err = mapping.MapInto(buf, mapping.Record{Topic: "produktly.interactions", Offset: int64(i), Time: kafkaTime, Value: []byte(v)})
		if err != nil {
			fmt.Println("dead-letter:", err)
			continue
		}
		calls = append(calls, call)
	}
	for _, c := range calls {
		fmt.Printf("%s %d bytes, properties built: %v\n", c.Event, len(c.JSON), c.Properties != nil)
	}
	fmt.Println(len(buf))
	// Output:
	// Tour Start 237 bytes, properties built: false
	// Tour Finish 238 bytes, properties built: false
	// 475
}

func ExampleMapOnto() {
	values := []string{
		`{"type":"tour_start","id":"int_1","userId":"user-1","tourId":7}`,
		`{"type":"tour_finish","id":"int_2","userId":"user-1","tourId":7}`,
	}
	// Both calls and their strings land in one arena, which is never
	// cut back or written to while the calls live.
	kafkaTime := time.Date(2026, 11, 29, 10, 0, 5, 250_000_000, time.UTC)
	arena := make([]byte, 0, 4096)
	for i, v := range values {
		var call mapping.Call
		var err error
		arena, call, err = mapping.MapOnto(arena, mapping.Record{Topic: "produktly.interactions", Offset: int64(i), Time: kafkaTime, Value: []byte(v)})
		if err != nil {
			fmt.Println("dead-letter:", err)
			continue
		}
		fmt.Printf("%s %d bytes, messageId %s\n", call.Event, len(call.JSON), call.MessageID)
	}
	// 475 bytes of JSON, and behind each call its messageId and userId.
	fmt.Println(len(arena), cap(arena))
	// Output:
	// Tour Start 237 bytes, messageId 854e9080-8f3a-50f0-ae29-5e7f353c4bbc
	// Tour Finish 238 bytes, messageId a5119118-c06c-5799-9be4-cb7d5e2c8611
	// 559 4096
}
