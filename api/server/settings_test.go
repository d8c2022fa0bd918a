package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/danielgtaylor/huma/v2"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
)

// configFixture is a server over a temporary config directory (settings.json copied from the
// repository's config/) and a real SQLite store, without Temporal. Every reply and, at the
// end, every log line is checked for the secrets the test registered.
type configFixture struct {
	t       *testing.T
	dir     string
	srv     *Server
	st      store.Store
	env     map[string]string
	logs    *syncBuffer
	secrets []string
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newConfigFixture(t *testing.T, opts ...func(*Options)) *configFixture {
	t.Helper()
	settings, err := os.ReadFile(filepath.Join("..", "..", "config", config.SettingsFile))
	if err != nil {
		t.Fatal(err)
	}
	f := &configFixture{t: t, dir: t.TempDir(), env: map[string]string{}, logs: &syncBuffer{}}
	f.writeFile(config.SettingsFile, string(settings))
	f.st, err = store.Open(t.Context(), filepath.Join(t.TempDir(), "mha.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.st.Close() })
	o := Options{ConfigDir: f.dir, Store: f.st, Getenv: func(k string) string { return f.env[k] },
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, opt := range opts {
		opt(&o)
	}
	f.srv = New(o)
	t.Cleanup(func() {
		for _, s := range f.secrets {
			if strings.Contains(f.logs.String(), s) {
				t.Errorf("a log line holds the key %q:\n%s", s, f.logs.String())
			}
		}
	})
	return f
}

// secret registers a key that must never appear in a reply or a log line.
func (f *configFixture) secret(key string) string {
	f.secrets = append(f.secrets, key)
	return key
}

func (f *configFixture) path(name string) string { return filepath.Join(f.dir, name) }

func (f *configFixture) writeFile(name, content string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(f.path(name)), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(f.path(name), []byte(content), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

func (f *configFixture) readFile(name string) string {
	f.t.Helper()
	b, err := os.ReadFile(f.path(name))
	if err != nil && !os.IsNotExist(err) {
		f.t.Fatal(err)
	}
	return string(b)
}

// send makes a request with a raw body.
func (f *configFixture) send(method, target, contentType string, body io.Reader) *httptest.ResponseRecorder {
	f.t.Helper()
	req := httptest.NewRequest(method, target, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return f.serve(req)
}

func (f *configFixture) serve(req *http.Request) *httptest.ResponseRecorder {
	f.t.Helper()
	rec := httptest.NewRecorder()
	f.srv.ServeHTTP(rec, req)
	for _, s := range f.secrets {
		if strings.Contains(rec.Body.String(), s) {
			f.t.Errorf("%s %s: the reply holds the key %q:\n%s", req.Method, req.URL, s, rec.Body.String())
		}
	}
	return rec
}

// call sends body as JSON (a string is sent as it is) and expects status.
func (f *configFixture) call(method, target string, body any, status int) *httptest.ResponseRecorder {
	f.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	ct := ""
	if r != nil {
		ct = "application/json"
	}
	rec := f.send(method, target, ct, r)
	if rec.Code != status {
		f.t.Fatalf("%s %s: status %d, want %d:\n%s", method, target, rec.Code, status, rec.Body.String())
	}
	return rec
}

// decodeInto decodes a JSON reply.
func decodeInto[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decoding %s: %v", rec.Body.String(), err)
	}
	return v
}

// wantProblem checks a problem reply for an error at location whose message holds each of msgs.
func wantProblem(t *testing.T, rec *httptest.ResponseRecorder, location string, msgs ...string) huma.ErrorModel {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("content type %q, want application/problem+json", ct)
	}
	p := decodeInto[huma.ErrorModel](t, rec)
	for _, e := range p.Errors {
		if e.Location != location {
			continue
		}
		ok := true
		for _, m := range msgs {
			ok = ok && strings.Contains(e.Message, m)
		}
		if ok {
			return p
		}
	}
	t.Fatalf("no error at %s with %q in:\n%s", location, msgs, rec.Body.String())
	return p
}

// unchanged fails when the file changed since before was read.
func (f *configFixture) unchanged(name, before string) {
	f.t.Helper()
	if got := f.readFile(name); got != before {
		f.t.Fatalf("%s changed:\n%s", name, got)
	}
}

func (f *configFixture) load() *config.Config {
	f.t.Helper()
	cfg, err := config.Load(config.Options{Dir: f.dir, Getenv: func(k string) string { return f.env[k] }})
	if err != nil {
		f.t.Fatalf("the config on disk does not load: %v", err)
	}
	return cfg
}

// noTempFiles fails when a write left a temporary file behind.
func (f *configFixture) noTempFiles() {
	f.t.Helper()
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			f.t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestGetConfigShowsEffectiveSettingsAndMaskedKeys(t *testing.T) {
	f := newConfigFixture(t)
	long := f.secret("AIzaSy-annotator-one-key-7f3a")
	short := f.secret("sk-short")
	fromEnv := f.secret("env-key-for-annotator-three-99zz")
	f.writeFile(config.KeysFile, fmt.Sprintf(`{"annotator_1": %q, "annotator_2": %q}`, long, short))
	f.env[config.KeyEnvPrefix+"3"] = fromEnv

	got := decodeInto[ConfigView](t, f.call(http.MethodGet, "/api/config", nil, http.StatusOK))
	if g := got.Global; g.BatchSize != 10 || g.Provider != "offline" || g.RequestTimeoutSeconds != 45 || g.OfflineLatencySeconds != 0.2 ||
		g.ThinkingBudget != nil || g.MaxConsecutiveErrors != 5 || g.QuotaDayZone != "America/Los_Angeles" {
		t.Errorf("global = %+v", g)
	}
	if len(got.Annotators) != 5 {
		t.Fatalf("annotators: %+v", got.Annotators)
	}
	for id, want := range map[string]struct {
		key     string
		fromEnv bool
	}{"1": {"****7f3a", false}, "2": {"****", false}, "3": {"****99zz", true}, "4": {"", false}} {
		a := got.Annotators[id]
		if a.Key != want.key || a.KeyFromEnv != want.fromEnv {
			t.Errorf("annotator %s: key %q (from env %v), want %q (%v)", id, a.Key, a.KeyFromEnv, want.key, want.fromEnv)
		}
	}
	a := got.Annotators["1"]
	if a.Provider != "offline" || a.Model != "gemma-3-27b-it" || a.QuotaPool != "annotator-1" || a.RequestsPerMinute != 15 ||
		len(a.Domains) != 6 || a.Domains["urgency"] != (DomainSetting{Enabled: true, TargetCount: 60}) {
		t.Errorf("annotator 1 = %+v", a)
	}
	raw := decodeInto[map[string]map[string]any](t, f.call(http.MethodGet, "/api/config", nil, http.StatusOK))
	if v, ok := raw["global"]["thinking_budget"]; !ok || v != nil {
		t.Errorf("thinking_budget should be shown as null, got %v (present %v)", v, ok)
	}
}

func TestGetConfigAnswers503ForABrokenFile(t *testing.T) {
	f := newConfigFixture(t)
	f.writeFile(config.SettingsFile, `{"global": {"batch_size": 0}, "annotators": {"1": {}}}`)
	rec := f.call(http.MethodGet, "/api/config", nil, http.StatusServiceUnavailable)
	if !strings.Contains(rec.Body.String(), "global.batch_size") {
		t.Errorf("the reason should name the setting: %s", rec.Body.String())
	}
	f.writeFile(config.SettingsFile, `{"global": `)
	before := f.readFile(config.SettingsFile)
	f.call(http.MethodPatch, "/api/config/global", `{"batch_size": 5}`, http.StatusServiceUnavailable)
	f.unchanged(config.SettingsFile, before)
}

func TestPatchGlobalWritesTheFileAtomicallyKeepingItsShape(t *testing.T) {
	f := newConfigFixture(t)
	if err := os.Chmod(f.path(config.SettingsFile), 0o640); err != nil {
		t.Fatal(err)
	}
	before := f.readFile(config.SettingsFile)
	rec := f.call(http.MethodPatch, "/api/config/global", `{"batch_size": 20, "temperature": 0.5, "thinking_budget": 0, "base_url": "https://proxy.example/v1?a=1&b=2"}`, http.StatusOK)
	got := decodeInto[ConfigView](t, rec)
	if got.Global.BatchSize != 20 || got.Global.Temperature != 0.5 || got.Global.ThinkingBudget == nil || *got.Global.ThinkingBudget != 0 {
		t.Errorf("reply global = %+v", got.Global)
	}
	cfg := f.load()
	if cfg.Global.BatchSize != 20 || cfg.Global.Temperature != 0.5 || cfg.Global.BaseURL != "https://proxy.example/v1?a=1&b=2" {
		t.Errorf("loaded global = %+v", cfg.Global)
	}
	after := f.readFile(config.SettingsFile)
	// Only the changed lines differ: order, layout and the untouched values stay as they were.
	for _, want := range []string{
		"{\n  \"global\": {\n    \"model_name\": \"gemma-3-27b-it\",\n    \"request_delay_seconds\": 2.0,",
		"\n    \"batch_size\": 20,\n", "\n    \"temperature\": 0.5,\n", "\n    \"thinking_budget\": 0,\n",
		`"base_url": "https://proxy.example/v1?a=1&b=2"`,
		"\n    \"1\": {\n      \"urgency\": {\n        \"enabled\": true,\n        \"target_count\": 60\n      },",
	} {
		if !strings.Contains(after, want) {
			t.Errorf("settings.json lacks %q:\n%s", want, after)
		}
	}
	if strings.Count(after, "\n") != strings.Count(before, "\n") {
		t.Errorf("settings.json changed shape: %d lines, was %d", strings.Count(after, "\n"), strings.Count(before, "\n"))
	}
	if fi, err := os.Stat(f.path(config.SettingsFile)); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("file mode = %v, %v; want it kept at 0640", fi.Mode(), err)
	}
	f.noTempFiles()
	if !strings.Contains(f.logs.String(), "config changed") {
		t.Errorf("no log line for the change:\n%s", f.logs.String())
	}
}

func TestPatchGlobalKeepsWhatItDoesNotChange(t *testing.T) {
	f := newConfigFixture(t)
	// The file's order is kept even where it is not the usual one, and the annotators'
	// settings the handler knows nothing of are written back as they were.
	f.writeFile(config.SettingsFile, `{"annotators": {"7": {"quota_pool": "shared.pool", "urgency": {"enabled": true, "target_count": 3}}}, "global": {"max_retries": 2}}`)
	f.call(http.MethodPatch, "/api/config/global", `{"global": {"max_retries": 4}}`, http.StatusOK)
	want := "{\n  \"annotators\": {\n    \"7\": {\n      \"quota_pool\": \"shared.pool\",\n      \"urgency\": {\n        \"enabled\": true,\n" +
		"        \"target_count\": 3\n      }\n    }\n  },\n  \"global\": {\n    \"max_retries\": 4\n  }\n}\n"
	if got := f.readFile(config.SettingsFile); got != want {
		t.Errorf("settings.json:\n%s\nwant:\n%s", got, want)
	}
	// With no global object yet, one is added.
	f.writeFile(config.SettingsFile, `{"annotators": {"1": {}}}`)
	f.call(http.MethodPatch, "/api/config/global", `{"batch_size": 3}`, http.StatusOK)
	if cfg := f.load(); cfg.Global.BatchSize != 3 {
		t.Errorf("batch size %d", cfg.Global.BatchSize)
	}
}

func TestPatchGlobalRefusesWhatTheLoaderRefusesAndWritesNothing(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		location   string
		msgs       []string
	}{
		{"a value out of range", `{"batch_size": 0}`, 422, "body.batch_size", []string{"0 is out of range (allowed 1..1000)"}},
		{"the wrapped form", `{"global": {"batch_size": 0}}`, 422, "body.global.batch_size", []string{"0 is out of range"}},
		{"a value of the wrong type", `{"stream": "yes"}`, 422, "body.stream", []string{"expected a boolean"}},
		{"a cross-field rule", `{"request_timeout_seconds": 70}`, 422, "body.request_timeout_seconds", []string{"must be below global.heartbeat_timeout_seconds (60)"}},
		{"an unknown setting", `{"batch_sise": 5}`, 422, "body.batch_sise", []string{"unknown field", "batch_size"}},
		{"a change that leaves annotators without keys", `{"provider": "gemini"}`, 422, "body",
			[]string{"api_keys.annotator_1: annotator 1 uses provider gemini and has enabled domains but no API key"}},
		{"an empty object", `{}`, 422, "body", []string{"at least one global setting"}},
		{"an array", `[{"batch_size": 5}]`, 422, "body", []string{"expected an object"}},
		{"a wrapped non-object", `{"global": 5}`, 422, "body.global", []string{"expected an object"}},
		{"broken JSON", `{"batch_size": `, 400, "body", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newConfigFixture(t)
			before := f.readFile(config.SettingsFile)
			rec := f.call(http.MethodPatch, "/api/config/global", tt.body, tt.status)
			wantProblem(t, rec, tt.location, tt.msgs...)
			f.unchanged(config.SettingsFile, before)
			f.noTempFiles()
		})
	}
}

func TestPatchGlobalAcceptsTheGlobalItShows(t *testing.T) {
	f := newConfigFixture(t)
	shown := decodeInto[map[string]json.RawMessage](t, f.call(http.MethodGet, "/api/config", nil, http.StatusOK))["global"]
	got := decodeInto[map[string]json.RawMessage](t, f.call(http.MethodPatch, "/api/config/global", string(shown), http.StatusOK))["global"]
	if !bytes.Equal(got, shown) {
		t.Errorf("sending back what GET shows changed the config:\n%s\nwas\n%s", got, shown)
	}
}

func TestPatchRunsSetsTheSelectedRuns(t *testing.T) {
	f := newConfigFixture(t)
	f.call(http.MethodPatch, "/api/config/runs", map[string]any{"annotator": "2", "domain": "urgency", "enabled": false}, http.StatusOK)
	got := decodeInto[ConfigView](t, f.call(http.MethodPatch, "/api/config/runs", map[string]any{"domain": "modality", "target_count": 5}, http.StatusOK))
	for _, id := range []string{"1", "2", "3", "4", "5"} {
		if d := got.Annotators[id].Domains["modality"]; d != (DomainSetting{Enabled: true, TargetCount: 5}) {
			t.Errorf("annotator %s modality = %+v", id, d)
		}
	}
	cfg := f.load()
	a2, _ := cfg.Annotator("2")
	a1, _ := cfg.Annotator("1")
	if a2.Domains["urgency"] != (config.DomainSettings{Enabled: false, TargetCount: 60}) || a1.Domains["urgency"] != (config.DomainSettings{Enabled: true, TargetCount: 60}) {
		t.Errorf("urgency: annotator 2 %+v, annotator 1 %+v", a2.Domains["urgency"], a1.Domains["urgency"])
	}
	if a2.Domains["modality"].TargetCount != 5 || a2.Domains["therapeutic"].TargetCount != 60 {
		t.Errorf("annotator 2 = %+v", a2.Domains)
	}

	f.call(http.MethodPatch, "/api/config/runs", map[string]any{"all": true, "enabled": false, "target_count": 7}, http.StatusOK)
	if runs := f.load().Runs(); len(runs) != 0 {
		t.Errorf("still enabled: %+v", runs)
	}
	if !strings.Contains(f.readFile(config.SettingsFile), "\"enabled\": false,\n        \"target_count\": 7\n") {
		t.Errorf("settings.json lost its layout:\n%s", f.readFile(config.SettingsFile))
	}
	f.noTempFiles()
}

func TestPatchRunsAddsAMissingDomainInTheFilesShape(t *testing.T) {
	f := newConfigFixture(t)
	f.writeFile(config.SettingsFile, `{"global": {}, "annotators": {"1": {"urgency": {"target_count": 4}}}}`)
	f.call(http.MethodPatch, "/api/config/runs", map[string]any{"annotator": "1", "enabled": true}, http.StatusOK)
	got := f.readFile(config.SettingsFile)
	for _, want := range []string{
		"\"urgency\": {\n        \"target_count\": 4,\n        \"enabled\": true\n      }",
		"\"redressal\": {\n        \"enabled\": true,\n        \"target_count\": 0\n      }",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("settings.json lacks %q:\n%s", want, got)
		}
	}
	if runs := f.load().Runs(); len(runs) != 6 || runs[0].TargetCount != 4 {
		t.Errorf("runs = %+v", runs)
	}
}

func TestPatchRunsRefusesBadInputAndWritesNothing(t *testing.T) {
	tests := []struct {
		name     string
		body     any
		location string
		msgs     []string
	}{
		{"nothing to change", map[string]any{"all": true}, "body", []string{"send enabled, target_count or both"}},
		{"a negative target", map[string]any{"all": true, "target_count": -1}, "body.target_count", nil},
		{"a target too large", map[string]any{"all": true, "target_count": 100001}, "body.target_count", nil},
		{"an unknown annotator", map[string]any{"annotator": "9", "enabled": true}, "body.annotator", []string{"9"}},
		{"an unknown domain", map[string]any{"domain": "mood", "enabled": true}, "body.domain", nil},
		{"no selection", map[string]any{"enabled": true}, "body", nil},
		{"a misspelt field", map[string]any{"all": true, "enabeld": true}, "body.enabeld", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newConfigFixture(t)
			before := f.readFile(config.SettingsFile)
			rec := f.call(http.MethodPatch, "/api/config/runs", tt.body, http.StatusUnprocessableEntity)
			wantProblem(t, rec, tt.location, tt.msgs...)
			f.unchanged(config.SettingsFile, before)
		})
	}
}

func TestPatchRunsRefusesEnablingARunWithoutAKey(t *testing.T) {
	f := newConfigFixture(t)
	f.writeFile(config.SettingsFile, `{"global": {"provider": "gemini"}, "annotators": {"1": {"urgency": {"enabled": false, "target_count": 5}}}}`)
	before := f.readFile(config.SettingsFile)
	rec := f.call(http.MethodPatch, "/api/config/runs", map[string]any{"annotator": "1", "domain": "urgency", "enabled": true}, http.StatusUnprocessableEntity)
	wantProblem(t, rec, "body", "api_keys.annotator_1: annotator 1 uses provider gemini and has enabled domains but no API key")
	f.unchanged(config.SettingsFile, before)

	// While a key is missing, disabling the runs that need it is allowed: it makes the config whole.
	f.writeFile(config.SettingsFile, `{"global": {"provider": "gemini"}, "annotators": {"1": {"urgency": {"enabled": true, "target_count": 5}}}}`)
	f.call(http.MethodPatch, "/api/config/runs", map[string]any{"annotator": "1", "target_count": 6}, http.StatusUnprocessableEntity)
	f.call(http.MethodPatch, "/api/config/runs", map[string]any{"annotator": "1", "enabled": false}, http.StatusOK)
	if runs := f.load().Runs(); len(runs) != 0 {
		t.Errorf("runs = %+v", runs)
	}
}

func TestConcurrentConfigChangesAreNotLost(t *testing.T) {
	f := newConfigFixture(t)
	domains := []string{"urgency", "therapeutic", "intensity", "adjunct", "modality", "redressal"}
	var wg sync.WaitGroup
	for i, id := range []string{"1", "2", "3", "4", "5"} {
		for j, d := range domains {
			wg.Go(func() {
				body, _ := json.Marshal(map[string]any{"annotator": id, "domain": d, "target_count": 100*i + j})
				rec := f.send(http.MethodPatch, "/api/config/runs", "application/json", bytes.NewReader(body))
				if rec.Code != http.StatusOK {
					t.Errorf("%s/%s: %d %s", id, d, rec.Code, rec.Body.String())
				}
			})
		}
	}
	wg.Wait()
	cfg := f.load()
	for i, a := range cfg.Annotators {
		for j, d := range domains {
			if got := a.Domains[labels.Domain(d)].TargetCount; got != 100*i+j {
				t.Errorf("annotator %s %s: target %d, want %d", a.ID, d, got, 100*i+j)
			}
		}
	}
	f.noTempFiles()
}

func TestWriteFileAtomicReplacesTheFileWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(b) != "new" || fi.Mode().Perm() != 0o600 {
		t.Errorf("got %q with mode %v", b, fi.Mode())
	}
	if err := writeFileAtomic(filepath.Join(dir, "missing", "f.json"), []byte("x"), 0o600); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %v", entries)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("stat missing: %v", err)
	}

	// A symlinked file is replaced where it lives; the link stays.
	elsewhere := t.TempDir()
	target := filepath.Join(elsewhere, "real.json")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(target, link); err != nil {
		t.Skip("no symlinks here:", err)
	}
	if err := writeFileAtomic(link, []byte("via link"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "via link" {
		t.Errorf("target holds %q", b)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v, %v", fi.Mode(), err)
	}
}

func TestConfigRoutesAreDocumented(t *testing.T) {
	f := newConfigFixture(t)
	var doc struct {
		Paths map[string]map[string]struct {
			RequestBody struct {
				Content map[string]struct {
					Schema struct {
						Required   []string
						Properties map[string]json.RawMessage
					}
				}
			} `json:"requestBody"`
		}
	}
	if err := json.Unmarshal(f.call(http.MethodGet, "/api/openapi.json", nil, http.StatusOK).Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for path, methods := range map[string][]string{
		"/api/config": {"get"}, "/api/config/global": {"patch"}, "/api/config/runs": {"patch"},
		"/api/keys/{annotator}": {"put", "delete"}, "/api/keys/{annotator}/test": {"post"},
		"/api/prompts": {"get"}, "/api/prompts/{domain}": {"get", "post"}, "/api/prompts/{domain}/versions/{file}": {"get", "delete"},
		"/api/prompts/{domain}/versions/{file}/activate": {"post"}, "/api/prompts/{domain}/diff": {"get"}, "/api/dataset": {"get", "post"},
	} {
		for _, m := range methods {
			if _, ok := doc.Paths[path][m]; !ok {
				t.Errorf("%s %s is not documented", m, path)
			}
		}
	}
	global := doc.Paths["/api/config/global"]["patch"].RequestBody.Content["application/json"].Schema
	if _, ok := global.Properties["batch_size"]; !ok || len(global.Required) != 0 {
		t.Errorf("PATCH /api/config/global body schema: %+v", global)
	}
	key := doc.Paths["/api/keys/{annotator}"]["put"].RequestBody.Content["application/json"].Schema
	if _, ok := key.Properties["key"]; !ok || !reflect.DeepEqual(key.Required, []string{"key"}) {
		t.Errorf("PUT /api/keys body schema: %+v", key)
	}
	upload := doc.Paths["/api/dataset"]["post"].RequestBody.Content["multipart/form-data"].Schema
	if _, ok := upload.Properties["file"]; !ok || !reflect.DeepEqual(upload.Required, []string{"file"}) {
		t.Errorf("POST /api/dataset body schema: %+v", upload)
	}
}
