package labels

import (
	"strings"
	"testing"
)

type parseCase struct {
	name     string
	domain   Domain
	reply    string
	label    string // expected label when valid
	parseErr string // substring expected in ParseError
	validErr string // substring expected in ValidityError
}

func runParseCases(t *testing.T, cases []parseCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Parse(tc.domain, tc.reply)
			switch {
			case tc.parseErr != "":
				if !strings.Contains(got.ParseError, tc.parseErr) || got.ValidityError != "" || got.Label != "" {
					t.Fatalf("Parse(%s, %q) = %+v, want parse error containing %q", tc.domain, tc.reply, got, tc.parseErr)
				}
			case tc.validErr != "":
				if !strings.Contains(got.ValidityError, tc.validErr) || got.ParseError != "" || got.Label != "" {
					t.Fatalf("Parse(%s, %q) = %+v, want validity error containing %q", tc.domain, tc.reply, got, tc.validErr)
				}
			default:
				if !got.OK() || got.Label != tc.label {
					t.Fatalf("Parse(%s, %q) = %+v, want label %q", tc.domain, tc.reply, got, tc.label)
				}
			}
		})
	}
}

func TestParseHandlesEveryDomainsEdgeCases(t *testing.T) {
	runParseCases(t, []parseCase{
		// Any domain.
		{"an empty reply is a parse error", Urgency, "  \n", "", "empty reply", ""},
		{"a reply without a tag is a parse error", Urgency, "I think LEVEL_2 fits best.", "", "no <<...>> tag", ""},
		{"an unclosed tag is a parse error", Urgency, "Answer: <<LEVEL_2", "", "no <<...>> tag", ""},
		{"an empty tag is a validity error", Urgency, "Answer: <<  >>", "", "", "empty"},
		{"an unknown domain is a validity error", Domain("mood"), "<<LEVEL_1>>", "", "", "unknown domain"},

		// Urgency.
		{"urgency reads a plain level", Urgency, "Reasoning...\n<<LEVEL_3>>", "LEVEL_3", "", ""},
		{"urgency accepts lower case", Urgency, "<<level_2>>", "LEVEL_2", "", ""},
		{"urgency accepts a space instead of underscore", Urgency, "<<Level 4>>", "LEVEL_4", "", ""},
		{"urgency accepts no separator", Urgency, "<<LEVEL0>>", "LEVEL_0", "", ""},
		{"urgency takes the last tag over an echoed example", Urgency, "Format: <<LEVEL_X>>. Example <<LEVEL_0>>.\nMy answer: <<LEVEL_3>>", "LEVEL_3", "", ""},
		{"urgency ignores the echoed placeholder when it is last", Urgency, "<<LEVEL_1>> as in the template <<LEVEL_X>>", "", "", "no valid urgency code"},
		{"urgency rejects a level out of range", Urgency, "<<LEVEL_5>>", "", "", "LEVEL_5 is not a valid urgency code"},
		{"urgency rejects two different levels in one tag", Urgency, "<<LEVEL_2 or LEVEL_3>>", "", "", "takes one label but the tag has 2"},
		{"urgency allows the same level twice", Urgency, "<<LEVEL_2 (LEVEL_2)>>", "LEVEL_2", "", ""},
		{"urgency with words after the code", Urgency, "<<LEVEL_1 - low urgency>>", "LEVEL_1", "", ""},
		{"urgency uses the last of two answer tags", Urgency, "First guess <<LEVEL_1>>, on reflection <<LEVEL_2>>", "LEVEL_2", "", ""},
		{"urgency tag spanning lines", Urgency, "<<\nLEVEL_4\n>>", "LEVEL_4", "", ""},

		// Therapeutic.
		{"therapeutic sorts and deduplicates", Therapeutic, "<<TA-7, TA-1, TA-3, TA-1>>", "TA-1, TA-3, TA-7", "", ""},
		{"therapeutic accepts lower case", Therapeutic, "<<ta-2, Ta-9>>", "TA-2, TA-9", "", ""},
		{"therapeutic takes the last tag over the echoed template", Therapeutic, "Use the form <<TA-1, TA-3, TA-7>>.\nAnswer <<TA-5>>", "TA-5", "", ""},
		{"therapeutic rejects TA-0", Therapeutic, "<<TA-0>>", "", "", "TA-0 is not a valid therapeutic code"},
		{"therapeutic rejects TA-10 rather than reading TA-1", Therapeutic, "<<TA-10>>", "", "", "TA-10"},
		{"therapeutic without codes", Therapeutic, "<<CBT and DBT>>", "", "", "no valid therapeutic code"},

		// Intensity.
		{"intensity reads one code", Intensity, "<<INT-3>>", "INT-3", "", ""},
		{"intensity accepts lower case", Intensity, "<<int-5>>", "INT-5", "", ""},
		{"intensity rejects two codes", Intensity, "<<INT-2, INT-3>>", "", "", "takes one label"},
		{"intensity rejects INT-6", Intensity, "<<INT-6>>", "", "", "INT-6"},

		// Adjunct.
		{"adjunct NONE as the whole tag", Adjunct, "<<NONE>>", "NONE", "", ""},
		{"adjunct none in lower case", Adjunct, "<<none>>", "NONE", "", ""},
		{"adjunct NONE with a full stop", Adjunct, "<<NONE.>>", "NONE", "", ""},
		{"adjunct none inside other words does not win", Adjunct, "<<ADJ-2, nonetheless ADJ-4>>", "ADJ-2, ADJ-4", "", ""},
		{"adjunct NONE beside codes keeps the codes", Adjunct, "<<NONE of these except ADJ-5>>", "ADJ-5", "", ""},
		{"adjunct word none alone in a sentence is no label", Adjunct, "<<none needed really>>", "", "", "no valid adjunct code"},
		{"adjunct codes are sorted and case-insensitive", Adjunct, "<<adj-8, ADJ-1>>", "ADJ-1, ADJ-8", "", ""},
		{"adjunct rejects ADJ-9", Adjunct, "<<ADJ-9>>", "", "", "ADJ-9"},
		{"adjunct takes the last tag over an echoed NONE", Adjunct, "e.g. <<NONE>> or <<ADJ-1, ADJ-3>>\nAnswer: <<ADJ-3>>", "ADJ-3", "", ""},

		// Modality.
		{"modality reads several codes", Modality, "<<MOD-5, MOD-1>>", "MOD-1, MOD-5", "", ""},
		{"modality accepts lower case", Modality, "<<mod-2>>", "MOD-2", "", ""},
		{"modality rejects MOD-7", Modality, "<<MOD-7>>", "", "", "MOD-7"},

		// Redressal.
		{"redressal reads a JSON array", Redressal, `<<["Book a counselling session this week", "Talk to your tutor about deadlines"]>>`,
			`["Book a counselling session this week","Talk to your tutor about deadlines"]`, "", ""},
		{"redressal keeps non-ASCII unescaped", Redressal, `<<["Habla con tu consejero", "Sleep hygiene — café curfew"]>>`,
			`["Habla con tu consejero","Sleep hygiene — café curfew"]`, "", ""},
		{"redressal with one point is too few", Redressal, `<<["Only one"]>>`, "", "", "too few redressal points (1, minimum 2)"},
		{"redressal with eleven points is too many", Redressal, `<<["1","2","3","4","5","6","7","8","9","10","11"]>>`, "", "", "too many redressal points (11, maximum 10)"},
		{"redressal with exactly ten points is fine", Redressal, `<<["1","2","3","4","5","6","7","8","9","10"]>>`, `["1","2","3","4","5","6","7","8","9","10"]`, "", ""},
		{"redressal that is not JSON", Redressal, `<<[Book a session, Rest]>>`, "", "", "not valid JSON"},
		{"redressal that is an object", Redressal, `<<{"a": "b"}>>`, "", "", "must be a JSON array"},
		{"redressal with a number in it", Redressal, `<<["ok", 3]>>`, "", "", "point 2 is not a string"},
		{"redressal with a blank point", Redressal, `<<["ok", "  "]>>`, "", "", "point 2 is empty"},
		{"redressal takes the last tag over the template's example", Redressal, `Format <<["point one", "point two"]>>` + "\n" + `<<["Reach out to student services", "Keep a sleep diary"]>>`,
			`["Reach out to student services","Keep a sleep diary"]`, "", ""},
	})
}

func TestLastTagReturnsTheFinalTag(t *testing.T) {
	got, ok := LastTag("<<a>> text <<b>> more << c >>")
	if !ok || got != "c" {
		t.Fatalf("LastTag = %q, %v; want \"c\", true", got, ok)
	}
	if _, ok := LastTag("no tag"); ok {
		t.Fatal("LastTag found a tag in a reply without one")
	}
}

func TestEveryCatalogCodeParsesAsItself(t *testing.T) {
	for d, codes := range Catalog {
		for _, c := range codes {
			got := Parse(d, "Reasoning.\n<<"+c.Code+">>")
			if !got.OK() || got.Label != c.Code {
				t.Errorf("Parse(%s, <<%s>>) = %+v", d, c.Code, got)
			}
		}
	}
}

func TestParseDomainAcceptsAnyCaseAndNamesTheChoices(t *testing.T) {
	if d, err := ParseDomain(" Urgency "); err != nil || d != Urgency {
		t.Fatalf("ParseDomain(Urgency) = %q, %v", d, err)
	}
	_, err := ParseDomain("mood")
	if err == nil || !strings.Contains(err.Error(), "urgency, therapeutic, intensity, adjunct, modality, redressal") {
		t.Fatalf("ParseDomain(mood) error = %v, want the list of domains", err)
	}
}

// FuzzParse checks that no reply panics the parser, that every outcome is exactly one of the
// three kinds, and that a valid label, put back into a tag, parses to itself.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{"<<LEVEL_2>>", "<<TA-1, ta-3>>", "<<NONE>>", `<<["a", "b"]>>`, "<<>>", "<<<<>>>>", "<<INT-9>>", "no tag", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		for _, d := range Domains {
			o := Parse(d, reply)
			kinds := 0
			for _, set := range []bool{o.OK(), o.ParseError != "", o.ValidityError != ""} {
				if set {
					kinds++
				}
			}
			if kinds != 1 {
				t.Fatalf("Parse(%s, %q) = %+v: not exactly one kind of outcome", d, reply, o)
			}
			if !o.OK() {
				continue
			}
			if o.Label == "" {
				t.Fatalf("Parse(%s, %q) is OK with an empty label", d, reply)
			}
			again := Parse(d, "<<"+o.Label+">>")
			if !again.OK() || again.Label != o.Label {
				t.Fatalf("label %q of %s does not parse to itself: %+v", o.Label, d, again)
			}
		}
	})
}
