package contract

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/labels"
)

func TestParseTargetTakesNumbersAndRefusesTheRestWithTheReason(t *testing.T) {
	cases := []struct {
		raw     string
		want    int
		wantErr string
	}{
		{raw: `40`, want: 40},
		{raw: `0`, want: 0},
		{raw: `"40"`, want: 40},
		{raw: ` "  7 " `, want: 7},
		{raw: ``, wantErr: "required"},
		{raw: `null`, wantErr: "required"},
		{raw: `-3`, wantErr: "0 or more"},
		{raw: `"-3"`, wantErr: "0 or more"},
		{raw: `"forty"`, wantErr: "not a whole number"},
		{raw: `4.5`, wantErr: "not a whole number"},
		{raw: `{"n":4}`, wantErr: "not a whole number"},
	}
	for _, c := range cases {
		got, err := ParseTarget(json.RawMessage(c.raw))
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("ParseTarget(%s): %v", c.raw, err)
		case c.wantErr == "" && got != c.want:
			t.Errorf("ParseTarget(%s) = %d, want %d", c.raw, got, c.want)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("ParseTarget(%s) = %d, %v; want an error saying %q", c.raw, got, err, c.wantErr)
		}
	}
}

func TestRunIDsRoundTrip(t *testing.T) {
	id := RunID("annotator-7", labels.Redressal)
	a, d, err := ParseRunID(id)
	if id != "annotation-annotator-7-redressal" || err != nil || a != "annotator-7" || d != labels.Redressal {
		t.Fatalf("RunID/ParseRunID = %q -> %q %q %v", id, a, d, err)
	}
	if _, _, err := ParseRunID("annotation-1-mood"); err == nil {
		t.Fatal("ParseRunID accepted an unknown domain")
	}
}
