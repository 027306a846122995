package integrations

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        Integration
	}{
		{"all members", `{"writeKey":"wk1","region":"eu","active":true}`, Integration{WriteKey: NewWriteKey("wk1"), Region: RegionEU, Active: true}},
		{"region absent is us", `{"writeKey":"wk1"}`, Integration{WriteKey: NewWriteKey("wk1"), Region: RegionUS, Active: true}},
		{"region null is us", `{"writeKey":"wk1","region":null}`, Integration{WriteKey: NewWriteKey("wk1"), Region: RegionUS, Active: true}},
		{"active absent is true", `{"writeKey":"wk1","region":"us"}`, Integration{WriteKey: NewWriteKey("wk1"), Region: RegionUS, Active: true}},
		{"deactivated", `{"writeKey":"wk1","active":false}`, Integration{WriteKey: NewWriteKey("wk1"), Region: RegionUS, Active: false}},
		{"other members ignored", `{"writeKey":"wk1","plan":{"tier":3},"v":2}`, Integration{WriteKey: NewWriteKey("wk1"), Region: RegionUS, Active: true}},
		{"key trimmed", `{"writeKey":" wk1\n"}`, Integration{WriteKey: NewWriteKey("wk1"), Region: RegionUS, Active: true}},
		{"whitespace", " \n{ \"writeKey\" : \"wk1\" } ", Integration{WriteKey: NewWriteKey("wk1"), Region: RegionUS, Active: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("42", []byte(tc.value))
			if err != nil {
				t.Fatalf("Parse(%s): %v", tc.value, err)
			}
			if !got.WriteKey.Equal(tc.want.WriteKey) || got.Region != tc.want.Region || got.Active != tc.want.Active {
				t.Errorf("Parse(%s)\n got %s %v %v\nwant %s %v %v", tc.value, got.WriteKey.Reveal(), got.Region, got.Active,
					tc.want.WriteKey.Reveal(), tc.want.Region, tc.want.Active)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	const key = "SECRET-wk-9f8e7d"
	for _, tc := range []struct{ name, value, problem string }{
		{"not JSON", `writeKey=` + key, "not a JSON object"},
		{"truncated", `{"writeKey":"` + key, "not a valid JSON object"},
		{"an array", `["` + key + `"]`, "not a JSON object"},
		{"null", `null`, "not a JSON object"},
		{"a string", `"` + key + `"`, "not a JSON object"},
		{"empty", ``, "not a JSON object"},
		{"no writeKey", `{"region":"us"}`, "writeKey is missing"},
		{"writeKey null", `{"writeKey":null}`, "writeKey is missing"},
		{"writeKey empty", `{"writeKey":""}`, "writeKey is empty"},
		{"writeKey blank", `{"writeKey":"  "}`, "writeKey is empty"},
		{"writeKey a number", `{"writeKey":12345}`, "writeKey must be a string"},
		{"writeKey in another case", `{"WriteKey":"` + key + `"}`, "writeKey is missing"},
		{"unknown region", `{"writeKey":"` + key + `","region":"ap"}`, `region must be "us" or "eu"`},
		{"region in upper case", `{"writeKey":"` + key + `","region":"EU"}`, `region must be "us" or "eu"`},
		{"region a number", `{"writeKey":"` + key + `","region":1}`, `region must be "us" or "eu"`},
		{"active a string", `{"writeKey":"` + key + `","active":"false"}`, "active must be true or false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it, err := Parse("acct-7", []byte(tc.value))
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("Parse(%s): got %v, want an *InvalidError", tc.value, err)
			}
			if ie.Account != "acct-7" || ie.Problem != tc.problem {
				t.Errorf("Parse(%s): got account %q, problem %q; want acct-7, %q", tc.value, ie.Account, ie.Problem, tc.problem)
			}
			if want := `integration of account "acct-7": ` + tc.problem; err.Error() != want {
				t.Errorf("error text %q, want %q", err.Error(), want)
			}
			if strings.Contains(err.Error(), key) {
				t.Errorf("the error carries the key: %v", err)
			}
			if it.Active || !it.WriteKey.IsZero() {
				t.Errorf("an invalid integration must be inactive without a key, got %+v", it)
			}
		})
	}
}

// TestWriteKeyRedacted prints and encodes a key, alone and inside an
// Integration, every way a log line, an error or a response could, and
// finds the key nowhere.
func TestWriteKeyRedacted(t *testing.T) {
	const secret = "wk_live_5ecret"
	k := NewWriteKey(secret)
	it := Integration{WriteKey: k, Region: RegionEU, Active: true}
	var out, opaque []string // opaque: printed without its methods, so without the marker either
	type hidden struct {
		it  Integration // unexported: fmt cannot call its methods
		key WriteKey
	}
	for _, v := range []any{k, &k, it, &it, []Integration{it}, map[string]Integration{"a": it}, struct{ I Integration }{it}, hidden{it, k}, &hidden{it, k}} {
		dst := &out
		switch v.(type) {
		case hidden, *hidden:
			dst = &opaque
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s"} {
			*dst = append(*dst, fmt.Sprintf(verb, v))
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		*dst = append(*dst, string(b))
	}
	out = append(out, k.String(), k.GoString(), fmt.Sprint(k), fmt.Errorf("wrapped: %v", it).Error())
	if b, err := k.MarshalText(); err == nil {
		out = append(out, string(b))
	}
	var buf bytes.Buffer
	log := zerolog.New(&buf).Level(zerolog.TraceLevel)
	log.Debug().Interface("k", k).Interface("it", it).Any("p", &it).Stringer("s", k).Object("o", it).
		Str("text", fmt.Sprint(k)).Msg("integration")
	log.Debug().EmbedObject(it).Msgf("%v %s", it, k)
	out = append(out, buf.String())
	for _, s := range out {
		if strings.Contains(s, secret) || strings.Contains(s, fmt.Sprintf("%x", secret)) || strings.Contains(strings.ToLower(s), strings.ToLower(fmt.Sprintf("%X", secret))) {
			t.Errorf("the key is in %q", s)
		}
		if !strings.Contains(s, redacted) {
			t.Errorf("%q does not say the key is redacted", s)
		}
	}
	noSecrets(t, []string{secret, fmt.Sprintf("%x", secret), fmt.Sprintf("%X", secret)}, opaque...)
	if k.Reveal() != secret {
		t.Errorf("Reveal: got %q, want the key", k.Reveal())
	}
	// Equal compares by content.
	if !NewWriteKey(secret).Equal(k) || !it.Equal(Integration{WriteKey: NewWriteKey(secret), Region: RegionEU, Active: true}) ||
		NewWriteKey("other").Equal(k) || it.Equal(Integration{WriteKey: k, Region: RegionUS, Active: true}) {
		t.Error("Equal does not compare by content")
	}
	if !NewWriteKey("").IsZero() || NewWriteKey("").Reveal() != "" || k.IsZero() {
		t.Error("IsZero / Reveal of the empty key")
	}
	var back struct{ WriteKey WriteKey }
	if err := json.Unmarshal([]byte(`{"WriteKey":"x"}`), &back); err == nil && back.WriteKey.Reveal() == "x" {
		t.Errorf("a WriteKey must only come from NewWriteKey or Parse")
	}
}

func TestParseRegion(t *testing.T) {
	for _, s := range []string{"us", "eu"} {
		if r, err := ParseRegion(s); err != nil || string(r) != s {
			t.Errorf("ParseRegion(%q) = %q, %v", s, r, err)
		}
	}
	for _, s := range []string{"", "US", "ap", "eu1"} {
		if _, err := ParseRegion(s); err == nil {
			t.Errorf("ParseRegion(%q): no error", s)
		}
	}
}

// FuzzParse: any value parses or is an *InvalidError naming the account,
// whose text repeats nothing of the value.
func FuzzParse(f *testing.F) {
	for _, v := range []string{`{"writeKey":"k","region":"eu","active":false}`, `{"WriteKey":"k"}`, `{"writeKey":"\u006b"}`,
		`{"writeKey":"k","region":"EU"}`, `{"writeKey":1}`, `null`, `{"writeKey":"k","x":[1,{"y":2}]}`, `{"writeKey":"k","writeKey":""}`} {
		f.Add([]byte(v))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		it, err := Parse("acct", value)
		if err != nil {
			var ie *InvalidError
			if !errors.As(err, &ie) || ie.Account != "acct" {
				t.Fatalf("error %v is not an *InvalidError of acct", err)
			}
			if len(value) >= 8 && strings.Contains(err.Error(), string(value)) {
				t.Fatalf("the error %q repeats the value", err)
			}
			if it.Active || !it.WriteKey.IsZero() {
				t.Fatalf("an invalid value gave %+v", it)
			}
			return
		}
		if it.WriteKey.IsZero() || (it.Region != RegionUS && it.Region != RegionEU) {
			t.Fatalf("Parse(%q) = %+v without error", value, it)
		}
		if !json.Valid(value) {
			t.Fatalf("Parse accepted invalid JSON %q", value)
		}
	})
}
