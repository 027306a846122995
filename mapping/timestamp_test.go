package mapping

import (
	"strings"
	"testing"
	"time"

	"github.com/produktly/produktly-segment/timestamp"
)

// TestCanonicalTimestampCopy: a timestamp text that is already written as
// the message writes it is copied, every other form is formatted; both
// give timestamp.Append's text of the call's time.
func TestCanonicalTimestampCopy(t *testing.T) {
	for _, ts := range []string{
		"2026-11-29T10:00:07.890Z", // copied
		"2026-11-29T10:00:07.890z", "2026-11-29t10:00:07.890Z", "2026-11-29T10:00:07.89Z",
		"2026-11-29T10:00:07.8901Z", "2026-11-29T10:00:07Z", "2026-11-29T11:00:07.890+01:00",
		"0001-01-01T00:00:00.001Z", "9999-12-31T23:59:59.999Z", "2024-02-29T23:59:59.000Z",
		`2026-11-29T10:00:07.890\u005a`,
	} {
		r := Record{Topic: "t", Time: time.UnixMilli(1), Value: []byte(`{"type":"tour_start","userId":"u","tourId":1,"timestamp":"` + ts + `"}`)}
		c, err := Map(r)
		if err != nil {
			t.Fatalf("%s: %v", ts, err)
		}
		want := `"timestamp":"` + string(timestamp.Append(nil, c.Timestamp)) + `"`
		if !strings.Contains(string(c.JSON), want) {
			t.Errorf("%s: %s lacks %s", ts, c.JSON, want)
		}
		p := pair{val: []byte(`"` + ts + `"`), kind: kindString}
		if strings.Contains(ts, `\`) {
			p.flags = flagEscaped
		}
		if got := canonicalTimestamp(&p); (got != nil) != (ts == "2026-11-29T10:00:07.890Z" || ts == "0001-01-01T00:00:00.001Z" ||
			ts == "9999-12-31T23:59:59.999Z" || ts == "2024-02-29T23:59:59.000Z") {
			t.Errorf("canonicalTimestamp(%s) = %q", ts, got)
		}
	}
}
