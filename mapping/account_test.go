package mapping

import (
	"bytes"
	"testing"

	"github.com/google/uuid"
)

// accountGood are records whose accountId is valid; wantAccount is the
// account they name (Call.AccountID), in both modes.
var accountGood = []struct {
	name, value, wantAccount string
}{
	{"string", `{"type":"tour_start","accountId":"acct-7","userId":"u","tourId":1}`, "acct-7"},
	{"integer", `{"type":"tour_start","accountId":42,"userId":"u","tourId":1}`, "42"},
	{"negative integer", `{"type":"tour_start","accountId":-42,"userId":"u","tourId":1}`, "-42"},
	{"integer beyond int64, digit for digit", `{"type":"tour_start","accountId":123456789012345678901234567890,"userId":"u","tourId":1}`, "123456789012345678901234567890"},
	{"snake_case spelling", `{"type":"tour_start","account_id":"acct-7","userId":"u","tourId":1}`, "acct-7"},
	{"escapes decoded", `{"type":"tour_start","accountId":"acct-\u0037","userId":"u","tourId":1}`, "acct-7"},
	{"two spellings, same string", `{"type":"tour_start","accountId":"7","account_id":"7","userId":"u","tourId":1}`, "7"},
	{"string and integer are the same account", `{"type":"tour_start","accountId":"42","account_id":42,"userId":"u","tourId":1}`, "42"},
	{"integer and string are the same account", `{"type":"tour_start","accountId":42,"AccountID":"4\u0032","userId":"u","tourId":1}`, "42"},
	{"an empty spelling is absent", `{"type":"tour_start","accountId":"","account_id":"9","userId":"u","tourId":1}`, "9"},
	{"a null spelling is absent", `{"type":"tour_start","accountId":9,"account_id":null,"userId":"u","tourId":1}`, "9"},
}

// TestAccountID: accountId is read in both modes, exposed as
// Call.AccountID, and never forwarded as a property.
func TestAccountID(t *testing.T) {
	for _, tc := range accountGood {
		t.Run(tc.name, func(t *testing.T) {
			for mode, mapFn := range map[string]func(Record) (Call, error){"single source": Map, "accounts": MapAccount} {
				c, err := mapFn(record(tc.value))
				if err != nil {
					t.Fatalf("%s: %s\n got error %v\nwant a call", mode, tc.value, err)
				}
				if c.AccountID != tc.wantAccount {
					t.Errorf("%s: AccountID: got %q, want %q", mode, c.AccountID, tc.wantAccount)
				}
				if got, want := propsJSON(c), `{"tour_id":1}`; got != want {
					t.Errorf("%s: properties: got %s, want %s (accountId is an envelope field)", mode, got, want)
				}
				if bytes.Contains(bytes.ToLower(c.JSON), []byte("account")) {
					t.Errorf("%s: the call carries the account: %s", mode, c.JSON)
				}
			}
		})
	}
}

// TestAccountSingleSource: without accountId a record maps as in v1, with
// Call.AccountID "".
func TestAccountSingleSource(t *testing.T) {
	for _, v := range []string{
		`{"type":"tour_start","userId":"u","tourId":1}`,
		`{"type":"tour_start","accountId":null,"userId":"u","tourId":1}`,
		`{"type":"tour_start","account_id":"","userId":"u","tourId":1}`,
	} {
		c, err := Map(record(v))
		if err != nil {
			t.Errorf("Map(%s): %v; single-source mode does not require accountId", v, err)
			continue
		}
		if c.AccountID != "" {
			t.Errorf("Map(%s): AccountID %q, want \"\"", v, c.AccountID)
		}
	}
}

// accountErrorCases fail in both modes (runBad checks Map, and
// TestAccountErrors checks MapAccount too).
var accountErrorCases = []bad{
	{"fraction", `{"type":"tour_start","accountId":1.5,"userId":"u","tourId":1}`, CodeInvalidProperty, "account_id"},
	{"exponent", `{"type":"tour_start","accountId":1e3,"userId":"u","tourId":1}`, CodeInvalidProperty, "account_id"},
	{"integral fraction", `{"type":"tour_start","accountId":42.0,"userId":"u","tourId":1}`, CodeInvalidProperty, "account_id"},
	{"boolean", `{"type":"tour_start","accountId":true,"userId":"u","tourId":1}`, CodeInvalidProperty, "account_id"},
	{"object", `{"type":"tour_start","accountId":{"id":1},"userId":"u","tourId":1}`, CodeInvalidProperty, "account_id"},
	{"array", `{"type":"tour_start","account_id":["a"],"userId":"u","tourId":1}`, CodeInvalidProperty, "account_id"},
	{"two spellings, two strings", `{"type":"tour_start","accountId":"1","account_id":"2","userId":"u","tourId":1}`, CodeInvalidProperty, "account_id"},
	{"two spellings, string and another integer", `{"type":"tour_start","accountId":"42","account_id":43,"userId":"u","tourId":1}`, CodeInvalidProperty, "account_id"},
	{"two spellings, leading zero is another string", `{"type":"tour_start","accountId":"042","account_id":42,"userId":"u","tourId":1}`, CodeInvalidProperty, "account_id"},
	{"two spellings, integer and its fraction", `{"type":"tour_start","accountId":42,"account_id":42.0,"userId":"u","tourId":1}`, CodeInvalidProperty, "account_id"},
	{"conflict reported before unknown_event", `{"type":"nope","accountId":"1","account_id":"2"}`, CodeInvalidProperty, "account_id"},
	{"after missing_identity", `{"type":"tour_start","accountId":true,"tourId":1}`, CodeMissingIdentity, "user_id"},
	{"before the id", `{"type":"tour_start","id":5,"accountId":true,"userId":"u","tourId":1}`, CodeInvalidProperty, "account_id"},
	{"before the timestamp", `{"type":"tour_start","accountId":1.5,"userId":"u","tourId":1,"timestamp":"x"}`, CodeInvalidProperty, "account_id"},
	{"before the event's id", `{"type":"tour_start","accountId":[],"userId":"u"}`, CodeInvalidProperty, "account_id"},
}

// accountsModeErrorCases fail only in accounts mode: missing_account and
// its precedence, right after missing_identity.
var accountsModeErrorCases = []bad{
	{"absent", `{"type":"tour_start","userId":"u","tourId":1}`, CodeMissingAccount, "account_id"},
	{"null", `{"type":"tour_start","accountId":null,"userId":"u","tourId":1}`, CodeMissingAccount, "account_id"},
	{"empty", `{"type":"tour_start","account_id":"","userId":"u","tourId":1}`, CodeMissingAccount, "account_id"},
	{"all spellings absent", `{"type":"tour_start","accountId":"","account_id":null,"userId":"u","tourId":1}`, CodeMissingAccount, "account_id"},
	{"missing_identity first", `{"type":"tour_start","tourId":1}`, CodeMissingIdentity, "user_id"},
	{"invalid userId first", `{"type":"tour_start","userId":1,"tourId":1}`, CodeInvalidProperty, "user_id"},
	{"unknown_event first", `{"type":"tour_nope","userId":"u","tourId":1}`, CodeUnknownEvent, "type"},
	{"before invalid id", `{"type":"tour_start","id":5,"userId":"u","tourId":1}`, CodeMissingAccount, "account_id"},
	{"before invalid_timestamp", `{"type":"tour_start","userId":"u","tourId":1,"timestamp":"x"}`, CodeMissingAccount, "account_id"},
	{"before missing_property", `{"type":"tour_step","userId":"u"}`, CodeMissingAccount, "account_id"},
	{"before too_large", `{"type":"tour_start","userId":"u","tourId":1,"big":"` + string(bytes.Repeat([]byte("x"), 40_000)) + `"}`, CodeMissingAccount, "account_id"},
}

func TestAccountErrors(t *testing.T) {
	runBad(t, accountErrorCases)
	for _, tc := range accountErrorCases {
		t.Run("accounts/"+tc.name, func(t *testing.T) {
			checkBadWith(t, MapAccount, record(tc.value), tc.code, tc.field)
		})
	}
}

func TestAccountsModeErrors(t *testing.T) {
	for _, tc := range accountsModeErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			checkBadWith(t, MapAccount, record(tc.value), tc.code, tc.field)
		})
	}
}

// TestAccountMessageID: in accounts mode a record's id is named with its
// account; without an id the Kafka coordinates are, as in single-source
// mode, whose message ids do not change.
func TestAccountMessageID(t *testing.T) {
	msgID := func(t *testing.T, mapFn func(Record) (Call, error), value string) string {
		t.Helper()
		c, err := mapFn(record(value))
		if err != nil {
			t.Fatalf("%s: %v", value, err)
		}
		return c.MessageID
	}
	name := func(s string) string { return uuid.NewSHA1(namespace, []byte(s)).String() }

	withID := `{"type":"tour_start","id":"int_1","accountId":"42","userId":"u","tourId":1}`
	if got, want := msgID(t, MapAccount, withID), name("account:42/id:int_1"); got != want {
		t.Errorf("accounts mode, with id: got %s, want the UUID of %q = %s", got, "account:42/id:int_1", want)
	}
	if got, want := msgID(t, MapAccount, `{"type":"tour_start","id":"int_1","accountId":42,"userId":"u","tourId":1}`), name("account:42/id:int_1"); got != want {
		t.Errorf("accounts mode, integer account: got %s, want %s (42 and \"42\" are one account)", got, want)
	}
	if got, want := msgID(t, MapAccount, `{"type":"tour_start","id":"int_\u0031","account_id":"4\u0032","userId":"u","tourId":1}`), name("account:42/id:int_1"); got != want {
		t.Errorf("accounts mode, escaped spellings: got %s, want %s", got, want)
	}
	if a, b := msgID(t, MapAccount, withID), msgID(t, MapAccount, `{"type":"tour_start","id":"int_1","accountId":"43","userId":"u","tourId":1}`); a == b {
		t.Errorf("two accounts with colliding interaction ids share message id %s", a)
	}
	noID := `{"type":"tour_start","accountId":"42","userId":"u","tourId":1}`
	if got, want := msgID(t, MapAccount, noID), name("kafka:produktly.interactions/1/7"); got != want {
		t.Errorf("accounts mode, no id: got %s, want the UUID of the coordinates %s", got, want)
	}
	// Single-source mode: the account plays no part.
	if got, want := msgID(t, Map, withID), name("id:int_1"); got != want {
		t.Errorf("single source, with id and account: got %s, want %s", got, want)
	}
	if got, want := msgID(t, Map, noID), name("kafka:produktly.interactions/1/7"); got != want {
		t.Errorf("single source, account, no id: got %s, want %s", got, want)
	}
}
