package mapping_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/produktly/produktly-segment/mapping"
)

func ExampleMap() {
	// The Kafka record's facts: the mapping needs no other input.
	kafkaTime := time.Date(2026, 11, 29, 10, 0, 5, 250_000_000, time.UTC)
	call, err := mapping.Map(mapping.Record{
		Topic:     "produktly.interactions",
		Partition: 3,
		Offset:    1001,
		Time:      kafkaTime,
		Value:     []byte(`{"type":"TourStart","id":"int_42","userId":"user-8812","tourId":1842,"companyId":"acme-42","locale":null}`),
	})
	if err != nil {
		fmt.Println("dead-letter:", err)
		return
	}
	fmt.Println(call.Event, call.MessageID, call.Timestamp.Format(time.RFC3339Nano))
	for _, p := range call.Properties {
		fmt.Printf("%s=%s\n", p.Name, p.Value)
	}
	fmt.Printf("%s\n", call.JSON)

	// A record that breaks the contract: the consumer dead-letters it with
	// the code and the message as headers.
	_, err = mapping.Map(mapping.Record{Time: kafkaTime, Value: []byte(`{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":-1,"type":"next"}}`)})
	var e *mapping.Error
	if errors.As(err, &e) {
		fmt.Println(e.Code, "|", e.Field, "|", err)
	}
	// Output:
	// Tour Start 748b88cf-7cde-5d0b-a8d5-5edf6d822b06 2026-11-29T10:00:05.25Z
	// tour_id=1842
	// company_id="acme-42"
	// {"type":"track","messageId":"748b88cf-7cde-5d0b-a8d5-5edf6d822b06","userId":"user-8812","event":"Tour Start","timestamp":"2026-11-29T10:00:05.250Z","properties":{"tour_id":1842,"company_id":"acme-42"},"context":{"integration":{"name":"Produktly","version":"1.0.0"}}}
	// invalid_property | metadata.stepIndex | invalid_property: metadata.stepIndex: must be an integer ≥ 0, not -1
}
