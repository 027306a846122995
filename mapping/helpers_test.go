package mapping

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// kafkaTime is the Kafka record timestamp of the rule tests' records.
var kafkaTime = time.Date(2026, 11, 29, 10, 0, 5, 250_000_000, time.UTC)

func record(value string) Record {
	return Record{Topic: "produktly.interactions", Partition: 1, Offset: 7, Time: kafkaTime, Value: []byte(value)}
}

// good is a record that must map; props is the wanted properties object,
// written out in the order Call.Properties must have.
type good struct {
	name  string
	value string
	event string // "" to skip the check
	props string // "" to skip the check
}

// bad is a record that must fail with code, naming field.
type bad struct {
	name  string
	value string
	code  Code
	field string
}

// propsJSON writes c.Properties back as one object, in order.
func propsJSON(c Call) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, p := range c.Properties {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(appendString(nil, p.Name))
		b.WriteByte(':')
		b.Write(p.Value)
	}
	b.WriteByte('}')
	return b.String()
}

func runGood(t *testing.T, cases []good) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Map(record(tc.value))
			if err != nil {
				t.Fatalf("Map(%s)\n got error: %v\nwant a call", tc.value, err)
			}
			if tc.event != "" && c.Event != tc.event {
				t.Errorf("Map(%s)\n got event %q\nwant %q", tc.value, c.Event, tc.event)
			}
			if got := propsJSON(c); tc.props != "" && got != tc.props {
				t.Errorf("Map(%s)\n got properties %s\nwant %s", tc.value, got, tc.props)
			}
			if !strings.Contains(string(c.JSON), `"properties":`+propsJSON(c)+`,`) {
				t.Errorf("Call.Properties %s disagree with Call.JSON %s", propsJSON(c), c.JSON)
			}
		})
	}
}

func runBad(t *testing.T, cases []bad) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkBad(t, record(tc.value), tc.code, tc.field)
		})
	}
}

func checkBad(t *testing.T, r Record, code Code, field string) {
	t.Helper()
	checkBadWith(t, Map, r, code, field)
}

// checkBadWith is checkBad for either mode: mapFn is Map or MapAccount.
func checkBadWith(t *testing.T, mapFn func(Record) (Call, error), r Record, code Code, field string) {
	t.Helper()
	c, err := mapFn(r)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Map(%.200s)\n got call %s, error %v\nwant an *Error with code %s", r.Value, c.JSON, err, code)
	}
	if e.Code != code || e.Field != field {
		t.Errorf("Map(%.200s)\n got code %s, field %q (%v)\nwant code %s, field %q", r.Value, e.Code, e.Field, err, code, field)
	}
	if !errors.Is(err, &Error{Code: code}) {
		t.Errorf("errors.Is(%v, &Error{Code: %s}) = false, want true", err, code)
	}
	if c.JSON != nil || c.Properties != nil || c.MessageID != "" {
		t.Errorf("a failed Map returned a non-zero call: %+v", c)
	}
}
