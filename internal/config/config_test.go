package config

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/labels"
)

// noEnv keeps the test process's environment out of the tests.
func noEnv(string) string { return "" }

// envOf serves the given variables.
func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// oneAnnotator is a minimal valid annotators section.
const oneAnnotator = `{"1": {"urgency": {"enabled": true, "target_count": 10}}}`

// settingsWith builds a settings file from raw JSON global fields and an annotators section.
func settingsWith(t *testing.T, global map[string]string, annotators string) []byte {
	t.Helper()
	g := make(map[string]json.RawMessage, len(global))
	for k, v := range global {
		g[k] = json.RawMessage(v)
	}
	doc, err := json.Marshal(map[string]any{"global": g, "annotators": json.RawMessage(annotators)})
	if err != nil {
		t.Fatalf("building settings: %v", err)
	}
	return doc
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// problemsOf returns the problems of a *ValidationError, failing the test on any other result.
func problemsOf(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *ValidationError, got %v", err)
	}
	out := make([]string, len(ve.Problems))
	for i, p := range ve.Problems {
		out[i] = p.String()
	}
	return out
}

func mustParse(t *testing.T, settings, keys []byte, getenv func(string) string) *Config {
	t.Helper()
	cfg, err := Parse(settings, keys, getenv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

func TestShippedSettingsLoadWithoutKeysAndSpellOutTheDefaults(t *testing.T) {
	dir := t.TempDir() // a copy, so a developer's own api_keys.json cannot change the result
	if err := os.WriteFile(filepath.Join(dir, SettingsFile), readFile(t, "../../config/settings.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Options{Dir: dir, Getenv: noEnv})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	// The shipped file differs from the defaults only in a visible offline latency, so that
	// `make run` shows runs progressing.
	want := defaultGlobal()
	want.OfflineLatency = 200 * time.Millisecond
	if cfg.Global != want {
		t.Errorf("shipped global = %+v, want %+v", cfg.Global, want)
	}
	var ids []string
	for _, a := range cfg.Annotators {
		ids = append(ids, a.ID)
	}
	if want := []string{"1", "2", "3", "4", "5"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("annotators = %v, want %v", ids, want)
	}
	runs := cfg.Runs()
	if len(runs) != 30 {
		t.Fatalf("got %d runs, want 30", len(runs))
	}
	for _, r := range runs {
		if r.TargetCount != 60 {
			t.Errorf("run %+v: target %d, want 60", r, r.TargetCount)
		}
	}
}

func TestShippedKeysExampleNamesEveryShippedAnnotator(t *testing.T) {
	var keys map[string]string
	if err := json.Unmarshal(readFile(t, "../../config/api_keys.example.json"), &keys); err != nil {
		t.Fatal(err)
	}
	cfg := mustParse(t, readFile(t, "../../config/settings.json"), nil, noEnv)
	for _, a := range cfg.Annotators {
		if keys[KeyName(a.ID)] == "" {
			t.Errorf("api_keys.example.json has no entry for %s", KeyName(a.ID))
		}
	}
}

func TestSeedUsersSettingsFileLoadsUnchanged(t *testing.T) {
	cfg := mustParse(t, readFile(t, "testdata/seed_settings.json"), nil, noEnv)
	if cfg.Global != defaultGlobal() {
		t.Errorf("global = %+v, want the defaults (the seed's values are the defaults)", cfg.Global)
	}
	if len(cfg.Annotators) != 5 {
		t.Fatalf("got %d annotators, want 5", len(cfg.Annotators))
	}
	for i, a := range cfg.Annotators {
		disabledTarget := 0
		if i < 2 {
			disabledTarget = 500
		}
		for _, d := range labels.Domains {
			want := DomainSettings{Enabled: false, TargetCount: disabledTarget}
			if d == labels.Urgency {
				want = DomainSettings{Enabled: true, TargetCount: 10}
			}
			if got := a.Domains[d]; got != want {
				t.Errorf("annotator %s %s = %+v, want %+v", a.ID, d, got, want)
			}
		}
		if a.Provider != ProviderOffline || a.APIKey != "" {
			t.Errorf("annotator %s: provider %q key %v, want offline with no key", a.ID, a.Provider, a.APIKey)
		}
	}
	want := []Run{
		{"1", labels.Urgency, 10}, {"2", labels.Urgency, 10}, {"3", labels.Urgency, 10},
		{"4", labels.Urgency, 10}, {"5", labels.Urgency, 10},
	}
	if got := cfg.Runs(); !reflect.DeepEqual(got, want) {
		t.Errorf("Runs() = %v, want %v", got, want)
	}
}

func TestSeedFileWithGeminiAndNoKeysReportsExactlyTheFiveEnabledAnnotators(t *testing.T) {
	var doc map[string]map[string]any
	if err := json.Unmarshal(readFile(t, "testdata/seed_settings.json"), &doc); err != nil {
		t.Fatal(err)
	}
	doc["global"]["provider"] = ProviderGemini
	settings, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(settings, nil, noEnv)
	got := problemsOf(t, err)
	if len(got) != 5 {
		t.Fatalf("got %d problems, want 5:\n%s", len(got), strings.Join(got, "\n"))
	}
	for i, p := range got {
		id := string(rune('1' + i))
		want := "api_keys.annotator_" + id + `: annotator ` + id + ` uses provider gemini and has enabled domains but no API key: set "annotator_` + id + `" in api_keys.json or the MHA_API_KEY_` + id + ` environment variable`
		if p != want {
			t.Errorf("problem %d = %q\nwant          %q", i, p, want)
		}
	}
}

// bound describes one numeric global field's allowed range and the values just outside it.
type bound struct {
	field, lo, hi, below, above string
	// with holds other fields a value needs to be valid on its own, e.g. a heartbeat at its
	// minimum needs a shorter request timeout than the default.
	with map[string]string
}

var globalBounds = []bound{
	{field: "request_delay_seconds", lo: "0.1", hi: "60", below: "0.09", above: "60.01"},
	{field: "max_retries", lo: "0", hi: "10", below: "-1", above: "11"},
	{field: "crash_detection_minutes", lo: "1", hi: "60", below: "0.99", above: "60.01"},
	{field: "control_check_iterations", lo: "1", hi: "100", below: "0", above: "101"},
	{field: "control_check_seconds", lo: "1", hi: "300", below: "0", above: "301"},
	{field: "batch_size", lo: "1", hi: "1000", below: "0", above: "1001"},
	{field: "heartbeat_timeout_seconds", lo: "1", hi: "3600", below: "0.99", above: "3600.01",
		with: map[string]string{"request_timeout_seconds": "0.5"}},
	{field: "request_timeout_seconds", lo: "0.1", hi: "3600", below: "0.09", above: "3600.01"},
	{field: "max_restart_attempts", lo: "1", hi: "100", below: "0", above: "101"},
	{field: "requests_per_minute", lo: "1", hi: "100000", below: "0", above: "100001"},
	{field: "requests_per_day", lo: "1", hi: "100000000", below: "0", above: "100000001"},
	{field: "tokens_per_minute", lo: "0", hi: "1000000000", below: "-1", above: "1000000001"},
	{field: "offline_latency_seconds", lo: "0", hi: "60", below: "-0.5", above: "60.5"},
	{field: "max_concurrent_activities", lo: "1", hi: "1000", below: "0", above: "1001"},
	{field: "stream_idle_timeout_seconds", lo: "0.1", hi: "3600", below: "0.09", above: "3600.01"},
	{field: "temperature", lo: "0", hi: "2", below: "-0.01", above: "2.01"},
	{field: "max_output_tokens", lo: "1", hi: "65536", below: "0", above: "65537"},
	{field: "thinking_budget", lo: "-1", hi: "32768", below: "-2", above: "32769"},
}

func TestEveryGlobalBoundIsAcceptedAndEveryValueJustOutsideIsRejected(t *testing.T) {
	for _, b := range globalBounds {
		allowed := "(allowed " + b.lo + ".." + b.hi + ")"
		cases := []struct {
			name, value, want string
		}{
			{b.field + " at its minimum " + b.lo + " is accepted", b.lo, ""},
			{b.field + " at its maximum " + b.hi + " is accepted", b.hi, ""},
			{b.field + " of " + b.below + " below the minimum is rejected", b.below, "global." + b.field + ": " + b.below + " is out of range " + allowed},
			{b.field + " of " + b.above + " above the maximum is rejected", b.above, "global." + b.field + ": " + b.above + " is out of range " + allowed},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				global := map[string]string{b.field: c.value}
				for k, v := range b.with {
					global[k] = v
				}
				if b.field == "request_timeout_seconds" && c.value == b.hi {
					// No heartbeat is above 3600, so the range check passes and the
					// cross-field check is all that is left.
					global["heartbeat_timeout_seconds"] = "3600"
					c.want = "global.request_timeout_seconds: 3600 must be below global.heartbeat_timeout_seconds (3600)"
				}
				if b.field == "stream_idle_timeout_seconds" && c.value == b.hi {
					// Likewise: the request timeout is below the heartbeat, so below 3600.
					global["heartbeat_timeout_seconds"] = "3600"
					global["request_timeout_seconds"] = "3599.9"
					c.want = "global.stream_idle_timeout_seconds: 3600 must not exceed global.request_timeout_seconds (3599.9)"
				}
				parseExpecting(t, global, c.want)
			})
		}
	}
}

func TestBoundsLandInTheConfigWithTheirUnits(t *testing.T) {
	cfg := mustParse(t, settingsWith(t, map[string]string{
		"request_delay_seconds": "0.1", "max_retries": "10", "crash_detection_minutes": "60",
		"control_check_iterations": "100", "control_check_seconds": "300", "batch_size": "1000",
		"heartbeat_timeout_seconds": "3600", "request_timeout_seconds": "0.1",
		"max_restart_attempts": "100", "requests_per_minute": "100000",
		"requests_per_day": "100000000", "tokens_per_minute": "1000000000",
		"max_concurrent_activities": "1000", "stream": "false", "stream_idle_timeout_seconds": "0.1",
		"temperature": "2", "max_output_tokens": "65536", "thinking_budget": "32768",
		"safety_threshold": `"OFF"`,
	}, oneAnnotator), nil, noEnv)
	want := defaultGlobal()
	want.RequestDelay = 100 * time.Millisecond
	want.MaxRetries = 10
	want.CrashDetection = time.Hour
	want.ControlCheckIterations = 100
	want.ControlCheckSeconds = 300
	want.BatchSize = 1000
	want.HeartbeatTimeout = time.Hour
	want.RequestTimeout = 100 * time.Millisecond
	want.MaxRestartAttempts = 100
	want.RequestsPerMinute = 100000
	want.RequestsPerDay = 100000000
	want.TokensPerMinute = 1000000000
	want.MaxConcurrentActivities = 1000
	want.Stream = false
	want.StreamIdleTimeout = 100 * time.Millisecond
	want.Temperature = 2
	want.MaxOutputTokens = 65536
	want.SafetyThreshold = "OFF"
	if b := cfg.Global.ThinkingBudget; b == nil || *b != 32768 {
		t.Errorf("thinking budget = %v, want 32768", b)
	}
	want.ThinkingBudget = cfg.Global.ThinkingBudget // a pointer: compared above
	if cfg.Global != want {
		t.Errorf("global = %+v\nwant     %+v", cfg.Global, want)
	}
}

func TestTargetCountBoundsAreCheckedPerAnnotatorAndDomain(t *testing.T) {
	cases := []struct {
		name, target, want string
	}{
		{"a target of 0 is accepted", "0", ""},
		{"a target of 100000 is accepted", "100000", ""},
		{"a target of -1 is rejected", "-1", "annotators.3.urgency.target_count: -1 is out of range (allowed 0..100000)"},
		{"a target of 100001 is rejected", "100001", "annotators.3.urgency.target_count: 100001 is out of range (allowed 0..100000)"},
		{"a target of 200000 is rejected", "200000", "annotators.3.urgency.target_count: 200000 is out of range (allowed 0..100000)"},
		{"a target too big for any integer is rejected", "1e30", "annotators.3.urgency.target_count: 1e30 is out of range (allowed 0..100000)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			annotators := `{"3": {"urgency": {"enabled": true, "target_count": ` + c.target + `}}}`
			cfg, err := Parse(settingsWith(t, nil, annotators), nil, noEnv)
			if c.want == "" {
				if err != nil {
					t.Fatalf("want no error, got:\n%v", err)
				}
				if got := cfg.Runs()[0].TargetCount; got != mustAtoi(t, c.target) {
					t.Errorf("target = %d, want %s", got, c.target)
				}
				return
			}
			if got := problemsOf(t, err); !reflect.DeepEqual(got, []string{c.want}) {
				t.Errorf("problems = %q\nwant %q", got, c.want)
			}
		})
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStringSettingsAreChecked(t *testing.T) {
	long := strings.Repeat("p", 64)
	cases := []struct {
		name       string
		global     map[string]string
		annotators string
		want       string
	}{
		{"an empty model name is rejected", map[string]string{"model_name": `""`}, oneAnnotator,
			`global.model_name: "" must not be empty`},
		{"a blank model name is rejected", map[string]string{"model_name": `"  "`}, oneAnnotator,
			`global.model_name: "  " must not be empty`},
		{"an unknown provider is rejected", map[string]string{"provider": `"claude"`}, oneAnnotator,
			`global.provider: "claude" is not one of offline, gemini, openai`},
		{"a provider in capitals is rejected", map[string]string{"provider": `"Gemini"`}, oneAnnotator,
			`global.provider: "Gemini" is not one of offline, gemini, openai`},
		{"an empty base URL means the provider default", map[string]string{"base_url": `""`}, oneAnnotator, ""},
		{"an https base URL is accepted", map[string]string{"base_url": `"https://llm.example.org/v1"`}, oneAnnotator, ""},
		{"an http base URL with a port is accepted", map[string]string{"base_url": `"http://127.0.0.1:8080"`}, oneAnnotator, ""},
		{"an ftp base URL is rejected", map[string]string{"base_url": `"ftp://llm.example.org"`}, oneAnnotator,
			`global.base_url: "ftp://llm.example.org" is not an absolute http or https URL`},
		{"a relative base URL is rejected", map[string]string{"base_url": `"/v1"`}, oneAnnotator,
			`global.base_url: "/v1" is not an absolute http or https URL`},
		{"a base URL without a host is rejected", map[string]string{"base_url": `"http://"`}, oneAnnotator,
			`global.base_url: "http://" is not an absolute http or https URL`},
		{"any dataset path is kept", map[string]string{"dataset_path": `"/data/x.xlsx"`}, oneAnnotator, ""},
		{"a quota pool of 64 characters is accepted", nil, `{"1": {"quota_pool": "` + long + `"}}`, ""},
		{"a quota pool of 65 characters is rejected", nil, `{"1": {"quota_pool": "` + long + `p"}}`,
			`annotators.1.quota_pool: "` + long + `p" is not a valid quota pool name (want 1 to 64 of A-Z, a-z, 0-9, _, . and -)`},
		{"an empty quota pool is rejected", nil, `{"1": {"quota_pool": ""}}`,
			`annotators.1.quota_pool: "" is not a valid quota pool name (want 1 to 64 of A-Z, a-z, 0-9, _, . and -)`},
		{"a quota pool with a space is rejected", nil, `{"1": {"quota_pool": "proj A"}}`,
			`annotators.1.quota_pool: "proj A" is not a valid quota pool name (want 1 to 64 of A-Z, a-z, 0-9, _, . and -)`},
		{"an annotator's own limits override the global ones", nil, `{"1": {"requests_per_minute": 600}, "2": {}}`, ""},
		{"annotators of one pool with different limits are rejected", nil,
			`{"1": {"quota_pool": "proj", "requests_per_minute": 600}, "2": {"quota_pool": "proj"}}`,
			`annotators.2.requests_per_minute: 15 differs from 600 of annotator 1, which shares quota pool "proj": one pool has one set of limits`},
		{"an annotator's limit out of range is rejected", nil, `{"1": {"requests_per_day": 0}}`,
			`annotators.1.requests_per_day: 0 is out of range (allowed 1..100000000)`},
		{"an annotator ID of 32 characters is accepted", nil, `{"` + strings.Repeat("a", 32) + `": {}}`, ""},
		{"an annotator ID of 33 characters is rejected", nil, `{"` + strings.Repeat("a", 33) + `": {}}`,
			`annotators.` + strings.Repeat("a", 33) + `: "` + strings.Repeat("a", 33) + `" is not a valid annotator ID (want 1 to 32 of A-Z, a-z, 0-9, _ and -)`},
		{"an annotator ID with a dot is rejected and quoted in the path", nil, `{"a.b": {}}`,
			`annotators."a.b": "a.b" is not a valid annotator ID (want 1 to 32 of A-Z, a-z, 0-9, _ and -)`},
		{"an empty annotator ID is rejected", nil, `{"": {}}`,
			`annotators."": "" is not a valid annotator ID (want 1 to 32 of A-Z, a-z, 0-9, _ and -)`},
		{"an annotator's unknown provider is rejected", nil, `{"1": {"provider": "claude"}}`,
			`annotators.1.provider: "claude" is not one of offline, gemini, openai`},
		{"an annotator's bad base URL is rejected", nil, `{"1": {"base_url": "localhost:8080"}}`,
			`annotators.1.base_url: "localhost:8080" is not an absolute http or https URL`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(settingsWith(t, c.global, c.annotators), nil, noEnv)
			if c.want == "" {
				if err != nil {
					t.Fatalf("want no error, got:\n%v", err)
				}
				return
			}
			if got := problemsOf(t, err); !reflect.DeepEqual(got, []string{c.want}) {
				t.Errorf("problems = %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestAllProblemsAreReportedTogetherInOneError(t *testing.T) {
	settings := []byte(`{
		"global": {"batch_size": 0, "provider": "claude", "request_timeout_seconds": 60,
		           "heartbeat_timeout_seconds": 30, "colour": "blue"},
		"annotators": {
			"3": {"urgency": {"enabled": true, "target_count": 200000}},
			"1": {"therapeutic": {"enabled": "yes"}, "quota_pool": "a b"}
		},
		"extra": 1
	}`)
	_, err := Parse(settings, nil, noEnv)
	want := []string{
		`global.provider: "claude" is not one of offline, gemini, openai`,
		`global.batch_size: 0 is out of range (allowed 1..1000)`,
		`global.request_timeout_seconds: 60 must be below global.heartbeat_timeout_seconds (30)`,
		`global.colour: unknown field (allowed: ` + strings.Join(globalFields, ", ") + `)`,
		`annotators.1.therapeutic.enabled: expected a boolean (true or false), got "yes"`,
		`annotators.1.quota_pool: "a b" is not a valid quota pool name (want 1 to 64 of A-Z, a-z, 0-9, _, . and -)`,
		`annotators.3.urgency.target_count: 200000 is out of range (allowed 0..100000)`,
		`extra: unknown field (allowed: global, annotators, prices)`,
	}
	if got := problemsOf(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err.Error() != strings.Join(want, "\n") {
		t.Errorf("Error() should list one problem per line, got:\n%s", err)
	}
	var ve *ValidationError
	errors.As(err, &ve)
	if p := ve.Problems[1]; p.Path != "global.batch_size" || p.Value != 0 {
		t.Errorf("problem %+v: want path global.batch_size and value 0", p)
	}
}

func TestRequestTimeoutMustBeBelowHeartbeatTimeout(t *testing.T) {
	cases := []struct {
		name      string
		request   string // "" means the default, 45
		heartbeat string
		want      string
	}{
		{"a request timeout below the heartbeat is accepted", "29.9", "30", ""},
		{"a request timeout equal to the heartbeat is rejected", "30", "30",
			"global.request_timeout_seconds: 30 must be below global.heartbeat_timeout_seconds (30)"},
		{"a request timeout above the heartbeat is rejected", "60", "30",
			"global.request_timeout_seconds: 60 must be below global.heartbeat_timeout_seconds (30)"},
		{"the default request timeout is checked against a short heartbeat", "", "30",
			"global.request_timeout_seconds: 45 must be below global.heartbeat_timeout_seconds (30)"},
		{"a heartbeat out of range is reported once, not compared", "45", "0.5",
			"global.heartbeat_timeout_seconds: 0.5 is out of range (allowed 1..3600)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			global := map[string]string{"heartbeat_timeout_seconds": c.heartbeat}
			if c.request != "" {
				global["request_timeout_seconds"] = c.request
			}
			parseExpecting(t, global, c.want)
		})
	}
}

func TestStreamIdleTimeoutMayNotExceedTheRequestTimeout(t *testing.T) {
	cases := []struct {
		name    string
		global  map[string]string
		want    string
		wantIdl time.Duration
	}{
		{"an idle timeout equal to the request timeout is accepted",
			map[string]string{"stream_idle_timeout_seconds": "45"}, "", 45 * time.Second},
		{"an idle timeout above the request timeout is rejected",
			map[string]string{"stream_idle_timeout_seconds": "45.5"},
			"global.stream_idle_timeout_seconds: 45.5 must not exceed global.request_timeout_seconds (45)", 0},
		{"an idle timeout above a short request timeout is rejected",
			map[string]string{"stream_idle_timeout_seconds": "20", "request_timeout_seconds": "5"},
			"global.stream_idle_timeout_seconds: 20 must not exceed global.request_timeout_seconds (5)", 0},
		{"a missing idle timeout shrinks to a shorter request timeout, so older files still load",
			map[string]string{"request_timeout_seconds": "5"}, "", 5 * time.Second},
		{"a missing idle timeout is 20 s under a longer request timeout",
			map[string]string{"request_timeout_seconds": "30"}, "", 20 * time.Second},
		{"a request timeout out of range is reported once, not compared",
			map[string]string{"stream_idle_timeout_seconds": "20", "request_timeout_seconds": "0.05"},
			"global.request_timeout_seconds: 0.05 is out of range (allowed 0.1..3600)", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse(settingsWith(t, c.global, oneAnnotator), nil, noEnv)
			if c.want != "" {
				if got := problemsOf(t, err); !reflect.DeepEqual(got, []string{c.want}) {
					t.Errorf("problems = %q\nwant %q", got, c.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("want no error, got:\n%v", err)
			}
			if got := cfg.Global.StreamIdleTimeout; got != c.wantIdl {
				t.Errorf("stream idle timeout = %v, want %v", got, c.wantIdl)
			}
		})
	}
}

// globalCase sets some global fields and expects either one problem (want) or a Global
// that passes check.
type globalCase struct {
	name   string
	global map[string]string
	check  func(Global) bool
	want   string
}

// parseExpecting parses a config with these global fields and one annotator and checks that
// it yields exactly the problem want, or none when want is "" (then it returns the config).
func parseExpecting(t *testing.T, global map[string]string, want string) *Config {
	t.Helper()
	cfg, err := Parse(settingsWith(t, global, oneAnnotator), nil, noEnv)
	if want != "" {
		if got := problemsOf(t, err); !reflect.DeepEqual(got, []string{want}) {
			t.Errorf("problems = %q\nwant %q", got, want)
		}
		return nil
	}
	if err != nil {
		t.Fatalf("want no error, got:\n%v", err)
	}
	return cfg
}

func runGlobalCases(t *testing.T, cases []globalCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if cfg := parseExpecting(t, c.global, c.want); cfg != nil && !c.check(cfg.Global) {
				t.Errorf("unexpected global %+v", cfg.Global)
			}
		})
	}
}

func TestGenerationSettingsAreChecked(t *testing.T) {
	budget := func(n int) *int { return &n }
	thresholds := `"BLOCK_NONE", "BLOCK_ONLY_HIGH", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_LOW_AND_ABOVE", "OFF", ""`
	cases := []globalCase{
		{"streaming is on by default", nil, func(g Global) bool { return g.Stream }, ""},
		{"streaming can be turned off", map[string]string{"stream": "false"}, func(g Global) bool { return !g.Stream }, ""},
		{"a stream flag in a string is rejected", map[string]string{"stream": `"no"`}, nil,
			`global.stream: expected a boolean (true or false), got "no"`},
		{"a missing thinking budget is not sent", nil, func(g Global) bool { return g.ThinkingBudget == nil }, ""},
		{"a null thinking budget is not sent", map[string]string{"thinking_budget": "null"},
			func(g Global) bool { return g.ThinkingBudget == nil }, ""},
		{"a thinking budget of 0 is kept, to turn thinking off", map[string]string{"thinking_budget": "0"},
			func(g Global) bool { return reflect.DeepEqual(g.ThinkingBudget, budget(0)) }, ""},
		{"a thinking budget of -1 is kept, to let the model decide", map[string]string{"thinking_budget": "-1"},
			func(g Global) bool { return reflect.DeepEqual(g.ThinkingBudget, budget(-1)) }, ""},
		{"a fractional thinking budget is rejected", map[string]string{"thinking_budget": "1.5"}, nil,
			"global.thinking_budget: expected an integer, got 1.5"},
		{"a thinking budget in a string is rejected", map[string]string{"thinking_budget": `"0"`}, nil,
			`global.thinking_budget: expected an integer, got "0"`},
		{"every safety threshold is accepted", map[string]string{"safety_threshold": `"BLOCK_LOW_AND_ABOVE"`},
			func(g Global) bool { return g.SafetyThreshold == "BLOCK_LOW_AND_ABOVE" }, ""},
		{"an empty safety threshold sends none", map[string]string{"safety_threshold": `""`},
			func(g Global) bool { return g.SafetyThreshold == "" }, ""},
		{"a safety threshold in lower case is rejected", map[string]string{"safety_threshold": `"block_none"`}, nil,
			`global.safety_threshold: "block_none" is not one of ` + thresholds},
		{"a safety threshold that is not a string is rejected", map[string]string{"safety_threshold": "0"}, nil,
			"global.safety_threshold: expected a string, got 0"},
		{"the quota day zone takes an IANA name", map[string]string{"quota_day_zone": `"UTC"`},
			func(g Global) bool { return g.QuotaDayZone == "UTC" }, ""},
		{"an unknown quota day zone is rejected", map[string]string{"quota_day_zone": `"Mars/Olympus"`}, nil,
			`global.quota_day_zone: "Mars/Olympus" is not an IANA time zone (such as America/Los_Angeles or UTC)`},
		{"an explicit temperature of 0 is kept", map[string]string{"temperature": "0"},
			func(g Global) bool { return g.Temperature == 0 }, ""},
		{"a fractional temperature is kept", map[string]string{"temperature": "0.7"},
			func(g Global) bool { return g.Temperature == 0.7 }, ""},
		{"a fractional max_output_tokens is rejected", map[string]string{"max_output_tokens": "10.5"}, nil,
			"global.max_output_tokens: expected an integer, got 10.5"},
	}
	runGlobalCases(t, cases)
}

// rejectCase is a settings file that must yield exactly the one problem want.
type rejectCase struct {
	name     string
	settings string
	want     string
}

func runRejectCases(t *testing.T, cases []rejectCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name+" is rejected", func(t *testing.T) {
			_, err := Parse([]byte(c.settings), nil, noEnv)
			if got := problemsOf(t, err); !reflect.DeepEqual(got, []string{c.want}) {
				t.Errorf("problems = %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestUnknownFieldsAreRejectedWithTheirPath(t *testing.T) {
	domainsAndFields := "urgency, therapeutic, intensity, adjunct, modality, redressal, quota_pool, model_name, provider, base_url, mode, requests_per_minute, requests_per_day, tokens_per_minute, batch_max_jobs, batch_max_enqueued_tokens"
	cases := []rejectCase{
		{"an unknown top-level key", `{"annotators": {}, "globals": {}}`,
			"globals: unknown field (allowed: global, annotators, prices)"},
		{"a price without its output price", `{"annotators": {}, "prices": {"m-1": {"input_per_million": 0.3}}}`,
			"prices.m-1.output_per_million: is missing: the price in US dollars per million output tokens"},
		{"a negative price", `{"annotators": {}, "prices": {"m-1": {"input_per_million": -1, "output_per_million": 2}}}`,
			"prices.m-1.input_per_million: -1 is out of range (allowed 0..10000)"},
		{"an unknown price field", `{"annotators": {}, "prices": {"m-1": {"input_per_million": 1, "output_per_million": 2, "per_call": 1}}}`,
			"prices.m-1.per_call: unknown field (allowed: input_per_million, output_per_million, cached_input_per_million)"},
		{"an unknown global key", `{"global": {"batchsize": 5}, "annotators": {}}`,
			"global.batchsize: unknown field (allowed: " + strings.Join(globalFields, ", ") + ")"},
		{"an unknown annotator key", `{"annotators": {"1": {"colour": "red"}}}`,
			"annotators.1.colour: unknown field (allowed: " + domainsAndFields + ")"},
		{"a domain name in capitals", `{"annotators": {"1": {"Urgency": {"enabled": true}}}}`,
			"annotators.1.Urgency: unknown field (allowed: " + domainsAndFields + ")"},
		{"an unknown key inside a domain", `{"annotators": {"1": {"urgency": {"enabled": true, "target": 5}}}}`,
			"annotators.1.urgency.target: unknown field (allowed: enabled, target_count)"},
		{"a key with a newline is quoted so the message stays on one line", `{"annotators": {}, "a\nb": 1}`,
			`"a\nb": unknown field (allowed: global, annotators, prices)`},
	}
	runRejectCases(t, cases)
}

func TestWrongTypesAreRejectedWithPathAndExpectedType(t *testing.T) {
	cases := []rejectCase{
		{"a fractional target count", `{"annotators": {"1": {"urgency": {"enabled": true, "target_count": 2.5}}}}`,
			"annotators.1.urgency.target_count: expected an integer, got 2.5"},
		{"a target count in a string", `{"annotators": {"1": {"urgency": {"enabled": true, "target_count": "10"}}}}`,
			`annotators.1.urgency.target_count: expected an integer, got "10"`},
		{"enabled as a string", `{"annotators": {"1": {"urgency": {"enabled": "true"}}}}`,
			`annotators.1.urgency.enabled: expected a boolean (true or false), got "true"`},
		{"enabled as a number", `{"annotators": {"1": {"urgency": {"enabled": 1}}}}`,
			`annotators.1.urgency.enabled: expected a boolean (true or false), got 1`},
		{"a domain that is not an object", `{"annotators": {"1": {"urgency": true}}}`,
			"annotators.1.urgency: expected an object, got true"},
		{"an annotator that is not an object", `{"annotators": {"1": [1, 2]}}`,
			"annotators.1: expected an object, got [1,2]"},
		{"annotators that are not an object", `{"annotators": "1,2"}`,
			`annotators: expected an object, got "1,2"`},
		{"a global that is not an object", `{"global": [], "annotators": {}}`,
			"global: expected an object, got []"},
		{"a null batch size", `{"global": {"batch_size": null}, "annotators": {}}`,
			"global.batch_size: expected an integer, got null"},
		{"a delay in a string", `{"global": {"request_delay_seconds": "2"}, "annotators": {}}`,
			`global.request_delay_seconds: expected a number, got "2"`},
		{"a model name that is a number", `{"global": {"model_name": 5}, "annotators": {}}`,
			"global.model_name: expected a string, got 5"},
		{"a quota pool that is a number", `{"annotators": {"1": {"quota_pool": 7}}}`,
			"annotators.1.quota_pool: expected a string, got 7"},
		{"a settings file that is an array", `[1]`,
			"settings.json must hold a JSON object, got [1]"},
		{"a long wrong value, which is cut short", `{"global": {"model_name": ["` + strings.Repeat("x", 100) + `"]}, "annotators": {}}`,
			`global.model_name: expected a string, got ["` + strings.Repeat("x", 58) + "…"},
	}
	runRejectCases(t, cases)
}

func TestIntegralNumbersWrittenAsDecimalsAreIntegers(t *testing.T) {
	cfg := mustParse(t, settingsWith(t, map[string]string{"batch_size": "10.0", "requests_per_day": "1e3"}, oneAnnotator), nil, noEnv)
	if cfg.Global.BatchSize != 10 || cfg.Global.RequestsPerDay != 1000 {
		t.Errorf("batch size %d, requests per day %d: want 10 and 1000", cfg.Global.BatchSize, cfg.Global.RequestsPerDay)
	}
}

func TestMissingAnnotatorsSectionIsAProblem(t *testing.T) {
	_, err := Parse([]byte(`{"global": {}}`), nil, noEnv)
	got := problemsOf(t, err)
	if len(got) != 1 || !strings.HasPrefix(got[0], "annotators: is missing") {
		t.Errorf("problems = %q, want one saying annotators is missing", got)
	}
}

func TestExplicitZeroIsKeptAndMissingTakesTheDefault(t *testing.T) {
	cases := []globalCase{
		{"an explicit max_retries of 0 is kept", map[string]string{"max_retries": "0"},
			func(g Global) bool { return g.MaxRetries == 0 }, ""},
		{"a missing max_retries defaults to 3", nil,
			func(g Global) bool { return g.MaxRetries == 3 }, ""},
		{"an explicit tokens_per_minute of 0 means no limit", map[string]string{"tokens_per_minute": "0"},
			func(g Global) bool { return g.TokensPerMinute == 0 }, ""},
		{"a missing batch_size defaults to 10", nil,
			func(g Global) bool { return g.BatchSize == 10 }, ""},
		{"an explicit batch_size of 0 is an error, not the default", map[string]string{"batch_size": "0"},
			nil, "global.batch_size: 0 is out of range (allowed 1..1000)"},
		{"an explicit request delay of 0 is an error, not the default", map[string]string{"request_delay_seconds": "0"},
			nil, "global.request_delay_seconds: 0 is out of range (allowed 0.1..60)"},
		{"an empty global section takes every default", nil,
			func(g Global) bool { return g == defaultGlobal() }, ""},
		{"an explicit empty dataset path is kept", map[string]string{"dataset_path": `""`},
			func(g Global) bool { return g.DatasetPath == "" }, ""},
	}
	runGlobalCases(t, cases)
}

func TestMissingDomainsAndDomainFieldsMeanDisabledWithTargetZero(t *testing.T) {
	cfg := mustParse(t, []byte(`{"annotators": {"1": {"urgency": {"target_count": 7}, "adjunct": {"enabled": true}}}}`), nil, noEnv)
	a, _ := cfg.Annotator("1")
	want := map[labels.Domain]DomainSettings{
		labels.Urgency: {Enabled: false, TargetCount: 7}, labels.Therapeutic: {}, labels.Intensity: {},
		labels.Adjunct: {Enabled: true, TargetCount: 0}, labels.Modality: {}, labels.Redressal: {},
	}
	if !reflect.DeepEqual(a.Domains, want) {
		t.Errorf("domains = %v, want %v", a.Domains, want)
	}
}

func TestAnnotatorsAreOrderedNumericallyWhenAllIDsAreIntegers(t *testing.T) {
	cases := []struct {
		name string
		ids  []string
		want []string
	}{
		{"integer IDs sort by value", []string{"10", "2", "1", "007"}, []string{"1", "2", "007", "10"}},
		{"integer IDs longer than any int still sort by value", []string{"99999999999999999999999", "3"}, []string{"3", "99999999999999999999999"}},
		{"mixed IDs sort lexically", []string{"b", "10", "a", "9"}, []string{"10", "9", "a", "b"}},
		{"an ID with a minus sign is not an integer", []string{"2", "-1", "10"}, []string{"-1", "10", "2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ann := map[string]any{}
			for _, id := range c.ids {
				ann[id] = map[string]any{}
			}
			doc, _ := json.Marshal(map[string]any{"annotators": ann})
			cfg := mustParse(t, doc, nil, noEnv)
			var got []string
			for _, a := range cfg.Annotators {
				got = append(got, a.ID)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("order = %v, want %v", got, c.want)
			}
		})
	}
}

func TestRunsListEveryEnabledPairInAnnotatorThenDomainOrder(t *testing.T) {
	cfg := mustParse(t, []byte(`{"annotators": {
		"10": {"redressal": {"enabled": true, "target_count": 3}, "urgency": {"enabled": true, "target_count": 0}},
		"2":  {"modality": {"enabled": true, "target_count": 5}, "therapeutic": {"enabled": false, "target_count": 9}},
		"3":  {"intensity": {"enabled": false, "target_count": 9}}
	}}`), nil, noEnv)
	want := []Run{
		{Annotator: "2", Domain: labels.Modality, TargetCount: 5},
		{Annotator: "10", Domain: labels.Urgency, TargetCount: 0},
		{Annotator: "10", Domain: labels.Redressal, TargetCount: 3},
	}
	if got := cfg.Runs(); !reflect.DeepEqual(got, want) {
		t.Errorf("Runs() = %+v\nwant     %+v", got, want)
	}
}

func TestAnnotatorLookupFindsOnlyConfiguredIDs(t *testing.T) {
	cfg := mustParse(t, []byte(`{"annotators": {"alpha": {}, "beta": {}}}`), nil, noEnv)
	if a, ok := cfg.Annotator("beta"); !ok || a.ID != "beta" {
		t.Errorf("Annotator(beta) = %+v, %v", a, ok)
	}
	if _, ok := cfg.Annotator("gamma"); ok {
		t.Error("Annotator(gamma) found an annotator that is not configured")
	}
}

func TestQuotaPoolDefaultsPerAnnotatorAndCanBeShared(t *testing.T) {
	cfg := mustParse(t, []byte(`{"annotators": {
		"1": {"quota_pool": "projA"}, "2": {"quota_pool": "projA"}, "3": {}
	}}`), nil, noEnv)
	want := map[string]string{"1": "projA", "2": "projA", "3": "annotator-3"}
	for id, pool := range want {
		if a, _ := cfg.Annotator(id); a.QuotaPool != pool {
			t.Errorf("annotator %s pool = %q, want %q", id, a.QuotaPool, pool)
		}
	}
}

func TestAnnotatorOverridesApplyOverTheGlobalSettings(t *testing.T) {
	settings := []byte(`{
		"global": {"provider": "openai", "model_name": "m-global", "base_url": "http://proxy.local/v1"},
		"annotators": {
			"1": {},
			"2": {"model_name": "m-two", "base_url": "https://other.example/v1"},
			"3": {"provider": "gemini"},
			"4": {"provider": "", "model_name": " ", "base_url": ""}
		}}`)
	cfg := mustParse(t, settings, nil, noEnv)
	type eff struct{ Provider, Model, BaseURL string }
	want := map[string]eff{
		"1": {"openai", "m-global", "http://proxy.local/v1"},
		"2": {"openai", "m-two", "https://other.example/v1"},
		// The global URL is the openai proxy, so a gemini annotator uses gemini's default.
		"3": {"gemini", "m-global", ""},
		// Blank overrides mean "use the global value".
		"4": {"openai", "m-global", "http://proxy.local/v1"},
	}
	for id, w := range want {
		a, _ := cfg.Annotator(id)
		if got := (eff{a.Provider, a.ModelName, a.BaseURL}); got != w {
			t.Errorf("annotator %s = %+v, want %+v", id, got, w)
		}
	}
}

func TestInvalidJSONIsReportedWithLineAndColumn(t *testing.T) {
	cases := []struct {
		name, settings   string
		line, col        int
		wantMsgSubstring string
	}{
		{"a trailing comma", "{\n  \"global\": {\n    \"batch_size\": 10,\n  }\n}", 4, 3, "invalid character '}'"},
		{"a truncated file", "{\"annotators\": {", 1, 16, "unexpected end of JSON input"},
		{"an empty file", "", 1, 1, "unexpected end of JSON input"},
		{"a column counted in characters, not bytes", "{\"é\": x}", 1, 7, "invalid character 'x'"},
	}
	for _, c := range cases {
		t.Run(c.name+" is located", func(t *testing.T) {
			_, err := Parse([]byte(c.settings), nil, noEnv)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("want a *SyntaxError, got %v", err)
			}
			if se.File != SettingsFile || se.Line != c.line || se.Column != c.col {
				t.Errorf("got %s line %d column %d, want %s line %d column %d", se.File, se.Line, se.Column, SettingsFile, c.line, c.col)
			}
			if !strings.Contains(err.Error(), c.wantMsgSubstring) {
				t.Errorf("error %q does not mention %q", err, c.wantMsgSubstring)
			}
		})
	}
}

func TestLoadReadsTheConfigDirectory(t *testing.T) {
	dir := t.TempDir()
	settings := `{"global": {"provider": "gemini"}, "annotators": {"7": {"urgency": {"enabled": true, "target_count": 1}}}}`
	if err := os.WriteFile(filepath.Join(dir, SettingsFile), []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, KeysFile), []byte(`{"annotator_7": "key-from-the-file-0007"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Options{Dir: dir, Getenv: noEnv})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if a, _ := cfg.Annotator("7"); a.APIKey.Reveal() != "key-from-the-file-0007" {
		t.Errorf("key = %v, want the one from the file", a.APIKey)
	}
}

// A keys file kept apart from the config (a mounted secret) is read instead of the one in the
// directory, and its errors name it.
func TestLoadReadsAKeysFileElsewhere(t *testing.T) {
	dir, secrets := t.TempDir(), t.TempDir()
	settings := `{"global": {"provider": "gemini"}, "annotators": {"7": {"urgency": {"enabled": true, "target_count": 1}}}}`
	if err := os.WriteFile(filepath.Join(dir, SettingsFile), []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, KeysFile), []byte(`{"annotator_7": "key-in-the-config-dir"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(secrets, "api_keys")
	if err := os.WriteFile(secret, []byte(`{"annotator_7": "key-from-the-secret"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Options{Dir: dir, Keys: secret, Getenv: noEnv})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if a, _ := cfg.Annotator("7"); a.APIKey.Reveal() != "key-from-the-secret" {
		t.Errorf("key = %v, want the secret's", a.APIKey)
	}
	if err := os.WriteFile(secret, []byte(`{`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(Options{Dir: dir, Keys: secret, Getenv: noEnv})
	var se *SyntaxError
	if !errors.As(err, &se) || se.File != secret {
		t.Errorf("want a syntax error naming %s, got %v", secret, err)
	}
}

func TestLoadNamesTheFilesInItsErrors(t *testing.T) {
	dir := t.TempDir()
	keysPath := filepath.Join(dir, KeysFile)
	if err := os.WriteFile(filepath.Join(dir, SettingsFile), []byte(`{"global": {"provider": "gemini"}, "annotators": {"1": {"urgency": {"enabled": true}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(Options{Dir: dir, Getenv: noEnv})
	want := `api_keys.annotator_1: annotator 1 uses provider gemini and has enabled domains but no API key: set "annotator_1" in ` + keysPath + ` or the MHA_API_KEY_1 environment variable`
	if got := problemsOf(t, err); !reflect.DeepEqual(got, []string{want}) {
		t.Errorf("problems = %q\nwant %q", got, want)
	}

	if err := os.WriteFile(filepath.Join(dir, SettingsFile), []byte(`{`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(Options{Dir: dir, Getenv: noEnv})
	var se *SyntaxError
	if !errors.As(err, &se) || se.File != filepath.Join(dir, SettingsFile) {
		t.Errorf("want a syntax error naming %s, got %v", filepath.Join(dir, SettingsFile), err)
	}
}

func TestLoadFailsWithoutASettingsFile(t *testing.T) {
	cfg, err := Load(Options{Dir: t.TempDir(), Getenv: noEnv})
	if cfg != nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load = %v, %v; want nil and a not-exist error", cfg, err)
	}
}

func TestPricesAreReadPerModel(t *testing.T) {
	cfg, err := Parse([]byte(`{"annotators": {}, "prices": {
		"gemini-2.5-flash": {"input_per_million": 0.3, "output_per_million": 2.5},
		"gpt-4o-mini": {"input_per_million": 0.15, "output_per_million": 0.6}}}`), nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Price{"gemini-2.5-flash": {InputPerMillion: 0.3, OutputPerMillion: 2.5}, "gpt-4o-mini": {InputPerMillion: 0.15, OutputPerMillion: 0.6}}
	if !reflect.DeepEqual(cfg.Prices, want) {
		t.Fatalf("prices = %+v; want %+v", cfg.Prices, want)
	}
	// 2 M input and 100 k output tokens of gemini-2.5-flash: 0.60 + 0.25 dollars.
	if got := cfg.Prices["gemini-2.5-flash"].Cost(2_000_000, 100_000, 0); math.Abs(got-0.85) > 1e-12 {
		t.Errorf("cost = %v; want 0.85", got)
	}
	// A cached-input price: 1 M of the 2 M input tokens cached at 0.075.
	cfg, err = Parse([]byte(`{"annotators": {}, "prices": {"f": {"input_per_million": 0.3, "output_per_million": 2.5, "cached_input_per_million": 0.075}}}`), nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Prices["f"].Cost(2_000_000, 100_000, 1_000_000); math.Abs(got-(0.3+0.075+0.25)) > 1e-12 {
		t.Errorf("cost with cached tokens = %v; want 0.625", got)
	}
}
