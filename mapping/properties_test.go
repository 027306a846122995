package mapping

import (
	"errors"
	"strings"
	"testing"
)

var idCases = []good{
	{"string id", `{"type":"tour_start","userId":"u","tourId":"tour_1"}`, "Tour Start", `{"tour_id":"tour_1"}`},
	{"integer id stays a number", `{"type":"tour_start","userId":"u","tourId":42}`, "", `{"tour_id":42}`},
	{"huge integer keeps every digit", `{"type":"tour_start","userId":"u","tourId":123456789012345678901234567890}`, "", `{"tour_id":123456789012345678901234567890}`},
	{"beyond float64 precision", `{"type":"tour_start","userId":"u","tourId":9007199254740993}`, "", `{"tour_id":9007199254740993}`},
	{"negative integer", `{"type":"tour_start","userId":"u","tourId":-7}`, "", `{"tour_id":-7}`},
	{"zero", `{"type":"tour_start","userId":"u","tourId":0}`, "", `{"tour_id":0}`},
	{"string with escapes forwarded as given", `{"type":"tour_start","userId":"u","tourId":"t\u00e9\n"}`, "", `{"tour_id":"t\u00e9\n"}`},
	{"whitespace-only string is present", `{"type":"tour_start","userId":"u","tourId":" "}`, "", `{"tour_id":" "}`},
	{"checklist", `{"type":"checklist_finished","userId":"u","checklistId":"c"}`, "Checklist Finished", `{"checklist_id":"c"}`},
	{"smart tip", `{"type":"smart_tip_open","userId":"u","smartTipId":"s"}`, "Smart Tip Open", `{"smart_tip_id":"s"}`},
	{"announcement", `{"type":"announcement_closed","userId":"u","announcementId":"a"}`, "Announcement Closed", `{"announcement_id":"a"}`},
	{"nps widget", `{"type":"nps_widget_shown","userId":"u","npsWidgetId":"n"}`, "Nps Widget Shown", `{"nps_widget_id":"n"}`},
	{"another event's id is extra context, unchecked", `{"type":"tour_start","userId":"u","tourId":1,"checklistId":1.5}`, "", `{"tour_id":1,"checklist_id":1.5}`},
}

func TestIDs(t *testing.T) { runGood(t, idCases) }

var idErrorCases = []bad{
	{"missing", `{"type":"tour_start","userId":"u"}`, CodeMissingProperty, "tour_id"},
	{"null", `{"type":"tour_start","userId":"u","tourId":null}`, CodeMissingProperty, "tour_id"},
	{"empty string", `{"type":"tour_start","userId":"u","tourId":""}`, CodeMissingProperty, "tour_id"},
	{"another event's id", `{"type":"tour_start","userId":"u","checklistId":1}`, CodeMissingProperty, "tour_id"},
	{"fraction", `{"type":"tour_start","userId":"u","tourId":1.5}`, CodeInvalidProperty, "tour_id"},
	{"integral fraction", `{"type":"tour_start","userId":"u","tourId":1.0}`, CodeInvalidProperty, "tour_id"},
	{"exponent", `{"type":"tour_start","userId":"u","tourId":1e3}`, CodeInvalidProperty, "tour_id"},
	{"boolean", `{"type":"tour_start","userId":"u","tourId":true}`, CodeInvalidProperty, "tour_id"},
	{"object", `{"type":"tour_start","userId":"u","tourId":{"id":1}}`, CodeInvalidProperty, "tour_id"},
	{"array", `{"type":"tour_start","userId":"u","tourId":[1]}`, CodeInvalidProperty, "tour_id"},
	{"checklist id", `{"type":"checklist_finished","userId":"u","checklistId":[]}`, CodeInvalidProperty, "checklist_id"},
}

func TestIDErrors(t *testing.T) { runBad(t, idErrorCases) }

func TestEveryEventRequiresItsID(t *testing.T) {
	for _, ev := range catalogue {
		md := `,"metadata":{"stepIndex":0,"type":"next","stepId":"s"}`
		checkBad(t, record(`{"type":"`+ev.Type+`","userId":"u"`+md+`}`), CodeMissingProperty, ev.ID)
		checkBad(t, record(`{"type":"`+ev.Type+`","userId":"u","`+ev.ID+`":0.5`+md+`}`), CodeInvalidProperty, ev.ID)
	}
}

func TestMissingPropertyMessage(t *testing.T) {
	_, err := Map(record(`{"type":"tour_start","userId":"u"}`))
	if want := `missing_property: tour_id: required by "Tour Start"`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	_, err = Map(record(`{"type":"tour_start","userId":"u","tourId":1.5}`))
	if want := `invalid_property: tour_id: must be a string or integer, not 1.5`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

var metadataCases = []good{
	{"tour step", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":0,"type":"next"}}`, "Tour Step", `{"tour_id":1,"metadata":{"stepIndex":0,"type":"next"}}`},
	{"previous", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"type":"previous","stepIndex":3}}`, "", `{"tour_id":1,"metadata":{"type":"previous","stepIndex":3}}`},
	{"huge step index", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":123456789012345678901234567890,"type":"next"}}`, "", `{"tour_id":1,"metadata":{"stepIndex":123456789012345678901234567890,"type":"next"}}`},
	{"negative zero is zero", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":-0,"type":"next"}}`, "", ""},
	{"inner keys and extra members untouched", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1,"type":"next","stepTitle":"Hi","nested":{"innerKey":[1,{"deepKey":null}]}}}`, "", `{"tour_id":1,"metadata":{"stepIndex":1,"type":"next","stepTitle":"Hi","nested":{"innerKey":[1,{"deepKey":null}]}}}`},
	{"snake_case members accepted, forwarded as given", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"step_index":1,"type":"next"}}`, "", `{"tour_id":1,"metadata":{"step_index":1,"type":"next"}}`},
	{"two spellings of a member, same value", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1,"step_index":1,"type":"next"}}`, "", ""},
	{"whitespace is compacted", "{\"type\":\"tour_step\",\"userId\":\"u\",\"tourId\":1,\"metadata\":{ \"stepIndex\" : 1 ,\n\t\"type\" : \"next\" }}", "", `{"tour_id":1,"metadata":{"stepIndex":1,"type":"next"}}`},
	{"checklist step, string", `{"type":"checklist_step_completed","userId":"u","checklistId":"c","metadata":{"stepId":"s1"}}`, "Checklist Step Completed", `{"checklist_id":"c","metadata":{"stepId":"s1"}}`},
	{"checklist step, integer", `{"type":"checklist_step_completed","userId":"u","checklistId":"c","metadata":{"stepId":12}}`, "", `{"checklist_id":"c","metadata":{"stepId":12}}`},
	{"metadata on other events is extra context", `{"type":"tour_start","userId":"u","tourId":1,"metadata":"anything"}`, "", `{"tour_id":1,"metadata":"anything"}`},
}

func TestMetadata(t *testing.T) { runGood(t, metadataCases) }

var metadataErrorCases = []bad{
	{"missing", `{"type":"tour_step","userId":"u","tourId":1}`, CodeMissingProperty, "metadata"},
	{"null", `{"type":"tour_step","userId":"u","tourId":1,"metadata":null}`, CodeMissingProperty, "metadata"},
	{"empty string", `{"type":"tour_step","userId":"u","tourId":1,"metadata":""}`, CodeMissingProperty, "metadata"},
	{"a string", `{"type":"tour_step","userId":"u","tourId":1,"metadata":"x"}`, CodeInvalidProperty, "metadata"},
	{"an array", `{"type":"tour_step","userId":"u","tourId":1,"metadata":[{"stepIndex":0,"type":"next"}]}`, CodeInvalidProperty, "metadata"},
	{"empty object", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{}}`, CodeMissingProperty, "metadata.stepIndex"},
	{"stepIndex missing", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"type":"next"}}`, CodeMissingProperty, "metadata.stepIndex"},
	{"stepIndex null", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":null,"type":"next"}}`, CodeMissingProperty, "metadata.stepIndex"},
	{"stepIndex negative", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":-1,"type":"next"}}`, CodeInvalidProperty, "metadata.stepIndex"},
	{"stepIndex fractional", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1.5,"type":"next"}}`, CodeInvalidProperty, "metadata.stepIndex"},
	{"stepIndex integral fraction", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":2.0,"type":"next"}}`, CodeInvalidProperty, "metadata.stepIndex"},
	{"stepIndex exponent", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1e2,"type":"next"}}`, CodeInvalidProperty, "metadata.stepIndex"},
	{"stepIndex a string", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":"2","type":"next"}}`, CodeInvalidProperty, "metadata.stepIndex"},
	{"type missing", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1}}`, CodeMissingProperty, "metadata.type"},
	{"type empty", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1,"type":""}}`, CodeMissingProperty, "metadata.type"},
	{"type upper case", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1,"type":"NEXT"}}`, CodeInvalidProperty, "metadata.type"},
	{"type abbreviated", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1,"type":"prev"}}`, CodeInvalidProperty, "metadata.type"},
	{"type padded", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1,"type":"next "}}`, CodeInvalidProperty, "metadata.type"},
	{"type a number", `{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1,"type":1}}`, CodeInvalidProperty, "metadata.type"},
	{"id checked before metadata", `{"type":"tour_step","userId":"u","metadata":{}}`, CodeMissingProperty, "tour_id"},
	{"stepId missing", `{"type":"checklist_step_completed","userId":"u","checklistId":"c","metadata":{"step":"s1"}}`, CodeMissingProperty, "metadata.stepId"},
	{"stepId empty", `{"type":"checklist_step_completed","userId":"u","checklistId":"c","metadata":{"stepId":""}}`, CodeMissingProperty, "metadata.stepId"},
	{"stepId fractional", `{"type":"checklist_step_completed","userId":"u","checklistId":"c","metadata":{"stepId":1.5}}`, CodeInvalidProperty, "metadata.stepId"},
	{"stepId boolean", `{"type":"checklist_step_completed","userId":"u","checklistId":"c","metadata":{"stepId":true}}`, CodeInvalidProperty, "metadata.stepId"},
	{"checklist metadata missing", `{"type":"checklist_step_completed","userId":"u","checklistId":"c"}`, CodeMissingProperty, "metadata"},
}

func TestMetadataErrors(t *testing.T) { runBad(t, metadataErrorCases) }

func TestMetadataMessages(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{`{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":-1,"type":"next"}}`,
			`invalid_property: metadata.stepIndex: must be an integer ≥ 0, not -1`},
		{`{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1,"type":"back"}}`,
			`invalid_property: metadata.type: must be "next" or "previous", not "back"`},
		{`{"type":"tour_step","userId":"u","tourId":1,"metadata":{"stepIndex":1}}`,
			`missing_property: metadata.type: required by "Tour Step"`},
		{`{"type":"checklist_step_completed","userId":"u","checklistId":1,"metadata":{"stepId":{}}}`,
			`invalid_property: metadata.stepId: must be a string or integer, not an object`},
		{`{"type":"tour_step","userId":"u","tourId":1,"metadata":[]}`,
			`invalid_property: metadata: must be an object, not an array`},
	} {
		_, err := Map(record(tc.value))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Map(%s)\n got error %v\nwant %s", tc.value, err, tc.want)
		}
	}
}

var extraFieldCases = []good{
	{"camelCase becomes snake_case", `{"type":"tour_start","userId":"u","tourId":1,"companyId":"c1"}`, "", `{"tour_id":1,"company_id":"c1"}`},
	{"input order kept", `{"locale":"en","type":"tour_start","companyId":"c1","userId":"u","tourId":1,"plan":"pro"}`, "", `{"locale":"en","company_id":"c1","tour_id":1,"plan":"pro"}`},
	{"acronyms", `{"type":"tour_start","userId":"u","tourId":1,"pageURL":"x","ABTestGroup":"b","HTTPStatus":200,"userIDs":[1]}`, "", `{"tour_id":1,"page_url":"x","ab_test_group":"b","http_status":200,"user_ids":[1]}`},
	{"digits", `{"type":"tour_start","userId":"u","tourId":1,"step2Index":1,"utm2":"x"}`, "", `{"tour_id":1,"step2_index":1,"utm2":"x"}`},
	{"separators", `{"type":"tour_start","userId":"u","tourId":1,"utm-source":"x","Screen Width":1,"__typename":"T"}`, "", `{"tour_id":1,"utm_source":"x","screen_width":1,"__typename":"T"}`},
	{"non-ASCII names", `{"type":"tour_start","userId":"u","tourId":1,"ÜberFlag":true,"größe":"L"}`, "", `{"tour_id":1,"über_flag":true,"größe":"L"}`},
	{"names escaped for JSON", `{"type":"tour_start","userId":"u","tourId":1,"a\"b\\c\u0001":1}`, "", `{"tour_id":1,"a\"b\\c\u0001":1}`},
	{"empty name", `{"type":"tour_start","userId":"u","tourId":1,"":1}`, "", `{"tour_id":1,"":1}`},
	{"nested values unchanged", `{"type":"tour_start","userId":"u","tourId":1,"screen":{"innerWidth":1440,"list":[{"camelKey":"v","n":1.50e3}]}}`, "", `{"tour_id":1,"screen":{"innerWidth":1440,"list":[{"camelKey":"v","n":1.50e3}]}}`},
	{"numbers unchanged", `{"type":"tour_start","userId":"u","tourId":1,"ratio":1.50,"big":1E400,"neg":-0.0}`, "", `{"tour_id":1,"ratio":1.50,"big":1E400,"neg":-0.0}`},
	{"strings unchanged", `{"type":"tour_start","userId":"u","tourId":1,"s":"\u00e9\/\ud83d\ude00 <b>&"}`, "", `{"tour_id":1,"s":"\u00e9\/\ud83d\ude00 <b>&"}`},
	{"null and empty string dropped", `{"type":"tour_start","userId":"u","tourId":1,"locale":null,"referrer":"","plan":"pro"}`, "", `{"tour_id":1,"plan":"pro"}`},
	{"empty containers, false and zero kept", `{"type":"tour_start","userId":"u","tourId":1,"a":{},"b":[],"c":false,"d":0}`, "", `{"tour_id":1,"a":{},"b":[],"c":false,"d":0}`},
	{"whitespace compacted, strings kept", "{\"type\":\"tour_start\",\"userId\":\"u\",\"tourId\":1,\"a\": [ 1 , { \"b c\" : \" x \" } ] }", "", `{"tour_id":1,"a":[1,{"b c":" x "}]}`},
	{"envelope not repeated", `{"type":"tour_start","id":"i","userId":"u","anonymousId":"a","timestamp":"2026-01-01T00:00:00Z","tourId":1}`, "", `{"tour_id":1}`},
	{"envelope spellings not repeated", `{"Type":"tour_start","ID":"i","user_id":"u","AnonymousID":"a","TIMESTAMP":1,"tourId":1}`, "", `{"tour_id":1}`},
	{"near-envelope names are extra", `{"type":"tour_start","userId":"u","tourId":1,"messageId":"m","eventType":"e","timeStamp":1,"properties":{},"context":{}}`, "", `{"tour_id":1,"message_id":"m","event_type":"e","time_stamp":1,"properties":{},"context":{}}`},
}

func TestExtraFields(t *testing.T) { runGood(t, extraFieldCases) }

func TestSnakeCase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"tourId", "tour_id"}, {"tour_id", "tour_id"}, {"TourId", "tour_id"}, {"tourID", "tour_id"},
		{"tourIDs", "tour_ids"}, {"HTTPServer", "http_server"}, {"ABTest", "ab_test"}, {"APIKey", "api_key"},
		{"userID", "user_id"}, {"anonymousID", "anonymous_id"}, {"NPSWidgetID", "nps_widget_id"},
		{"smartTipId", "smart_tip_id"}, {"step2Index", "step2_index"}, {"ID", "id"}, {"id", "id"},
		{"tour-id", "tour_id"}, {"Tour Id", "tour_id"}, {"tour_Id", "tour_id"}, {"_private", "_private"},
		{"__typename", "__typename"}, {"a.b", "a.b"}, {"", ""}, {"ÉtéFlag", "été_flag"}, {"x", "x"},
		{"already_snake_case", "already_snake_case"}, {"iOS", "i_os"}, {"URL", "url"},
	} {
		if got := string(appendSnake(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("snake(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLongNames(t *testing.T) {
	long := strings.Repeat("longName", 100)
	runGood(t, []good{{
		name:  "names past the stack buffers",
		value: `{"type":"tour_start","userId":"u","tourId":1,"` + long + `":1,"esc\u0061ped` + long + `":2}`,
		props: `{"tour_id":1,"` + string(appendSnake(nil, []byte(long))) + `":1,"` + string(appendSnake(nil, []byte("escaped"+long))) + `":2}`,
	}})
}

func TestLongFieldNameInError(t *testing.T) {
	long := strings.Repeat("x", 1000)
	_, err := Map(record(`{"type":"tour_start","userId":"u","tourId":1,"` + long + `":1,"` + long + `":2}`))
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeInvalidProperty || e.Field != strings.Repeat("x", maxShown)+"…" {
		t.Errorf("got %v, want invalid_property with the field name shortened to %d bytes", err, maxShown)
	}
}
