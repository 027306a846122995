package segmenttest

import (
	"encoding/json"
	"testing"
)

func TestScanBatchAgreesWithEncodingJSON(t *testing.T) {
	body := `{"batch":[` +
		`{"type":"track","messageId":"m1","userId":"u\"1","anonymousId":"a\\\/b\u00e9","event":"Tour \\\"Start","properties":{"messageId":"not me","n":[1,{"a":"]}\\"}]},"context":{}},` +
		` {"messageId":"m2","type":"track","anonymousId":"a2","event":"Tour Finish","timestamp":"2026-11-29T10:00:00.000Z","x":null,"y":-1.5e3,"z":true}` +
		`],"sentAt":"2026-11-29T10:00:00.000Z"}`
	got, err := scanBatch([]byte(body), nil)
	if err != nil {
		t.Fatal(err)
	}
	var want struct{ Batch []fields }
	if err := json.Unmarshal([]byte(body), &want); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want.Batch) {
		t.Fatalf("got %d messages, want %d", len(got), len(want.Batch))
	}
	for i := range got {
		g := got[i]
		if f := (fields{string(g.typ), string(g.event), string(g.messageID), string(g.userID), string(g.anonymousID)}); f != want.Batch[i] {
			t.Errorf("message %d = %+v, want %+v", i, f, want.Batch[i])
		}
	}
}

func TestScanBatchRejectsBrokenBodies(t *testing.T) {
	for _, body := range []string{
		``,
		`{"sentAt":"x"}`,
		`{"batch":{}}`,
		`{"batch":[{"type":"track"`,
		`{"batch":[{"type":"track}]}`,
		`{"batch":[{"type":"track"} {"type":"track"}]}`,
		`{"batch":[{"type":"track",}]}`,
		`{"batch":[{"type":"tr\x41ck"}]}`,
		`{"batch":[1]}`,
	} {
		if _, err := scanBatch([]byte(body), nil); err == nil {
			t.Errorf("scanBatch(%q) accepted a broken body", body)
		}
	}
}
