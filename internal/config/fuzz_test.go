package config

import (
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/labels"
)

// fuzzEnv gives annotator "2" a key from the environment, so both key sources are exercised.
func fuzzEnv(k string) string {
	if k == KeyEnvPrefix+"2" {
		return "fuzz-env-key-000002"
	}
	return ""
}

func FuzzParse(f *testing.F) {
	f.Add(readFile(f, "../../config/settings.json"), []byte(nil))
	seed := readFile(f, "testdata/seed_settings.json")
	f.Add(seed, []byte(nil))
	f.Add(seed, []byte(`{"annotator_1": "file-key-000001", "annotator_9": "x"}`))
	f.Add([]byte(`{"global": {"provider": "gemini"}, "annotators": {"1": {"urgency": {"enabled": true}}, "2": {"urgency": {"enabled": true}}}}`),
		[]byte(`{"annotator_1": "k"}`))
	for _, broken := range []string{
		`{`, `null`, `[]`, `{"global": []}`, `{"annotators": {"1": 5}}`,
		`{"annotators": {"1": {"urgency": {"enabled": true, "target_count": 2.5}}}}`,
		`{"global": {"request_timeout_seconds": 3600, "heartbeat_timeout_seconds": 3600}, "annotators": {}}`,
		`{"global": {"batch_size": 1e400, "base_url": "http://"}, "annotators": {"a.b": {"quota_pool": ""}}}`,
		`{"global": {"stream": 0, "stream_idle_timeout_seconds": 50, "thinking_budget": null, "safety_threshold": "X"}, "annotators": {}}`,
		`{"global": {"request_timeout_seconds": 5, "temperature": 2.5, "max_output_tokens": 0, "thinking_budget": -2}, "annotators": {}}`,
	} {
		f.Add([]byte(broken), []byte(`{"annotator_1": 1}`))
	}

	f.Fuzz(func(t *testing.T, settings, keys []byte) {
		cfg, err := Parse(settings, keys, fuzzEnv)
		_, again := Parse(settings, keys, fuzzEnv)
		if err != nil {
			checkError(t, err)
			if again == nil || again.Error() != err.Error() {
				t.Fatalf("errors differ between two parses of the same input:\n%v\n---\n%v", err, again)
			}
			return
		}
		if cfg == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		checkInvariants(t, cfg)
		// A config written back out in full must load to the same config.
		back, err := Parse(toSettings(t, cfg), nil, keysOf(cfg))
		if err != nil {
			t.Fatalf("the config written back does not load: %v", err)
		}
		if !reflect.DeepEqual(back, cfg) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", cfg, back)
		}
	})
}

func checkError(t *testing.T, err error) {
	var ve *ValidationError
	var se *SyntaxError
	switch {
	case errors.As(err, &ve):
		if len(ve.Problems) == 0 {
			t.Fatal("a ValidationError without problems")
		}
		for _, p := range ve.Problems {
			if p.Reason == "" || strings.Contains(p.String(), "\n") {
				t.Fatalf("problem %q is empty or spans lines", p)
			}
		}
		if n := strings.Count(err.Error(), "\n") + 1; n != len(ve.Problems) {
			t.Fatalf("Error() has %d lines for %d problems", n, len(ve.Problems))
		}
		if strings.Contains(err.Error(), "fuzz-env-key") {
			t.Fatalf("an error shows a key: %v", err)
		}
	case errors.As(err, &se):
		if se.Line < 1 || se.Column < 1 {
			t.Fatalf("syntax error at line %d column %d", se.Line, se.Column)
		}
	default:
		t.Fatalf("unexpected error type %T: %v", err, err)
	}
}

// checkInvariants re-validates a loaded config from the outside.
func checkInvariants(t *testing.T, cfg *Config) {
	g := cfg.Global
	ranges := []struct {
		name      string
		v, lo, hi float64
	}{
		{"request delay", g.RequestDelay.Seconds(), 0.1, 60},
		{"max retries", float64(g.MaxRetries), 0, 10},
		{"crash detection", g.CrashDetection.Minutes(), 1, 60},
		{"control check iterations", float64(g.ControlCheckIterations), 1, 100},
		{"control check seconds", float64(g.ControlCheckSeconds), 1, 300},
		{"batch size", float64(g.BatchSize), 1, 1000},
		{"heartbeat timeout", g.HeartbeatTimeout.Seconds(), 1, 3600},
		{"request timeout", g.RequestTimeout.Seconds(), 0.1, 3600},
		{"max restart attempts", float64(g.MaxRestartAttempts), 1, 100},
		{"requests per minute", float64(g.RequestsPerMinute), 1, 100000},
		{"requests per day", float64(g.RequestsPerDay), 1, 100000000},
		{"tokens per minute", float64(g.TokensPerMinute), 0, 1000000000},
		{"max concurrent activities", float64(g.MaxConcurrentActivities), 1, 1000},
		{"stream idle timeout", g.StreamIdleTimeout.Seconds(), 0.1, 3600},
		{"temperature", g.Temperature, 0, 2},
		{"max output tokens", float64(g.MaxOutputTokens), 1, 65536},
	}
	for _, r := range ranges {
		if r.v < r.lo || r.v > r.hi {
			t.Fatalf("%s %v is outside %v..%v", r.name, r.v, r.lo, r.hi)
		}
	}
	if g.RequestTimeout >= g.HeartbeatTimeout {
		t.Fatalf("request timeout %v is not below heartbeat timeout %v", g.RequestTimeout, g.HeartbeatTimeout)
	}
	if g.StreamIdleTimeout > g.RequestTimeout {
		t.Fatalf("stream idle timeout %v exceeds request timeout %v", g.StreamIdleTimeout, g.RequestTimeout)
	}
	if b := g.ThinkingBudget; b != nil && (*b < -1 || *b > 32768) {
		t.Fatalf("thinking budget %d is outside -1..32768", *b)
	}
	if !slices.Contains(safetyThresholds, g.SafetyThreshold) {
		t.Fatalf("unknown safety threshold %q", g.SafetyThreshold)
	}
	if strings.TrimSpace(g.ModelName) == "" {
		t.Fatal("empty model name")
	}
	checkProviderAndURL(t, g.Provider, g.BaseURL)

	ids := make([]string, len(cfg.Annotators))
	enabled := 0
	for i, a := range cfg.Annotators {
		ids[i] = a.ID
		if !annotatorIDPattern.MatchString(a.ID) || !quotaPoolPattern.MatchString(a.QuotaPool) {
			t.Fatalf("annotator %q has a bad ID or quota pool %q", a.ID, a.QuotaPool)
		}
		if strings.TrimSpace(a.ModelName) == "" {
			t.Fatalf("annotator %s has an empty model name", a.ID)
		}
		checkProviderAndURL(t, a.Provider, a.BaseURL)
		if len(a.Domains) != len(labels.Domains) {
			t.Fatalf("annotator %s has %d domains", a.ID, len(a.Domains))
		}
		anyEnabled := false
		for _, d := range labels.Domains {
			ds, ok := a.Domains[d]
			if !ok || ds.TargetCount < MinTargetCount || ds.TargetCount > MaxTargetCount {
				t.Fatalf("annotator %s domain %s: %+v", a.ID, d, ds)
			}
			if ds.Enabled {
				enabled++
				anyEnabled = true
			}
		}
		if anyEnabled && a.Provider != ProviderOffline && a.APIKey == "" {
			t.Fatalf("annotator %s needs a key and has none", a.ID)
		}
	}
	sorted := slices.Clone(ids)
	sortIDs(sorted)
	if !slices.Equal(ids, sorted) || len(slices.Compact(sorted)) != len(ids) {
		t.Fatalf("annotators are not in order or repeat: %v", ids)
	}
	runs := cfg.Runs()
	if len(runs) != enabled {
		t.Fatalf("%d runs for %d enabled pairs", len(runs), enabled)
	}
	for _, r := range runs {
		if r.TargetCount < MinTargetCount || r.TargetCount > MaxTargetCount {
			t.Fatalf("run %+v has a target out of range", r)
		}
	}
}

func checkProviderAndURL(t *testing.T, provider, baseURL string) {
	if !slices.Contains(providers, provider) {
		t.Fatalf("unknown provider %q", provider)
	}
	if baseURL == "" {
		return
	}
	if u, err := url.Parse(baseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		t.Fatalf("bad base URL %q", baseURL)
	}
}

// toSettings writes a config out as a settings file with every value explicit.
func toSettings(t *testing.T, cfg *Config) []byte {
	g := cfg.Global
	annotators := map[string]any{}
	for _, a := range cfg.Annotators {
		m := map[string]any{"quota_pool": a.QuotaPool, "model_name": a.ModelName, "provider": a.Provider, "base_url": a.BaseURL}
		for d, ds := range a.Domains {
			m[string(d)] = map[string]any{"enabled": ds.Enabled, "target_count": ds.TargetCount}
		}
		annotators[a.ID] = m
	}
	global := map[string]any{
		"model_name": g.ModelName, "request_delay_seconds": g.RequestDelay.Seconds(),
		"max_retries": g.MaxRetries, "crash_detection_minutes": g.CrashDetection.Minutes(),
		"control_check_iterations": g.ControlCheckIterations, "control_check_seconds": g.ControlCheckSeconds,
		"provider": g.Provider, "base_url": g.BaseURL, "batch_size": g.BatchSize,
		"heartbeat_timeout_seconds": g.HeartbeatTimeout.Seconds(), "request_timeout_seconds": g.RequestTimeout.Seconds(),
		"max_restart_attempts": g.MaxRestartAttempts, "requests_per_minute": g.RequestsPerMinute,
		"requests_per_day": g.RequestsPerDay, "tokens_per_minute": g.TokensPerMinute,
		"max_concurrent_activities": g.MaxConcurrentActivities, "dataset_path": g.DatasetPath,
		"offline_latency_seconds": g.OfflineLatency.Seconds(), "stream": g.Stream,
		"stream_idle_timeout_seconds": g.StreamIdleTimeout.Seconds(), "temperature": g.Temperature,
		"max_output_tokens": g.MaxOutputTokens, "safety_threshold": g.SafetyThreshold,
		"quota_day_zone": g.QuotaDayZone,
	}
	if g.ThinkingBudget != nil { // left out, it stays unset
		global["thinking_budget"] = *g.ThinkingBudget
	}
	doc, err := json.Marshal(map[string]any{"global": global, "annotators": annotators})
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// keysOf serves a config's keys as environment variables.
func keysOf(cfg *Config) func(string) string {
	return func(k string) string {
		id, ok := strings.CutPrefix(k, KeyEnvPrefix)
		if !ok {
			return ""
		}
		a, _ := cfg.Annotator(id)
		return a.APIKey.Reveal()
	}
}
