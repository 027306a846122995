package mapping

import (
	"errors"
	"fmt"
	"testing"
)

func TestCodes(t *testing.T) {
	want := []Code{"invalid_json", "unknown_event", "missing_property", "invalid_property",
		"missing_identity", "invalid_timestamp", "too_large", "rejected", "missing_account"}
	got := Codes()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Codes():\n got %v\nwant %v", got, want)
	}
	got[0] = "changed"
	if Codes()[0] != CodeInvalidJSON {
		t.Error("Codes() returned shared state")
	}
}

func TestErrorText(t *testing.T) {
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{&Error{Code: CodeMissingProperty, Field: "tour_id", Msg: `required by "Tour Start"`}, `missing_property: tour_id: required by "Tour Start"`},
		{&Error{Code: CodeInvalidJSON, Msg: "the value is empty"}, `invalid_json: the value is empty`},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestErrorsIsAndAs(t *testing.T) {
	_, err := Map(record(`{"type":"tour_start","userId":"u"}`))
	wrapped := fmt.Errorf("partition 3 offset 7: %w", err)
	var e *Error
	if !errors.As(wrapped, &e) || e.Code != CodeMissingProperty || e.Field != "tour_id" {
		t.Fatalf("errors.As(%v): got %+v", wrapped, e)
	}
	for _, c := range Codes() {
		got := errors.Is(wrapped, &Error{Code: c})
		if want := c == CodeMissingProperty; got != want {
			t.Errorf("errors.Is(%v, &Error{Code: %s}) = %v, want %v", wrapped, c, got, want)
		}
	}
	if errors.Is(err, (*Error)(nil)) || errors.Is(err, errors.New(err.Error())) {
		t.Error("errors.Is matched something that is not an *Error with the same code")
	}
	// The sink reports rejected calls with the same type.
	rejected := error(&Error{Code: CodeRejected, Msg: "Segment answered 400"})
	if !errors.Is(rejected, &Error{Code: CodeRejected}) {
		t.Error("rejected does not match its code")
	}
}

// TestEveryMappingCodeIsTested makes sure the rule tables reach every code
// Map can return: all but rejected, which is the sink's.
func TestEveryMappingCodeIsTested(t *testing.T) {
	seen := map[Code]bool{CodeTooLarge: true} // TestTooLarge
	for _, table := range [][]bad{invalidJSONCases, unknownEventCases, conflictCases, idErrorCases,
		metadataErrorCases, identityErrorCases, timestampErrorCases, accountErrorCases, accountsModeErrorCases} {
		for _, tc := range table {
			seen[tc.code] = true
		}
	}
	for _, c := range Codes() {
		if c != CodeRejected && !seen[c] {
			t.Errorf("no rule test expects %s", c)
		}
	}
	if seen[CodeRejected] {
		t.Error("Map must never return rejected")
	}
}
