package mapping

import "strings"

// event is one row of the catalogue.
type event struct {
	// Type is the raw interaction type in its snake_case spelling. Records
	// may spell it in any case and with or without separators.
	Type string
	// Name is the Segment event name.
	Name string
	// ID is the property the event requires: a string or an integer.
	ID string
	// Metadata lists the members the event requires of its metadata
	// object; none means the event does not require metadata.
	Metadata []member

	key string // Type without separators, lower case: the lookup key
	// eventPart is the message from the event to the timestamp's text:
	// ,"event":<Name as a JSON string>,"timestamp":"
	eventPart string
}

// member is a required member of the metadata object.
type member struct {
	Name  string   // as the contract spells it: camelCase
	Rule  rule     // what its value must be
	OneOf []string // the allowed strings, for ruleOneOf

	snake string // Name in snake_case, the form spellings are matched in
	field string // metadata.Name, as errors name it
}

// rule is a constraint on a value.
type rule uint8

const (
	ruleStringOrInteger    rule = iota + 1 // a JSON string, or a number with no fraction or exponent
	ruleNonNegativeInteger                 // a number with no fraction or exponent, not below zero
	ruleOneOf                              // a JSON string equal to one of member.OneOf
)

// catalogue is the one table of events. Adding an event is one row here,
// one row in docs/contract.md (a test compares the two), a golden record in
// testdata/ and its tests.
var catalogue = []event{
	{Type: "tour_available", Name: "Tour Available", ID: "tour_id"},
	{Type: "tour_start", Name: "Tour Start", ID: "tour_id"},
	{Type: "tour_auto_start", Name: "Tour Auto Start", ID: "tour_id"},
	{Type: "tour_continue", Name: "Tour Continue", ID: "tour_id"},
	{Type: "tour_finish", Name: "Tour Finish", ID: "tour_id"},
	{Type: "tour_step", Name: "Tour Step", ID: "tour_id", Metadata: []member{
		{Name: "stepIndex", Rule: ruleNonNegativeInteger},
		{Name: "type", Rule: ruleOneOf, OneOf: []string{"next", "previous"}},
	}},
	{Type: "checklist_step_completed", Name: "Checklist Step Completed", ID: "checklist_id", Metadata: []member{
		{Name: "stepId", Rule: ruleStringOrInteger},
	}},
	{Type: "checklist_finished", Name: "Checklist Finished", ID: "checklist_id"},
	{Type: "smart_tip_available", Name: "Smart Tip Available", ID: "smart_tip_id"},
	{Type: "smart_tip_open", Name: "Smart Tip Open", ID: "smart_tip_id"},
	{Type: "announcement_shown", Name: "Announcement Shown", ID: "announcement_id"},
	{Type: "announcement_action_clicked", Name: "Announcement Action Clicked", ID: "announcement_id"},
	{Type: "announcement_closed", Name: "Announcement Closed", ID: "announcement_id"},
	{Type: "nps_widget_shown", Name: "Nps Widget Shown", ID: "nps_widget_id"},
}

// metadataName is the property that carries an event's metadata object.
const metadataName = "metadata"

// byKey finds a catalogue row by its lookup key.
var byKey = func() map[string]*event {
	m := make(map[string]*event, len(catalogue))
	for i := range catalogue {
		e := &catalogue[i]
		e.key = string(appendTypeKey(nil, []byte(e.Type)))
		e.eventPart = `,"event":` + string(appendString(nil, e.Name)) + `,"timestamp":"`
		for j := range e.Metadata {
			e.Metadata[j].snake = string(appendSnake(nil, []byte(e.Metadata[j].Name)))
			e.Metadata[j].field = metadataName + "." + e.Metadata[j].Name
		}
		if len(e.key) > maxTypeKey {
			panic("mapping: maxTypeKey is shorter than the key of " + e.Type)
		}
		m[e.key] = e
	}
	return m
}()

// appendTypeKey appends the lookup key of a type spelling: ASCII letters
// lower-cased, the separators ' ', '_', '-' and '.' dropped, everything else
// kept (so it can never match). Only ASCII folds, so no Unicode look-alike
// (the Kelvin sign for k) names an event.
func appendTypeKey(dst, typ []byte) []byte {
	for _, c := range typ {
		switch {
		case 'A' <= c && c <= 'Z':
			dst = append(dst, c+('a'-'A'))
		case c == ' ' || c == '_' || c == '-' || c == '.':
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// lookup returns the event a decoded type spelling names, or nil.
func lookup(typ []byte) *event {
	// Producers mostly write the catalogue's own spelling: matched whole,
	// it skips the folding below, whose key it would fold to anyway.
	for h := int(nameHash(typ)) & (len(byType) - 1); byType[h] != nil; h = (h + 1) & (len(byType) - 1) {
		if byType[h].Type == string(typ) {
			return byType[h]
		}
	}
	if len(typ) > 256 {
		return nil // longer than any spelling worth accepting
	}
	// appendTypeKey without appends: every byte is written, and only the
	// kept ones advance n. A key longer than every catalogue key matches
	// none, and keys only grow, so the loop stops there.
	var buf [maxTypeKey + 1]byte
	n := 0
	for _, c := range typ {
		if n > maxTypeKey {
			return nil
		}
		buf[n] = typeFold[c]
		n += int(typeKeep[c])
	}
	key := buf[:n]
	for h := int(nameHash(key)) & (len(byHash) - 1); byHash[h] != nil; h = (h + 1) & (len(byHash) - 1) {
		if byHash[h].key == string(key) {
			return byHash[h]
		}
	}
	return nil
}

// maxTypeKey is the length of the longest lookup key in the catalogue.
const maxTypeKey = len("announcementactionclicked")

// typeFold and typeKeep are appendTypeKey as tables: the byte a type
// spelling's byte becomes in the key, and 1 when it is kept.
var typeFold, typeKeep = func() (fold, keep [256]byte) {
	for c := range 256 {
		if k := appendTypeKey(nil, []byte{byte(c)}); len(k) == 1 {
			fold[c], keep[c] = k[0], 1
		}
	}
	return fold, keep
}()

// byHash is byKey as an open-addressing table probed from the nameHash of
// a lookup key, which spares the per-record lookup a map access.
var byHash = func() (t [64]*event) {
	for i := range catalogue {
		e := byKey[catalogue[i].key]
		h := int(nameHash([]byte(e.key))) & (len(t) - 1)
		for t[h] != nil {
			h = (h + 1) & (len(t) - 1)
		}
		t[h] = e
	}
	return t
}()

// byType is byHash for the catalogue's spellings (event.Type) as they
// are, probed from the nameHash of the spelling.
var byType = func() (t [64]*event) {
	for i := range catalogue {
		e := byKey[catalogue[i].key]
		h := int(nameHash([]byte(e.Type))) & (len(t) - 1)
		for t[h] != nil {
			h = (h + 1) & (len(t) - 1)
		}
		t[h] = e
	}
	return t
}()

// requirements renders the "required properties" cell of the event's row in
// docs/contract.md, for example
//
//	`tour_id`, `metadata` = `{stepIndex: integer ≥ 0, type: "next" or "previous"}`
func (e *event) requirements() string {
	var b strings.Builder
	b.WriteString("`" + e.ID + "`")
	if len(e.Metadata) == 0 {
		return b.String()
	}
	b.WriteString(", `" + metadataName + "` = `{")
	for i, m := range e.Metadata {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m.Name + ": " + m.Rule.describe(m.OneOf))
	}
	b.WriteString("}`")
	return b.String()
}

// describe says in words what a value obeying the rule is, as the docs do.
func (r rule) describe(oneOf []string) string {
	switch r {
	case ruleStringOrInteger:
		return "string or integer"
	case ruleNonNegativeInteger:
		return "integer ≥ 0"
	case ruleOneOf:
		q := make([]string, len(oneOf))
		for i, s := range oneOf {
			q[i] = `"` + s + `"`
		}
		return strings.Join(q, " or ")
	}
	return "?"
}
