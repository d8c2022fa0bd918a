package config

import (
	"errors"
	"reflect"
	"testing"
)

func TestAPIKeysComeFromTheFileOrTheEnvironment(t *testing.T) {
	const settings = `{"global": {"provider": "gemini"}, "annotators": {
		"1": {"urgency": {"enabled": true}}, "2": {"urgency": {"enabled": true}}}}`
	cases := []struct {
		name    string
		keys    string
		env     map[string]string
		want1   string
		problem string // expected problem for annotator 2, if any
	}{
		{name: "the environment wins over the file",
			keys: `{"annotator_1": "file-key-1111", "annotator_2": "file-key-2222"}`,
			env:  map[string]string{"MHA_API_KEY_1": "env-key-1111"}, want1: "env-key-1111"},
		{name: "the file is used when the environment has no key",
			keys: `{"annotator_1": "file-key-1111", "annotator_2": "file-key-2222"}`, want1: "file-key-1111"},
		{name: "the environment alone is enough",
			env:   map[string]string{"MHA_API_KEY_1": "env-key-1111", "MHA_API_KEY_2": "env-key-2222"},
			want1: "env-key-1111"},
		{name: "surrounding whitespace is trimmed",
			keys:  `{"annotator_1": " file-key-1111\n", "annotator_2": "file-key-2222"}`,
			env:   map[string]string{"MHA_API_KEY_1": "  "},
			want1: "file-key-1111"},
		{name: "keys for annotators that do not exist are ignored",
			keys:  `{"annotator_1": "k1", "annotator_2": "k2", "annotator_9": 42, "comment": ["x"]}`,
			want1: "k1"},
		{name: "an empty key in the file is missing",
			keys: `{"annotator_1": "k1", "annotator_2": ""}`, want1: "k1",
			problem: `api_keys.annotator_2: annotator 2 uses provider gemini and has enabled domains but no API key: set "annotator_2" in api_keys.json or the MHA_API_KEY_2 environment variable`},
		{name: "a null key in the file is missing",
			keys: `{"annotator_1": "k1", "annotator_2": null}`, want1: "k1",
			problem: `api_keys.annotator_2: annotator 2 uses provider gemini and has enabled domains but no API key: set "annotator_2" in api_keys.json or the MHA_API_KEY_2 environment variable`},
		{name: "a key that is not a string is reported without its value",
			keys: `{"annotator_1": "k1", "annotator_2": 123456789012345}`, want1: "k1",
			problem: "api_keys.annotator_2: expected a string"},
		{name: "an empty keys file counts as no file",
			keys: "  \n", env: map[string]string{"MHA_API_KEY_1": "e1", "MHA_API_KEY_2": "e2"}, want1: "e1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var keys []byte
			if c.keys != "" {
				keys = []byte(c.keys)
			}
			cfg, err := Parse([]byte(settings), keys, envOf(c.env))
			if c.problem != "" {
				got := problemsOf(t, err)
				// A key that is not a string also leaves the annotator without a key.
				if got[0] != c.problem {
					t.Errorf("problems = %q\nwant first %q", got, c.problem)
				}
				return
			}
			if err != nil {
				t.Fatalf("want no error, got:\n%v", err)
			}
			if a, _ := cfg.Annotator("1"); a.APIKey.Reveal() != c.want1 {
				t.Errorf("annotator 1 key = %q, want %q", a.APIKey.Reveal(), c.want1)
			}
		})
	}
}

func TestWhoNeedsAnAPIKey(t *testing.T) {
	cases := []struct {
		name     string
		settings string
		want     []string // annotators reported for a missing key
	}{
		{"offline annotators need no key",
			`{"annotators": {"1": {"urgency": {"enabled": true}}}}`, nil},
		{"a disabled gemini annotator needs no key",
			`{"global": {"provider": "gemini"}, "annotators": {"1": {"urgency": {"enabled": false, "target_count": 5}}, "2": {}}}`, nil},
		{"an enabled gemini annotator needs a key",
			`{"global": {"provider": "gemini"}, "annotators": {"1": {"urgency": {"enabled": true}}, "2": {}}}`, []string{"1"}},
		{"an enabled openai annotator needs a key",
			`{"global": {"provider": "openai"}, "annotators": {"x": {"modality": {"enabled": true}}}}`, []string{"x"}},
		{"an annotator switched to gemini needs a key under a global offline provider",
			`{"annotators": {"1": {"urgency": {"enabled": true}}, "2": {"provider": "gemini", "urgency": {"enabled": true}}}}`, []string{"2"}},
		{"an annotator switched to offline needs no key under a global gemini provider",
			`{"global": {"provider": "gemini"}, "annotators": {"1": {"provider": "offline", "urgency": {"enabled": true}}}}`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.settings), nil, noEnv)
			if c.want == nil {
				if err != nil {
					t.Fatalf("want no error, got:\n%v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a *ValidationError, got %v", err)
			}
			var got []string
			for _, p := range ve.Problems {
				got = append(got, p.Path)
				if p.Value != nil {
					t.Errorf("problem %q carries a value", p)
				}
			}
			var want []string
			for _, id := range c.want {
				want = append(want, "api_keys.annotator_"+id)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("problem paths = %v, want %v", got, want)
			}
		})
	}
}

func TestABrokenKeysFileIsLocatedWithoutQuotingIt(t *testing.T) {
	_, err := Parse([]byte(`{"annotators": {}}`), []byte("{\"annotator_1\": \"sk-abc\"def\"}"), noEnv)
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("want a *SyntaxError, got %v", err)
	}
	want := "api_keys.json: invalid JSON at line 1, column 25"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestAKeysFileThatIsNotAnObjectIsAProblem(t *testing.T) {
	_, err := Parse([]byte(`{"annotators": {}}`), []byte(`["sk-abc"]`), noEnv)
	want := []string{`api_keys: expected an object like {"annotator_1": "..."}`}
	if got := problemsOf(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("problems = %q, want %q", got, want)
	}
}
