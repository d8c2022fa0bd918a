// Package config loads and validates config/settings.json and the annotators' API keys.
//
// The settings file keeps the shape of the Python system it replaces, so its users' files load
// unchanged; the fields added since all have defaults. Every problem is reported at once, with
// the setting's path, its value and what is allowed, and nothing starts on a bad config.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
)

// Provider names.
const (
	ProviderOffline = "offline"
	ProviderGemini  = "gemini"
	ProviderOpenAI  = "openai"
)

var providers = []string{ProviderOffline, ProviderGemini, ProviderOpenAI}

// safetyThresholds are the values of safety_threshold: Gemini's block thresholds, and "" for
// sending no safety settings at all (the API's defaults then apply).
var safetyThresholds = []string{"BLOCK_NONE", "BLOCK_ONLY_HIGH", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_LOW_AND_ABOVE", "OFF", ""}

// File names inside the config directory.
const (
	SettingsFile = "settings.json"
	KeysFile     = "api_keys.json"
)

// DefaultDir is the config directory used when Options.Dir is empty.
const DefaultDir = "config"

// KeyEnvPrefix + annotator ID names the environment variable holding that annotator's key.
const KeyEnvPrefix = "MHA_API_KEY_"

// Range of target_count per (annotator, domain).
const (
	MinTargetCount = 0
	MaxTargetCount = 100000
)

var (
	annotatorIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	quotaPoolPattern   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	digitsPattern      = regexp.MustCompile(`^[0-9]+$`)
)

// Config is a validated configuration.
type Config struct {
	Global     Global
	Annotators []Annotator // numeric ID order when all IDs are integers, else lexical
	// Prices are what each model costs, by model name, for cost reports and estimates.
	Prices map[string]Price
}

// Price is a model's price in US dollars per million tokens. CachedInputPerMillion, when set,
// is the price of input tokens served from the provider's prompt cache; nil prices them as any
// input token.
type Price struct {
	InputPerMillion       float64
	OutputPerMillion      float64
	CachedInputPerMillion *float64
}

// Cost is what tokens cost at p; cached is the part of input served from the cache.
func (p Price) Cost(input, output, cached int64) float64 {
	cachedPrice := p.InputPerMillion
	if p.CachedInputPerMillion != nil {
		cachedPrice = *p.CachedInputPerMillion
	}
	return (float64(input-cached)*p.InputPerMillion + float64(cached)*cachedPrice + float64(output)*p.OutputPerMillion) / 1e6
}

// Global holds the settings shared by all annotators.
type Global struct {
	ModelName    string
	RequestDelay time.Duration // pause between two requests of one run
	MaxRetries   int           // times a malformed reply is re-asked before it is recorded
	// CrashDetection is how long a silent run may go before it counts as crashed.
	CrashDetection time.Duration
	// ControlCheckIterations and ControlCheckSeconds are read and range-checked so seed files
	// load unchanged, but nothing uses them: the seed polled control files, while Temporal
	// signals reach a run as soon as they are sent.
	ControlCheckIterations int
	ControlCheckSeconds    int

	Provider string
	BaseURL  string // "" means the provider's default
	// BatchSize is how many samples one activity annotates.
	BatchSize int
	// HeartbeatTimeout bounds the silence of an annotate activity; RequestTimeout bounds one
	// LLM request and is always shorter, so a hung request fails before the heartbeat does.
	HeartbeatTimeout   time.Duration
	RequestTimeout     time.Duration
	MaxRestartAttempts int
	// MaxConsecutiveErrors samples in a row failing with the same non-transient error fail
	// the run: the request is wrong, not the samples.
	MaxConsecutiveErrors int
	// MaxRetryBackoff caps the wait between tries while a provider fails transiently.
	MaxRetryBackoff         time.Duration
	RequestsPerMinute       int
	RequestsPerDay          int
	TokensPerMinute         int // 0 means no limit
	MaxConcurrentActivities int
	DatasetPath             string // as written; relative paths are relative to the working dir
	// OfflineLatency is a pause the offline annotator takes per sample, so demos and fault
	// tests can watch runs progress; real providers ignore it.
	OfflineLatency time.Duration

	// Stream asks the real providers for streamed replies: every chunk shows the call is
	// alive, and a stream silent for StreamIdleTimeout (at most RequestTimeout) is cut long
	// before the request timeout would end it.
	Stream            bool
	StreamIdleTimeout time.Duration
	Temperature       float64
	MaxOutputTokens   int
	// ThinkingBudget is Gemini's thinkingConfig.thinkingBudget; nil sends none, which models
	// without thinking require. 0 turns thinking off, -1 lets the model decide.
	ThinkingBudget *int
	// SafetyThreshold is sent to Gemini for each harm category; "" sends none. Mental-health
	// texts trip the default filters, hence BLOCK_NONE by default.
	SafetyThreshold string
	// QuotaDayZone is the IANA time zone whose midnight resets requests_per_day (Gemini's is
	// Pacific time).
	QuotaDayZone string
	// Mode is every annotator's default: ModeSync (a call per sample) or ModeBatch (chunks of
	// BatchChunkSize samples as provider batches, BatchMaxChunks of them at the provider at
	// once).
	Mode           string
	BatchChunkSize int
	BatchMaxChunks int
	// BatchMaxJobs and BatchMaxEnqueuedTokens are a quota pool's batch limits: jobs at the
	// provider at once and their input tokens; 0 means none.
	BatchMaxJobs           int
	BatchMaxEnqueuedTokens int
}

// Annotator is one API key + model, with its effective settings (global values applied).
type Annotator struct {
	ID        string
	QuotaPool string // annotators in one pool share one request budget
	ModelName string
	Provider  string
	BaseURL   string
	Mode      string // contract.ModeSync or contract.ModeBatch
	APIKey    Secret
	Domains   map[labels.Domain]DomainSettings // holds every domain
	// The limits of the annotator's quota pool: the global ones unless the annotator sets
	// its own; annotators of one pool must agree.
	RequestsPerMinute, RequestsPerDay, TokensPerMinute int
	BatchMaxJobs, BatchMaxEnqueuedTokens               int
}

// QuotaLimits are the limits of a's quota pool.
func (a Annotator) QuotaLimits(g Global) contract.QuotaLimits {
	return contract.QuotaLimits{RequestsPerMinute: a.RequestsPerMinute, RequestsPerDay: a.RequestsPerDay,
		TokensPerMinute: a.TokensPerMinute, DayZone: g.QuotaDayZone, MaxBatches: a.BatchMaxJobs, MaxEnqueuedTokens: a.BatchMaxEnqueuedTokens}
}

// DomainSettings is one (annotator, domain) pair's settings.
type DomainSettings struct {
	Enabled     bool
	TargetCount int
}

// Run is one enabled (annotator, domain) pair.
type Run struct {
	Annotator   string
	Domain      labels.Domain
	TargetCount int
}

// Options says where Load reads from.
type Options struct {
	Dir    string              // config directory; "" means DefaultDir
	Keys   string              // API keys file; "" means Dir/api_keys.json
	Getenv func(string) string // nil means os.Getenv
}

// Load reads Dir/settings.json and, if present, Dir/api_keys.json, and validates them. It
// returns a *SyntaxError for a file that is not JSON, a *ValidationError listing every problem
// for a bad config, or another error when a file cannot be read.
func Load(opts Options) (*Config, error) {
	dir := opts.Dir
	if dir == "" {
		dir = DefaultDir
	}
	settingsPath := filepath.Join(dir, SettingsFile)
	settings, err := os.ReadFile(settingsPath)
	if err != nil {
		return nil, fmt.Errorf("reading settings: %w", err)
	}
	keysPath := opts.Keys
	if keysPath == "" {
		keysPath = filepath.Join(dir, KeysFile)
	}
	keys, err := os.ReadFile(keysPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading API keys: %w", err)
	}
	return parse(settings, keys, opts.Getenv, settingsPath, keysPath)
}

// Parse validates the contents of settings.json and of api_keys.json (nil or empty when there
// is no such file). getenv nil means os.Getenv. Errors are as for Load.
func Parse(settings, keysFile []byte, getenv func(string) string) (*Config, error) {
	return parse(settings, keysFile, getenv, SettingsFile, KeysFile)
}

func parse(settings, keysFile []byte, getenv func(string) string, settingsName, keysName string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if err := checkSyntax(settingsName, settings, true); err != nil {
		return nil, err
	}
	hasKeys := len(bytes.TrimSpace(keysFile)) > 0
	if hasKeys {
		if err := checkSyntax(keysName, keysFile, false); err != nil {
			return nil, err
		}
	}

	var probs problems
	cfg := &Config{Global: defaultGlobal()}
	if kindOf(settings) != '{' {
		probs.add("", nil, "%s must hold a JSON object, got %s", settingsName, display(settings))
	} else if root, ok := decodeObject("", settings, &probs); ok {
		if raw, ok := root.take("global"); ok {
			cfg.Global = decodeGlobal(raw, &probs)
		}
		if raw, ok := root.take("prices"); ok {
			cfg.Prices = decodePrices(raw, &probs)
		}
		if raw, ok := root.take("annotators"); ok {
			cfg.Annotators = decodeAnnotators(raw, cfg.Global, &probs)
		} else {
			probs.add("annotators", nil, "is missing: list the annotators, e.g. {\"1\": {\"urgency\": {\"enabled\": true, \"target_count\": 10}}}")
		}
		root.unknown([]string{"global", "annotators", "prices"})
	}
	if hasKeys {
		applyKeyFile(cfg.Annotators, keysFile, &probs)
	}
	for i := range cfg.Annotators {
		a := &cfg.Annotators[i]
		if env := strings.TrimSpace(getenv(KeyEnvPrefix + a.ID)); env != "" {
			a.APIKey = Secret(env)
		}
		if a.APIKey == "" && a.Provider != ProviderOffline && a.enabled() {
			probs.add(KeyPath(a.ID), nil, "annotator %s uses provider %s and has enabled domains but no API key: set %q in %s or the %s environment variable",
				a.ID, a.Provider, KeyName(a.ID), keysName, KeyEnvPrefix+a.ID)
		}
	}
	if len(probs) > 0 {
		return nil, &ValidationError{Problems: probs}
	}
	return cfg, nil
}

// checkSyntax turns invalid JSON into a SyntaxError with line and column.
func checkSyntax(name string, data []byte, describe bool) error {
	// A RawMessage target checks syntax only, so a number too big for float64 is left to
	// the range checks.
	var raw json.RawMessage
	err := json.Unmarshal(data, &raw)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		msg := ""
		if describe {
			msg = se.Error()
		}
		return newSyntaxError(name, data, se.Offset, msg)
	}
	return err
}

func defaultGlobal() Global {
	return Global{
		ModelName:               "gemma-3-27b-it",
		RequestDelay:            seconds(2.0),
		MaxRetries:              3,
		CrashDetection:          minutes(5.0),
		ControlCheckIterations:  5,
		ControlCheckSeconds:     10,
		Provider:                ProviderOffline,
		BatchSize:               10,
		HeartbeatTimeout:        seconds(60),
		RequestTimeout:          seconds(45),
		MaxRestartAttempts:      3,
		MaxConsecutiveErrors:    5,
		MaxRetryBackoff:         seconds(300),
		RequestsPerMinute:       15,
		RequestsPerDay:          1500,
		TokensPerMinute:         0,
		MaxConcurrentActivities: 10,
		DatasetPath:             "datasets/sample_students.csv",
		OfflineLatency:          0,
		Stream:                  true,
		StreamIdleTimeout:       seconds(20),
		Temperature:             0,
		MaxOutputTokens:         1024,
		ThinkingBudget:          nil,
		SafetyThreshold:         "BLOCK_NONE",
		QuotaDayZone:            "America/Los_Angeles",
		Mode:                    contract.ModeSync,
		BatchChunkSize:          500,
		BatchMaxChunks:          2,
	}
}

var globalFields = []string{
	"model_name", "request_delay_seconds", "max_retries", "crash_detection_minutes",
	"control_check_iterations", "control_check_seconds", "provider", "base_url", "batch_size",
	"heartbeat_timeout_seconds", "request_timeout_seconds", "max_restart_attempts",
	"max_consecutive_errors", "max_retry_backoff_seconds",
	"requests_per_minute", "requests_per_day", "tokens_per_minute", "max_concurrent_activities",
	"dataset_path", "offline_latency_seconds", "stream", "stream_idle_timeout_seconds",
	"temperature", "max_output_tokens", "thinking_budget", "safety_threshold", "quota_day_zone",
	"mode", "batch_chunk_size", "batch_max_chunks", "batch_max_jobs", "batch_max_enqueued_tokens",
}

func decodeGlobal(raw json.RawMessage, probs *problems) Global {
	g := defaultGlobal()
	o, ok := decodeObject("global", raw, probs)
	if !ok {
		return g
	}
	g.ModelName = o.nonEmpty("model_name", g.ModelName)
	g.RequestDelay = seconds(o.number("request_delay_seconds", 0.1, 60, g.RequestDelay.Seconds()))
	g.MaxRetries = o.integer("max_retries", 0, 10, g.MaxRetries)
	g.CrashDetection = minutes(o.number("crash_detection_minutes", 1, 60, g.CrashDetection.Minutes()))
	g.ControlCheckIterations = o.integer("control_check_iterations", 1, 100, g.ControlCheckIterations)
	g.ControlCheckSeconds = o.integer("control_check_seconds", 1, 300, g.ControlCheckSeconds)
	if s, ok := o.str("provider"); ok && o.checkProvider("provider", s) {
		g.Provider = s
	}
	g.BaseURL, _ = o.baseURL("base_url")
	g.BatchSize = o.integer("batch_size", 1, 1000, g.BatchSize)
	g.HeartbeatTimeout = seconds(o.number("heartbeat_timeout_seconds", 1, 3600, g.HeartbeatTimeout.Seconds()))
	g.RequestTimeout = seconds(o.number("request_timeout_seconds", 0.1, 3600, g.RequestTimeout.Seconds()))
	g.MaxRestartAttempts = o.integer("max_restart_attempts", 1, 100, g.MaxRestartAttempts)
	g.MaxConsecutiveErrors = o.integer("max_consecutive_errors", 1, 100000, g.MaxConsecutiveErrors)
	g.MaxRetryBackoff = seconds(o.number("max_retry_backoff_seconds", 1, 86400, g.MaxRetryBackoff.Seconds()))
	g.RequestsPerMinute = o.integer("requests_per_minute", 1, 100000, g.RequestsPerMinute)
	g.RequestsPerDay = o.integer("requests_per_day", 1, 100000000, g.RequestsPerDay)
	g.TokensPerMinute = o.integer("tokens_per_minute", 0, 1000000000, g.TokensPerMinute)
	g.MaxConcurrentActivities = o.integer("max_concurrent_activities", 1, 1000, g.MaxConcurrentActivities)
	if s, ok := o.str("dataset_path"); ok {
		g.DatasetPath = s
	}
	g.OfflineLatency = seconds(o.number("offline_latency_seconds", 0, 60, g.OfflineLatency.Seconds()))
	g.Stream = o.boolean("stream", g.Stream)
	// Left out, the idle timeout shrinks to a short request timeout, so files written before
	// it existed still load.
	_, idleGiven := o.fields["stream_idle_timeout_seconds"]
	g.StreamIdleTimeout = seconds(o.number("stream_idle_timeout_seconds", 0.1, 3600, g.StreamIdleTimeout.Seconds()))
	if !idleGiven {
		g.StreamIdleTimeout = min(g.StreamIdleTimeout, g.RequestTimeout)
	}
	g.Temperature = o.number("temperature", 0, 2, g.Temperature)
	g.MaxOutputTokens = o.integer("max_output_tokens", 1, 65536, g.MaxOutputTokens)
	g.ThinkingBudget = o.optionalInteger("thinking_budget", -1, 32768)
	g.SafetyThreshold = o.choice("safety_threshold", safetyThresholds, g.SafetyThreshold)
	if zone, ok := o.str("quota_day_zone"); ok {
		if _, err := contract.LoadZone(zone); err != nil || zone == "" {
			o.fail("quota_day_zone", zone, "%q is not an IANA time zone (such as America/Los_Angeles or UTC)", zone)
		} else {
			g.QuotaDayZone = zone
		}
	}
	g.Mode = o.choice("mode", modes, g.Mode)
	// Gemini takes inline batches up to 20 MB and files up to 2 GB; OpenAI 50 000 lines.
	g.BatchChunkSize = o.integer("batch_chunk_size", 1, 50000, g.BatchChunkSize)
	g.BatchMaxChunks = o.integer("batch_max_chunks", 1, 100, g.BatchMaxChunks)
	g.BatchMaxJobs = o.integer("batch_max_jobs", 0, 100000, g.BatchMaxJobs)
	g.BatchMaxEnqueuedTokens = o.integer("batch_max_enqueued_tokens", 0, 2000000000, g.BatchMaxEnqueuedTokens)
	// Compared only when both values are good, so one mistake is not reported twice.
	if !o.bad["request_timeout_seconds"] && !o.bad["heartbeat_timeout_seconds"] && g.RequestTimeout >= g.HeartbeatTimeout {
		req, hb := g.RequestTimeout.Seconds(), g.HeartbeatTimeout.Seconds()
		o.fail("request_timeout_seconds", req, "%s must be below global.heartbeat_timeout_seconds (%s)", formatFloat(req), formatFloat(hb))
	}
	if !o.bad["stream_idle_timeout_seconds"] && !o.bad["request_timeout_seconds"] && g.StreamIdleTimeout > g.RequestTimeout {
		idle, req := g.StreamIdleTimeout.Seconds(), g.RequestTimeout.Seconds()
		o.fail("stream_idle_timeout_seconds", idle, "%s must not exceed global.request_timeout_seconds (%s)", formatFloat(idle), formatFloat(req))
	}
	o.unknown(globalFields)
	return g
}

var annotatorFields = []string{"quota_pool", "model_name", "provider", "base_url", "mode", "requests_per_minute", "requests_per_day", "tokens_per_minute",
	"batch_max_jobs", "batch_max_enqueued_tokens"}

// modes are the annotation modes.
var modes = []string{contract.ModeSync, contract.ModeBatch}

// maxPrice bounds a price per million tokens: far above any model's, low enough to catch a
// price per token written as per million by mistake the other way round.
const maxPrice = 10000

// decodePrices reads {"model": {"input_per_million": 0.3, "output_per_million": 2.5}}.
func decodePrices(raw json.RawMessage, probs *problems) map[string]Price {
	o, ok := decodeObject("prices", raw, probs)
	if !ok {
		return nil
	}
	out := map[string]Price{}
	models := make([]string, 0, len(o.fields))
	for model := range o.fields {
		models = append(models, model)
	}
	slices.Sort(models) // problems in a stable order
	for _, model := range models {
		raw, _ := o.take(model)
		if strings.TrimSpace(model) == "" {
			probs.add(o.fieldPath(model), model, "a price needs a model name")
			continue
		}
		p, ok := decodeObject(o.fieldPath(model), raw, probs)
		if !ok {
			continue
		}
		for _, name := range []string{"input_per_million", "output_per_million"} {
			if _, given := p.fields[name]; !given {
				p.fail(name, nil, "is missing: the price in US dollars per million %s tokens", strings.TrimSuffix(name, "_per_million"))
			}
		}
		price := Price{
			InputPerMillion:  p.number("input_per_million", 0, maxPrice, 0),
			OutputPerMillion: p.number("output_per_million", 0, maxPrice, 0),
		}
		if _, given := p.fields["cached_input_per_million"]; given {
			v := p.number("cached_input_per_million", 0, maxPrice, 0)
			price.CachedInputPerMillion = &v
		}
		out[model] = price
		p.unknown([]string{"input_per_million", "output_per_million", "cached_input_per_million"})
	}
	return out
}

func decodeAnnotators(raw json.RawMessage, g Global, probs *problems) []Annotator {
	o, ok := decodeObject("annotators", raw, probs)
	if !ok {
		return nil
	}
	ids := make([]string, 0, len(o.fields))
	for id := range o.fields {
		ids = append(ids, id)
	}
	sortIDs(ids)
	out := make([]Annotator, 0, len(ids))
	pools := map[string]Annotator{} // the first annotator of each pool
	for _, id := range ids {
		raw, _ := o.take(id)
		if !annotatorIDPattern.MatchString(id) {
			probs.add(o.fieldPath(id), id, "%q is not a valid annotator ID (want 1 to 32 of A-Z, a-z, 0-9, _ and -)", id)
		}
		a, ok := decodeAnnotator(o.fieldPath(id), id, raw, g, probs)
		if !ok {
			continue
		}
		out = append(out, a)
		first, seen := pools[a.QuotaPool]
		if !seen {
			pools[a.QuotaPool] = a
			continue
		}
		// One pool is one budget: its annotators must state the same limits.
		for _, l := range []struct {
			field     string
			got, want int
		}{{"requests_per_minute", a.RequestsPerMinute, first.RequestsPerMinute}, {"requests_per_day", a.RequestsPerDay, first.RequestsPerDay},
			{"tokens_per_minute", a.TokensPerMinute, first.TokensPerMinute}} {
			if l.got != l.want {
				probs.add(o.fieldPath(id)+"."+l.field, l.got, "%d differs from %d of annotator %s, which shares quota pool %q: one pool has one set of limits",
					l.got, l.want, first.ID, a.QuotaPool)
			}
		}
	}
	return out
}

// decodeAnnotator reads one annotator. The overrides model_name, provider and base_url fall
// back to the global values when missing or blank. base_url falls back only while the provider
// is the global one: the global URL belongs to the global provider.
func decodeAnnotator(path, id string, raw json.RawMessage, g Global, probs *problems) (Annotator, bool) {
	o, ok := decodeObject(path, raw, probs)
	if !ok {
		return Annotator{}, false
	}
	a := Annotator{ID: id, Domains: make(map[labels.Domain]DomainSettings, len(labels.Domains))}
	allowed := make([]string, 0, len(labels.Domains)+len(annotatorFields))
	for _, d := range labels.Domains {
		allowed = append(allowed, string(d))
		raw, ok := o.take(string(d))
		if !ok {
			a.Domains[d] = DomainSettings{}
			continue
		}
		do, ok := decodeObject(o.fieldPath(string(d)), raw, probs)
		if !ok {
			continue
		}
		a.Domains[d] = DomainSettings{
			Enabled:     do.boolean("enabled", false),
			TargetCount: do.integer("target_count", MinTargetCount, MaxTargetCount, 0),
		}
		do.unknown([]string{"enabled", "target_count"})
	}
	a.QuotaPool = o.matching("quota_pool", quotaPoolPattern, "quota pool name (want 1 to 64 of A-Z, a-z, 0-9, _, . and -)", "annotator-"+id)
	a.ModelName = g.ModelName
	if s, ok := o.str("model_name"); ok && strings.TrimSpace(s) != "" {
		a.ModelName = s
	}
	a.Provider = g.Provider
	if s, ok := o.str("provider"); ok && s != "" && o.checkProvider("provider", s) {
		a.Provider = s
	}
	if a.Provider == g.Provider {
		a.BaseURL = g.BaseURL
	}
	if s, ok := o.baseURL("base_url"); ok && s != "" {
		a.BaseURL = s
	}
	a.Mode = o.choice("mode", modes, g.Mode)
	if a.Mode == contract.ModeBatch && a.Provider == ProviderOffline && !o.bad["mode"] {
		o.fail("mode", a.Mode, "the offline annotator has no batch mode (providers gemini and openai have)")
	}
	// A key's own tier (a paid key beside free ones) overrides the global limits.
	a.RequestsPerMinute = o.integer("requests_per_minute", 1, 100000, g.RequestsPerMinute)
	a.RequestsPerDay = o.integer("requests_per_day", 1, 100000000, g.RequestsPerDay)
	a.TokensPerMinute = o.integer("tokens_per_minute", 0, 1000000000, g.TokensPerMinute)
	a.BatchMaxJobs = o.integer("batch_max_jobs", 0, 100000, g.BatchMaxJobs)
	a.BatchMaxEnqueuedTokens = o.integer("batch_max_enqueued_tokens", 0, 2000000000, g.BatchMaxEnqueuedTokens)
	o.unknown(append(allowed, annotatorFields...))
	return a, true
}

func (a *Annotator) enabled() bool {
	for _, ds := range a.Domains {
		if ds.Enabled {
			return true
		}
	}
	return false
}

// applyKeyFile sets keys from api_keys.json. Entries for unknown annotators, and entries that
// are not keys at all, are ignored: the file is the seed's, and may hold old annotators.
func applyKeyFile(annotators []Annotator, data []byte, probs *problems) {
	var entries map[string]json.RawMessage
	if kindOf(data) != '{' || json.Unmarshal(data, &entries) != nil {
		probs.add("api_keys", nil, "expected an object like {\"annotator_1\": \"...\"}")
		return
	}
	for i := range annotators {
		a := &annotators[i]
		raw, ok := entries[KeyName(a.ID)]
		if !ok || kindOf(raw) == 'n' { // null is how the seed's API stored a deleted key
			continue
		}
		var key string
		if kindOf(raw) != '"' || json.Unmarshal(raw, &key) != nil {
			// The value is left out: it may be a mistyped key.
			probs.add(KeyPath(a.ID), nil, "expected a string")
			continue
		}
		a.APIKey = Secret(strings.TrimSpace(key))
	}
}

// KeyName is the entry of api_keys.json that holds annotator id's key.
func KeyName(id string) string { return "annotator_" + id }

// KeyPath is the Problem.Path of annotator id's key.
func KeyPath(id string) string { return joinPath("api_keys", KeyName(id)) }

// sortIDs orders IDs numerically when all are integers, else lexically.
func sortIDs(ids []string) {
	numeric := true
	for _, id := range ids {
		numeric = numeric && digitsPattern.MatchString(id)
	}
	if !numeric {
		slices.Sort(ids)
		return
	}
	// Compare as digit strings, so no ID is too long to order.
	slices.SortFunc(ids, func(a, b string) int {
		ta, tb := strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(ta) != len(tb) {
			return len(ta) - len(tb)
		}
		if c := strings.Compare(ta, tb); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
}

// seconds and minutes round to the nanosecond, so 0.3 s is 300ms and not a hair below.
func seconds(s float64) time.Duration { return time.Duration(math.Round(s * float64(time.Second))) }
func minutes(m float64) time.Duration { return time.Duration(math.Round(m * float64(time.Minute))) }

// Runs lists every enabled (annotator, domain) pair, in annotator then domain order.
func (c *Config) Runs() []Run {
	var runs []Run
	for _, a := range c.Annotators {
		for _, d := range labels.Domains {
			if ds := a.Domains[d]; ds.Enabled {
				runs = append(runs, Run{Annotator: a.ID, Domain: d, TargetCount: ds.TargetCount})
			}
		}
	}
	return runs
}

// Annotator returns the annotator with the given ID.
func (c *Config) Annotator(id string) (Annotator, bool) {
	for _, a := range c.Annotators {
		if a.ID == id {
			return a, true
		}
	}
	return Annotator{}, false
}
