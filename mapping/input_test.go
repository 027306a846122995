package mapping

import (
	"strings"
	"testing"
)

var invalidJSONCases = []bad{
	{"empty value", ``, CodeInvalidJSON, ""},
	{"only whitespace", " \n\t ", CodeInvalidJSON, ""},
	{"array", `[{"type":"tour_start"}]`, CodeInvalidJSON, ""},
	{"number", `42`, CodeInvalidJSON, ""},
	{"string", `"tour_start"`, CodeInvalidJSON, ""},
	{"null", `null`, CodeInvalidJSON, ""},
	{"boolean", `true`, CodeInvalidJSON, ""},
	{"not JSON", `type=tour_start`, CodeInvalidJSON, ""},
	{"byte order mark", "\xef\xbb\xbf" + `{"type":"tour_start","userId":"u","tourId":1}`, CodeInvalidJSON, ""},
	{"invalid UTF-8 in a value", `{"type":"tour_start","userId":"u","tourId":1,"name":"` + "\xff" + `"}`, CodeInvalidJSON, "name"},
	{"invalid UTF-8 in a key", `{"type":"tour_start","userId":"u","tourId":1,"` + "\xc3\x28" + `":1}`, CodeInvalidJSON, ""},
	{"UTF-8 encoded surrogate", `{"type":"tour_start","userId":"u","tourId":1,"a":"` + "\xed\xa0\x80" + `"}`, CodeInvalidJSON, "a"},
	{"overlong UTF-8", `{"type":"tour_start","userId":"u","tourId":1,"a":"` + "\xc0\xaf" + `"}`, CodeInvalidJSON, "a"},
	{"invalid UTF-8 outside strings", `{"type":"tour_start","userId":"u","tourId":1}` + "\xff", CodeInvalidJSON, ""},
	{"trailing comma", `{"type":"tour_start","userId":"u","tourId":1,}`, CodeInvalidJSON, ""},
	{"trailing comma in a nested array", `{"type":"tour_start","userId":"u","tourId":1,"a":[1,]}`, CodeInvalidJSON, "a"},
	{"missing closing brace", `{"type":"tour_start","userId":"u","tourId":1`, CodeInvalidJSON, ""},
	{"unclosed nested object", `{"type":"tour_start","userId":"u","tourId":1,"a":{"b":1}`, CodeInvalidJSON, ""},
	{"mismatched brackets", `{"type":"tour_start","userId":"u","tourId":1,"a":[1}`, CodeInvalidJSON, "a"},
	{"single quotes", `{'type':'tour_start'}`, CodeInvalidJSON, ""},
	{"unquoted key", `{type:"tour_start"}`, CodeInvalidJSON, ""},
	{"missing colon", `{"type" "tour_start"}`, CodeInvalidJSON, ""},
	{"NaN", `{"type":"tour_start","userId":"u","tourId":NaN}`, CodeInvalidJSON, "tour_id"},
	{"leading zero", `{"type":"tour_start","userId":"u","tourId":012}`, CodeInvalidJSON, ""},
	{"plus sign", `{"type":"tour_start","userId":"u","tourId":+1}`, CodeInvalidJSON, "tour_id"},
	{"bare minus", `{"type":"tour_start","userId":"u","tourId":-}`, CodeInvalidJSON, "tour_id"},
	{"fraction without digits", `{"type":"tour_start","userId":"u","tourId":1.}`, CodeInvalidJSON, "tour_id"},
	{"exponent without digits", `{"type":"tour_start","userId":"u","tourId":1e}`, CodeInvalidJSON, "tour_id"},
	{"control character in a string", "{\"type\":\"tour_start\",\"userId\":\"u\tv\",\"tourId\":1}", CodeInvalidJSON, "user_id"},
	{"invalid escape", `{"type":"tour_start","userId":"u\x41","tourId":1}`, CodeInvalidJSON, "user_id"},
	{"short unicode escape", `{"type":"tour_start","userId":"u\u12","tourId":1}`, CodeInvalidJSON, "user_id"},
	{"unterminated string", `{"type":"tour_start","userId":"u`, CodeInvalidJSON, "user_id"},
	{"misspelled literal", `{"type":"tour_start","userId":"u","tourId":1,"ok":tru}`, CodeInvalidJSON, "ok"},
	{"two objects", `{"type":"tour_start","userId":"u","tourId":1} {}`, CodeInvalidJSON, ""},
	{"non-string key", `{1:2}`, CodeInvalidJSON, ""},
	{"100k nested arrays", `{"type":"tour_start","userId":"u","tourId":1,"deep":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`, CodeInvalidJSON, "deep"},
	{"100k nested objects", `{"type":"tour_start","userId":"u","tourId":1,"deep":` + strings.Repeat(`{"a":`, 100_000) + `1` + strings.Repeat("}", 100_000) + `}`, CodeInvalidJSON, "deep"},
	{"100k nested arrays, unclosed", `{"deep":` + strings.Repeat("[", 100_000), CodeInvalidJSON, "deep"},
	{"100k nested arrays at the top", strings.Repeat("[", 100_000), CodeInvalidJSON, ""},
	{"one level too deep", `{"type":"tour_start","userId":"u","tourId":1,"deep":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`, CodeInvalidJSON, "deep"},
}

func TestInvalidJSON(t *testing.T) { runBad(t, invalidJSONCases) }

func TestInvalidJSONMessages(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{`[1]`, `invalid_json: the value is an array, not an object`},
		{``, `invalid_json: the value is empty`},
		{`{"a":` + strings.Repeat("[", 200), `invalid_json: a: nesting deeper than 100 levels at byte 104`},
		{`{"a":1,}`, `invalid_json: expected a string key at byte 7`},
		{`{"a":"` + "\xff" + `"}`, `invalid_json: a: invalid UTF-8 at byte 6`},
		{`{"a":1}x`, `invalid_json: unexpected data after the object at byte 7`},
		{`{"a":1`, `invalid_json: unexpected end of input`},
	} {
		_, err := Map(record(tc.value))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Map(%.40q)\n got error %v\nwant %s", tc.value, err, tc.want)
		}
	}
}

func TestNestingUpToTheLimit(t *testing.T) {
	// The record is level 1, so its field's value may open maxDepth-1 more.
	deep := strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1)
	runGood(t, []good{{
		name:  "maxDepth levels",
		value: `{"type":"tour_start","userId":"u","tourId":1,"deep":` + deep + `}`,
		props: `{"tour_id":1,"deep":` + deep + `}`,
	}})
}

var typeCases = []good{
	{"snake_case", `{"type":"tour_start","userId":"u","tourId":1}`, "Tour Start", ""},
	{"camelCase", `{"type":"tourStart","userId":"u","tourId":1}`, "Tour Start", ""},
	{"PascalCase", `{"type":"TourStart","userId":"u","tourId":1}`, "Tour Start", ""},
	{"event name", `{"type":"Tour Start","userId":"u","tourId":1}`, "Tour Start", ""},
	{"upper kebab-case", `{"type":"TOUR-START","userId":"u","tourId":1}`, "Tour Start", ""},
	{"dotted", `{"type":"tour.start","userId":"u","tourId":1}`, "Tour Start", ""},
	{"no separators", `{"type":"tourstart","userId":"u","tourId":1}`, "Tour Start", ""},
	{"surrounding separators", `{"type":" _tour start_ ","userId":"u","tourId":1}`, "Tour Start", ""},
	{"escaped", `{"type":"tour\u005Fstart","userId":"u","tourId":1}`, "Tour Start", ""},
	{"long type", `{"type":"Announcement Action Clicked","userId":"u","announcementId":1}`, "Announcement Action Clicked", ""},
	{"nps", `{"type":"NPSWidgetShown","userId":"u","npsWidgetId":1}`, "Nps Widget Shown", ""},
	{"type key spelled Type", `{"Type":"tour_start","userId":"u","tourId":1}`, "Tour Start", `{"tour_id":1}`},
}

func TestTypeSpellings(t *testing.T) { runGood(t, typeCases) }

func TestEveryEventByEverySpelling(t *testing.T) {
	for _, ev := range catalogue {
		words := strings.Split(ev.Type, "_")
		camel := words[0]
		for _, w := range words[1:] {
			camel += strings.ToUpper(w[:1]) + w[1:]
		}
		for _, typ := range []string{ev.Type, camel, strings.ToUpper(camel[:1]) + camel[1:], ev.Name,
			strings.ToUpper(strings.ReplaceAll(ev.Type, "_", "-"))} {
			v := `{"type":"` + typ + `","userId":"u","` + ev.ID + `":1,"metadata":{"stepIndex":0,"type":"next","stepId":1}}`
			c, err := Map(record(v))
			if err != nil || c.Event != ev.Name {
				t.Errorf("type %q: got event %q, error %v; want %q", typ, c.Event, err, ev.Name)
			}
		}
	}
}

var unknownEventCases = []bad{
	{"type missing", `{"userId":"u","tourId":1}`, CodeUnknownEvent, "type"},
	{"type null", `{"type":null,"userId":"u","tourId":1}`, CodeUnknownEvent, "type"},
	{"type empty", `{"type":"","userId":"u","tourId":1}`, CodeUnknownEvent, "type"},
	{"type a number", `{"type":5,"userId":"u","tourId":1}`, CodeUnknownEvent, "type"},
	{"type an object", `{"type":{"name":"tour_start"},"userId":"u","tourId":1}`, CodeUnknownEvent, "type"},
	{"not in the catalogue", `{"type":"tour_begin","userId":"u","tourId":1}`, CodeUnknownEvent, "type"},
	{"catalogue word order only", `{"type":"start_tour","userId":"u","tourId":1}`, CodeUnknownEvent, "type"},
	{"other separators do not count", `{"type":"tour/start","userId":"u","tourId":1}`, CodeUnknownEvent, "type"},
	{"non-ASCII look-alike", `{"type":"tour_\u017Ftart","userId":"u","tourId":1}`, CodeUnknownEvent, "type"},
	{"Kelvin sign", `{"type":"checklist_finished` + "\u212a" + `","userId":"u","checklistId":1}`, CodeUnknownEvent, "type"},
	{"very long", `{"type":"` + strings.Repeat("tour_", 1000) + `","userId":"u","tourId":1}`, CodeUnknownEvent, "type"},
}

func TestUnknownEvent(t *testing.T) { runBad(t, unknownEventCases) }

func TestUnknownEventMessage(t *testing.T) {
	_, err := Map(record(`{"type":"tour_begin","userId":"u","tourId":1}`))
	if want := `unknown_event: type: "tour_begin" is not one of the 14 events`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

var spellingCases = []good{
	{"camelCase id", `{"type":"tour_start","userId":"u","tourId":1}`, "", `{"tour_id":1}`},
	{"snake_case id", `{"type":"tour_start","userId":"u","tour_id":1}`, "", `{"tour_id":1}`},
	{"PascalCase id", `{"type":"tour_start","userId":"u","TourId":1}`, "", `{"tour_id":1}`},
	{"acronym id", `{"type":"tour_start","userId":"u","tourID":1}`, "", `{"tour_id":1}`},
	{"kebab-case id", `{"type":"tour_start","userId":"u","tour-id":1}`, "", `{"tour_id":1}`},
	{"spaced id", `{"type":"tour_start","userId":"u","Tour Id":1}`, "", `{"tour_id":1}`},
	{"escaped key", `{"type":"tour_start","userId":"u","tour\u0049d":1}`, "", `{"tour_id":1}`},
	{"all-lower is another field", `{"type":"tour_start","userId":"u","tour_id":1,"tourid":2}`, "", `{"tour_id":1,"tourid":2}`},
	{"snake_case envelope", `{"type":"tour_start","user_id":"u","anonymous_id":"a","tour_id":1}`, "", `{"tour_id":1}`},
	{"two spellings, same value", `{"type":"tour_start","userId":"u","tourId":1,"tour_id":1}`, "", `{"tour_id":1}`},
	{"same key twice, same value", `{"type":"tour_start","userId":"u","tourId":1,"tourId":1}`, "", `{"tour_id":1}`},
	{"same value, other escapes", `{"type":"tour_start","userId":"u","tourId":"A","tour_id":"\u0041"}`, "", `{"tour_id":"A"}`},
	{"same object, other order", `{"type":"tour_start","userId":"u","tourId":1,"ctx":{"a":1,"b":[2]},"Ctx":{"b":[2], "a":1}}`, "", `{"tour_id":1,"ctx":{"a":1,"b":[2]}}`},
	{"same extra twice keeps the first place", `{"type":"tour_start","companyId":"c","userId":"u","tourId":1,"company_id":"c"}`, "", `{"company_id":"c","tour_id":1}`},
	{"null spelling does not conflict", `{"type":"tour_start","userId":"u","tourId":null,"tour_id":1}`, "", `{"tour_id":1}`},
	{"empty spelling does not conflict", `{"type":"tour_start","userId":"u","tourId":1,"tour_id":""}`, "", `{"tour_id":1}`},
	{"same type twice", `{"type":"tour_start","type":"tour_start","userId":"u","tourId":1}`, "Tour Start", `{"tour_id":1}`},
}

func TestFieldSpellings(t *testing.T) { runGood(t, spellingCases) }

var conflictCases = []bad{
	{"two spellings of an id", `{"type":"tour_start","userId":"u","tourId":1,"tour_id":2}`, CodeInvalidProperty, "tour_id"},
	{"same key twice", `{"type":"tour_start","userId":"u","tourId":1,"tourId":2}`, CodeInvalidProperty, "tour_id"},
	{"number text differs", `{"type":"tour_start","userId":"u","tourId":1,"tour_id":1.0}`, CodeInvalidProperty, "tour_id"},
	{"string and number", `{"type":"tour_start","userId":"u","tourId":1,"tour_id":"1"}`, CodeInvalidProperty, "tour_id"},
	{"extra field", `{"type":"tour_start","userId":"u","tourId":1,"companyId":"a","company_id":"b"}`, CodeInvalidProperty, "company_id"},
	{"nested values differ", `{"type":"tour_start","userId":"u","tourId":1,"ctx":{"a":1},"Ctx":{"a":2}}`, CodeInvalidProperty, "ctx"},
	{"userId", `{"type":"tour_start","userId":"u","user_id":"v","tourId":1}`, CodeInvalidProperty, "user_id"},
	{"anonymousId", `{"type":"tour_start","anonymousId":"a","anonymousID":"b","tourId":1}`, CodeInvalidProperty, "anonymous_id"},
	{"uncommon spelling after a common one", `{"type":"tour_start","userId":"u","tour_id":1,"TourId":2}`, CodeInvalidProperty, "tour_id"},
	{"two uncommon spellings", `{"type":"tour_start","userId":"u","tourId":1,"pagePath":"/a","PagePath":"/b"}`, CodeInvalidProperty, "page_path"},
	{"type spelled two ways", `{"type":"tour_start","type":"TourStart","userId":"u","tourId":1}`, CodeInvalidProperty, "type"},
	{"timestamp", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":1,"timestamp":2}`, CodeInvalidProperty, "timestamp"},
	{"id", `{"type":"tour_start","userId":"u","tourId":1,"id":"a","id":"b"}`, CodeInvalidProperty, "id"},
	{"conflict beats unknown type", `{"type":"nope","userId":"u","tourId":1,"tourId":2}`, CodeInvalidProperty, "tour_id"},
	{"a common name added for its bit", `{"type":"tour_step","userId":"u","tourId":1,"stepIndex":1,"step_index":2}`, CodeInvalidProperty, "step_index"},
	{"an escaped spelling of a common name", `{"type":"tour_start","userId":"u","user\u005fid":"v","tourId":1}`, CodeInvalidProperty, "user_id"},
	{"metadata members", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1,"step_index":2,"type":"next"}}`, CodeInvalidProperty, "metadata.stepIndex"},
	{"metadata member twice", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1,"type":"next","type":"previous"}}`, CodeInvalidProperty, "metadata.type"},
}

func TestConflictingSpellings(t *testing.T) { runBad(t, conflictCases) }

func TestConflictMessage(t *testing.T) {
	_, err := Map(record(`{"type":"tour_start","userId":"u","tourId":1,"tour_id":2}`))
	if want := `invalid_property: tour_id: "tourId" and "tour_id" have different values`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	_, err = Map(record(`{"type":"tour_start","userId":"u","tourId":1,"tourId":2}`))
	if want := `invalid_property: tour_id: "tourId" appears twice with different values`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestManyFields(t *testing.T) {
	// Past 32 fields duplicates are found through a map, not a linear scan.
	var b strings.Builder
	b.WriteString(`{"type":"tour_start","userId":"u","tourId":1`)
	for i := range 1000 {
		b.WriteString(`,"f` + strings.Repeat("x", i%7) + `_` + itoa(i) + `":` + itoa(i))
	}
	base := b.String()
	c, err := Map(record(base + `,"tour_id":1}`))
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	if got, want := len(c.Properties), 1001; got != want {
		t.Errorf("got %d properties, want %d", got, want)
	}
	checkBad(t, record(base+`,"f_0":1}`), CodeInvalidProperty, "f_0")
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}
