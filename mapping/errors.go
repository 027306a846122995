package mapping

// Code is a contract error code. It travels to the dead-letter topic in the
// produktly-error-code header, so its values are part of the contract and
// never change.
type Code string

// The contract's error codes, in the order the contract lists them.
const (
	// CodeInvalidJSON: the value is not a JSON object (bad JSON, not UTF-8,
	// an array, a number…, or nested deeper than the mapping accepts).
	CodeInvalidJSON Code = "invalid_json"
	// CodeUnknownEvent: type is missing or not one of the catalogue's events.
	CodeUnknownEvent Code = "unknown_event"
	// CodeMissingProperty: the id or metadata the event needs is missing.
	CodeMissingProperty Code = "missing_property"
	// CodeInvalidProperty: a field has the wrong type or value, or two
	// spellings of one field carry different values.
	CodeInvalidProperty Code = "invalid_property"
	// CodeMissingIdentity: neither userId nor anonymousId is present.
	CodeMissingIdentity Code = "missing_identity"
	// CodeInvalidTimestamp: timestamp is present but is neither RFC 3339 nor
	// integer epoch milliseconds, or no usable timestamp exists at all.
	CodeInvalidTimestamp Code = "invalid_timestamp"
	// CodeTooLarge: the encoded call exceeds Segment's 32000-byte limit.
	CodeTooLarge Code = "too_large"
	// CodeRejected: Segment answered 400 for the call itself. Map never
	// returns it; the sink does. It lives here so all codes are in one list.
	CodeRejected Code = "rejected"
	// CodeMissingAccount (contract v2): in accounts mode, the record has no
	// accountId (absent, null or ""). Only MapAccount returns it.
	CodeMissingAccount Code = "missing_account"
)

// Codes returns every contract error code, in contract order: the v1 codes,
// then missing_account, which contract v2 adds. The slice is the caller's
// to keep.
func Codes() []Code {
	return []Code{
		CodeInvalidJSON,
		CodeUnknownEvent,
		CodeMissingProperty,
		CodeInvalidProperty,
		CodeMissingIdentity,
		CodeInvalidTimestamp,
		CodeTooLarge,
		CodeRejected,
		CodeMissingAccount,
	}
}

// Error is the error every mapping failure returns, always as *Error.
// Callers tell failures apart by Code with errors.As or errors.Is, never by
// the text, which is for people (it becomes the produktly-error header).
type Error struct {
	// Code is one of Codes().
	Code Code
	// Field names the offending field: the snake_case property name
	// (tour_id, user_id, timestamp), "metadata.stepIndex" style for a
	// metadata member, or "" when no single field is to blame.
	Field string
	// Msg says what is wrong with the field, in lower case.
	Msg string
}

// Error formats the error as "code: field: message", or "code: message"
// when Field is empty.
func (e *Error) Error() string {
	if e.Field == "" {
		return string(e.Code) + ": " + e.Msg
	}
	return string(e.Code) + ": " + e.Field + ": " + e.Msg
}

// Is reports whether target is an *Error with the same Code, so that
// errors.Is(err, &mapping.Error{Code: mapping.CodeTooLarge}) matches any
// too_large failure whatever its field and message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && t.Code == e.Code
}

// newError builds an *Error. A field name longer than maxShown bytes (an
// extra field can have any name) is shortened, as it ends up in a header.
func newError(code Code, field, msg string) *Error {
	if f, more := shorten([]byte(field)); more != "" {
		field = string(f) + more
	}
	return &Error{Code: code, Field: field, Msg: msg}
}
