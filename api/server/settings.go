package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/labels"
)

func init() { registrations = append(registrations, (*Server).settingsRoutes) }

// ConfigView is the config as it is in force: every global setting with its effective value
// (defaults filled in), and each annotator with its settings, its masked key and its domains.
type ConfigView struct {
	Global     GlobalSettings               `json:"global"`
	Annotators map[string]AnnotatorSettings `json:"annotators"`
	// Problems lists annotators that need an API key they lack: runs cannot start until
	// each is set (PUT /api/keys/{annotator}). Any other problem with the config is a 503.
	Problems []string `json:"problems,omitempty" doc:"annotators that need an API key they lack; nothing starts until they have one"`
}

// GlobalSettings are settings.json's global settings under their names in the file, so any of
// them can be sent back to PATCH /api/config/global.
type GlobalSettings struct {
	ModelName                string  `json:"model_name"`
	RequestDelaySeconds      float64 `json:"request_delay_seconds"`
	MaxRetries               int     `json:"max_retries"`
	CrashDetectionMinutes    float64 `json:"crash_detection_minutes"`
	ControlCheckIterations   int     `json:"control_check_iterations"`
	ControlCheckSeconds      int     `json:"control_check_seconds"`
	Provider                 string  `json:"provider" enum:"offline,gemini,openai"`
	BaseURL                  string  `json:"base_url" doc:"empty: the provider's default"`
	BatchSize                int     `json:"batch_size"`
	HeartbeatTimeoutSeconds  float64 `json:"heartbeat_timeout_seconds"`
	RequestTimeoutSeconds    float64 `json:"request_timeout_seconds"`
	MaxRestartAttempts       int     `json:"max_restart_attempts"`
	MaxConsecutiveErrors     int     `json:"max_consecutive_errors"`
	MaxRetryBackoffSeconds   float64 `json:"max_retry_backoff_seconds"`
	RequestsPerMinute        int     `json:"requests_per_minute"`
	RequestsPerDay           int     `json:"requests_per_day"`
	TokensPerMinute          int     `json:"tokens_per_minute" doc:"0: no limit"`
	MaxConcurrentActivities  int     `json:"max_concurrent_activities"`
	DatasetPath              string  `json:"dataset_path"`
	OfflineLatencySeconds    float64 `json:"offline_latency_seconds"`
	Stream                   bool    `json:"stream"`
	StreamIdleTimeoutSeconds float64 `json:"stream_idle_timeout_seconds"`
	Temperature              float64 `json:"temperature"`
	MaxOutputTokens          int     `json:"max_output_tokens"`
	ThinkingBudget           *int    `json:"thinking_budget" nullable:"true" doc:"null: none sent"`
	SafetyThreshold          string  `json:"safety_threshold"`
	QuotaDayZone             string  `json:"quota_day_zone"`
	Mode                     string  `json:"mode" enum:"sync,batch" doc:"every annotator's default: a call per sample, or chunks as provider batches"`
	BatchChunkSize           int     `json:"batch_chunk_size"`
	BatchMaxChunks           int     `json:"batch_max_chunks"`
}

// AnnotatorSettings is one annotator's effective settings.
type AnnotatorSettings struct {
	Provider          string `json:"provider"`
	Model             string `json:"model"`
	BaseURL           string `json:"base_url"`
	QuotaPool         string `json:"quota_pool"`
	Mode              string `json:"mode"`
	RequestsPerMinute int    `json:"requests_per_minute"`
	RequestsPerDay    int    `json:"requests_per_day"`
	TokensPerMinute   int    `json:"tokens_per_minute"`
	Key               string `json:"key" doc:"the API key masked (\"****\" plus at most its last 4 characters); empty when there is none"`
	KeyFromEnv        bool   `json:"key_from_env,omitempty" doc:"the key comes from the MHA_API_KEY_<annotator> environment variable, which overrides api_keys.json"`
	// Domains holds every domain, enabled or not.
	Domains map[string]DomainSetting `json:"domains"`
}

// DomainSetting is one run's settings.
type DomainSetting struct {
	Enabled     bool `json:"enabled"`
	TargetCount int  `json:"target_count"`
}

type configOutput struct {
	Body ConfigView
}

// patchGlobalInput takes the body raw: the config loader is its only validator, so a bad
// value gets the same message as in a hand-edited file.
type patchGlobalInput struct {
	RawBody []byte `contentType:"application/json"`
}

type patchRunsInput struct {
	Body struct {
		Selection
		Enabled     *bool `json:"enabled,omitempty" doc:"enable or disable the selected runs"`
		TargetCount *int  `json:"target_count,omitempty" minimum:"0" maximum:"100000" doc:"samples each selected run should annotate"`
	}
}

func (s *Server) settingsRoutes() {
	huma.Register(s.api, huma.Operation{OperationID: "get-config", Method: http.MethodGet, Path: "/api/config",
		Summary: "Read the config in force", Tags: []string{"config"},
		Description: "Every global setting with its effective value, and each annotator with its masked key and its runs. " +
			"Annotators that need a key they lack are listed in `problems` (the config does not load until they have one); " +
			"any other problem with the files on disk is a 503 naming it."}, s.getConfig)

	patchGlobal := huma.Operation{OperationID: "patch-global-config", Method: http.MethodPatch, Path: "/api/config/global",
		Summary: "Change global settings", Tags: []string{"config"}, SkipValidateBody: true,
		Description: "The body holds the global settings to change under their settings.json names, such as " +
			"`{\"batch_size\": 20}` (`{\"global\": {\"batch_size\": 20}}` is accepted too); settings left out keep their value. " +
			"The result is validated by the config loader and written atomically; on a 422 nothing is written. " +
			"A problem's location names the field as sent (`body.batch_size`, or `body.global.batch_size` for the wrapped form); " +
			"a problem the change causes elsewhere (an annotator left without a key) is located at `body`, its setting named in the message."}
	huma.Register(s.api, patchGlobal, s.patchGlobal)
	s.documentJSONBody(http.MethodPatch, "/api/config/global", reflect.TypeFor[GlobalSettings](), "GlobalSettingsPatch")

	huma.Register(s.api, huma.Operation{OperationID: "patch-runs-config", Method: http.MethodPatch, Path: "/api/config/runs",
		Summary: "Enable, disable or retarget runs in the config", Tags: []string{"config"},
		Description: "Sets `enabled` and/or `target_count` of the selected (annotator, domain) pairs in settings.json. " +
			"Running workflows are not touched: use the control routes for them."}, s.patchRuns)
}

// documentJSONBody replaces the request body schema of a raw-body operation in the OpenAPI
// document with the schema of t, only the properties named in required being required (the
// handler validates).
func (s *Server) documentJSONBody(method, path string, t reflect.Type, name string, required ...string) {
	item := s.api.OpenAPI().Paths[path]
	if item == nil {
		return
	}
	var op *huma.Operation
	switch method {
	case http.MethodPatch:
		op = item.Patch
	case http.MethodPut:
		op = item.Put
	}
	if op == nil || op.RequestBody == nil {
		return
	}
	reg := s.api.OpenAPI().Components.Schemas
	ref := reg.Schema(t, true, name)
	schema := ref
	if ref.Ref != "" {
		schema = reg.SchemaFromRef(ref.Ref)
	}
	doc := *schema
	doc.Required = required
	op.RequestBody.Required = true
	op.RequestBody.Content = map[string]*huma.MediaType{"application/json": {Schema: &doc}}
}

func (s *Server) getConfig(context.Context, *struct{}) (*configOutput, error) {
	cfg, problems, err := s.configWithoutKeys()
	if err != nil {
		return nil, err
	}
	out := &configOutput{Body: s.configView(cfg)}
	for _, p := range problems {
		out.Body.Problems = append(out.Body.Problems, p.String())
	}
	return out, nil
}

// patchGlobal merges the sent settings into settings.json's global object. Problems are
// located as the caller named the field: `body.<field>` for a flat body, `body.global.<field>`
// for a body wrapped in {"global": ...}.
func (s *Server) patchGlobal(_ context.Context, in *patchGlobalInput) (*configOutput, error) {
	patch, err := parseJSONFields(in.RawBody)
	if err != nil {
		return nil, huma.Error400BadRequest("the body is not JSON", &huma.ErrorDetail{Location: "body", Message: err.Error()})
	}
	if patch == nil {
		return nil, huma.Error422UnprocessableEntity("the body must be an object", &huma.ErrorDetail{Location: "body",
			Message: `expected an object of global settings, such as {"batch_size": 20}`})
	}
	wrapped := false
	if len(patch.names) == 1 && patch.names[0] == "global" {
		inner, err := parseJSONFields(patch.values["global"])
		if err != nil || inner == nil {
			return nil, huma.Error422UnprocessableEntity("the body must be an object", &huma.ErrorDetail{Location: "body.global",
				Message: `expected an object of global settings, such as {"batch_size": 20}`})
		}
		patch, wrapped = inner, true
	}
	if len(patch.names) == 0 {
		return nil, huma.Error422UnprocessableEntity("nothing to change", &huma.ErrorDetail{Location: "body",
			Message: `name at least one global setting, such as {"batch_size": 20}`})
	}

	s.configMu.Lock()
	defer s.configMu.Unlock()
	files, err := s.readConfigFiles()
	if err != nil {
		return nil, err
	}
	root, err := files.root()
	if err != nil {
		return nil, err
	}
	global := &jsonFields{values: map[string]json.RawMessage{}}
	if raw, ok := root.values["global"]; ok {
		if global, err = parseJSONFields(raw); err != nil || global == nil {
			return nil, huma.Error503ServiceUnavailable("the config on disk cannot be used: global in " + config.SettingsFile + " is not an object; fix it by hand")
		}
	}
	for _, name := range patch.names {
		global.set(name, patch.values[name])
	}
	root.set("global", global.encode())
	settings, err := indentJSON(root.encode())
	if err != nil {
		return nil, huma.Error500InternalServerError("encoding the settings: " + err.Error())
	}
	cfg, err := config.Parse(settings, files.keys, s.o.Getenv)
	if err != nil {
		return nil, configError(relocate(err, "global", !wrapped), "body")
	}
	if err := s.writeSettings(settings); err != nil {
		return nil, err
	}
	s.o.Logger.Info("config changed", "settings", strings.Join(patch.names, ","))
	return &configOutput{Body: s.configView(cfg)}, nil
}

// patchRuns sets enabled and/or target_count of the selected runs. A problem with a sent value
// is located at body.enabled or body.target_count.
func (s *Server) patchRuns(_ context.Context, in *patchRunsInput) (*configOutput, error) {
	if in.Body.Enabled == nil && in.Body.TargetCount == nil {
		return nil, huma.Error422UnprocessableEntity("nothing to change", &huma.ErrorDetail{Location: "body",
			Message: "send enabled, target_count or both"})
	}
	s.configMu.Lock()
	defer s.configMu.Unlock()
	// Runs can be disabled while keys are missing: that is one way to make the config whole.
	cfg, _, err := s.configWithoutKeys()
	if err != nil {
		return nil, err
	}
	files, err := s.readConfigFiles()
	if err != nil {
		return nil, err
	}
	pairs, err := s.pairs(cfg, in.Body.Selection)
	if err != nil {
		return nil, err
	}
	root, err := files.root()
	if err != nil {
		return nil, err
	}
	annotators, err := parseJSONFields(root.values["annotators"])
	if err != nil || annotators == nil {
		return nil, huma.Error503ServiceUnavailable("the config on disk cannot be used: annotators in " + config.SettingsFile + " is not an object")
	}
	var sent []string
	if in.Body.Enabled != nil {
		sent = append(sent, "enabled")
	}
	if in.Body.TargetCount != nil {
		sent = append(sent, "target_count")
	}
	var changed []string // settings paths of the sent values, for relocating problems
	ids := make([]string, 0, len(pairs))
	for _, id := range annotators.names {
		ann, err := parseJSONFields(annotators.values[id])
		if err != nil || ann == nil {
			continue // the loader has accepted the file, so this is not one of the pairs
		}
		touched := false
		for _, p := range pairs {
			if p.Annotator != id {
				continue
			}
			a, _ := cfg.Annotator(id)
			current := a.Domains[p.Domain]
			d := string(p.Domain)
			dom, err := parseJSONFields(ann.values[d])
			if err != nil || dom == nil {
				dom = &jsonFields{values: map[string]json.RawMessage{}}
			}
			// Both fields are written, so the file keeps its {enabled, target_count} shape.
			enabled, target := current.Enabled, current.TargetCount
			if in.Body.Enabled != nil {
				enabled = *in.Body.Enabled
			}
			if in.Body.TargetCount != nil {
				target = *in.Body.TargetCount
			}
			dom.set("enabled", mustJSON(enabled))
			dom.set("target_count", mustJSON(target))
			ann.set(d, dom.encode())
			touched = true
			ids = append(ids, p.ID())
			for _, f := range sent {
				changed = append(changed, "annotators."+id+"."+d+"."+f)
			}
		}
		if touched {
			annotators.set(id, ann.encode())
		}
	}
	root.set("annotators", annotators.encode())
	settings, err := indentJSON(root.encode())
	if err != nil {
		return nil, huma.Error500InternalServerError("encoding the settings: " + err.Error())
	}
	newCfg, err := config.Parse(settings, files.keys, s.o.Getenv)
	if err != nil {
		return nil, configError(relocateRuns(err, changed), "body")
	}
	if err := s.writeSettings(settings); err != nil {
		return nil, err
	}
	s.o.Logger.Info("config changed", "runs", len(ids), "settings", strings.Join(sent, ","))
	s.refresh(ids...)
	return &configOutput{Body: s.configView(newCfg)}, nil
}

// relocate rewrites the loader's problems for a body that holds the object at settings path
// under: a problem inside it keeps its path below under when strip is set (the body is that
// object), or its whole path (the body wraps it); any other problem, which the change caused
// elsewhere, is moved to the body as a whole with its setting's path at the head of the
// message. Errors other than a *config.ValidationError pass unchanged.
func relocate(err error, under string, strip bool) error {
	return rewriteProblems(err, func(p config.Problem) (string, bool) {
		if p.Path == under {
			if strip {
				return "", true
			}
			return p.Path, true
		}
		if rest, ok := strings.CutPrefix(p.Path, under+"."); ok {
			if strip {
				return rest, true
			}
			return p.Path, true
		}
		return "", false
	})
}

// relocateRuns locates problems with the values patchRuns wrote (settings paths in changed)
// at the body field that carried them.
func relocateRuns(err error, changed []string) error {
	return rewriteProblems(err, func(p config.Problem) (string, bool) {
		for _, c := range changed {
			if p.Path == c {
				return c[strings.LastIndexByte(c, '.')+1:], true
			}
		}
		return "", false
	})
}

func rewriteProblems(err error, locate func(config.Problem) (string, bool)) error {
	var invalid *config.ValidationError
	if !errors.As(err, &invalid) {
		return err
	}
	out := &config.ValidationError{Problems: make([]config.Problem, len(invalid.Problems))}
	for i, p := range invalid.Problems {
		if path, ok := locate(p); ok {
			p.Path = path
		} else if p.Path != "" {
			p.Reason, p.Path = p.Path+": "+p.Reason, ""
		}
		out.Problems[i] = p
	}
	return out
}

// configView shows cfg with masked keys.
func (s *Server) configView(cfg *config.Config) ConfigView {
	g := cfg.Global
	v := ConfigView{
		Global: GlobalSettings{
			ModelName:                g.ModelName,
			RequestDelaySeconds:      g.RequestDelay.Seconds(),
			MaxRetries:               g.MaxRetries,
			CrashDetectionMinutes:    g.CrashDetection.Minutes(),
			ControlCheckIterations:   g.ControlCheckIterations,
			ControlCheckSeconds:      g.ControlCheckSeconds,
			Provider:                 g.Provider,
			BaseURL:                  g.BaseURL,
			BatchSize:                g.BatchSize,
			HeartbeatTimeoutSeconds:  g.HeartbeatTimeout.Seconds(),
			RequestTimeoutSeconds:    g.RequestTimeout.Seconds(),
			MaxRestartAttempts:       g.MaxRestartAttempts,
			MaxConsecutiveErrors:     g.MaxConsecutiveErrors,
			MaxRetryBackoffSeconds:   g.MaxRetryBackoff.Seconds(),
			RequestsPerMinute:        g.RequestsPerMinute,
			RequestsPerDay:           g.RequestsPerDay,
			TokensPerMinute:          g.TokensPerMinute,
			MaxConcurrentActivities:  g.MaxConcurrentActivities,
			DatasetPath:              g.DatasetPath,
			OfflineLatencySeconds:    g.OfflineLatency.Seconds(),
			Stream:                   g.Stream,
			StreamIdleTimeoutSeconds: g.StreamIdleTimeout.Seconds(),
			Temperature:              g.Temperature,
			MaxOutputTokens:          g.MaxOutputTokens,
			ThinkingBudget:           g.ThinkingBudget,
			SafetyThreshold:          g.SafetyThreshold,
			QuotaDayZone:             g.QuotaDayZone,
			Mode:                     g.Mode,
			BatchChunkSize:           g.BatchChunkSize,
			BatchMaxChunks:           g.BatchMaxChunks,
		},
		Annotators: make(map[string]AnnotatorSettings, len(cfg.Annotators)),
	}
	for _, a := range cfg.Annotators {
		as := AnnotatorSettings{
			Provider: a.Provider, Model: a.ModelName, BaseURL: a.BaseURL, QuotaPool: a.QuotaPool, Mode: a.Mode,
			RequestsPerMinute: a.RequestsPerMinute, RequestsPerDay: a.RequestsPerDay, TokensPerMinute: a.TokensPerMinute,
			Key: maskKey(a.APIKey), KeyFromEnv: s.keyFromEnv(a.ID),
			Domains: make(map[string]DomainSetting, len(labels.Domains)),
		}
		for _, d := range labels.Domains {
			ds := a.Domains[d]
			as.Domains[string(d)] = DomainSetting{Enabled: ds.Enabled, TargetCount: ds.TargetCount}
		}
		v.Annotators[a.ID] = as
	}
	return v
}

// maskKey shows a key as the config package masks it, and no key as "".
func maskKey(k config.Secret) string {
	if k == "" {
		return ""
	}
	return k.String()
}

func (s *Server) getenv(name string) string {
	if s.o.Getenv != nil {
		return s.o.Getenv(name)
	}
	return os.Getenv(name)
}

// keyFromEnv reports whether annotator id's key comes from the environment, as config.Load
// reads it.
func (s *Server) keyFromEnv(id string) bool {
	return strings.TrimSpace(s.getenv(config.KeyEnvPrefix+id)) != ""
}

// configDir is the directory of the config files.
func (s *Server) configDir() string {
	if s.o.ConfigDir == "" {
		return config.DefaultDir
	}
	return s.o.ConfigDir
}

// keysPath is the API keys file.
func (s *Server) keysPath() string {
	if s.o.KeysFile != "" {
		return s.o.KeysFile
	}
	return filepath.Join(s.configDir(), config.KeysFile)
}

// configFiles are the config files' contents; keys is nil when there is no keys file.
type configFiles struct {
	settings, keys []byte
}

// readConfigFiles reads settings.json and api_keys.json as they are now. A file that cannot be
// read is the server's problem (503).
func (s *Server) readConfigFiles() (configFiles, error) {
	settings, err := os.ReadFile(filepath.Join(s.configDir(), config.SettingsFile))
	if err != nil {
		return configFiles{}, huma.Error503ServiceUnavailable("the config on disk cannot be used: reading settings: " + err.Error())
	}
	keys, err := os.ReadFile(s.keysPath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return configFiles{}, huma.Error503ServiceUnavailable("the config on disk cannot be used: reading API keys: " + err.Error())
	}
	return configFiles{settings: settings, keys: keys}, nil
}

// root is settings.json's top object.
func (f configFiles) root() (*jsonFields, error) {
	root, err := parseJSONFields(f.settings)
	if err != nil || root == nil {
		return nil, huma.Error503ServiceUnavailable("the config on disk cannot be used: " + config.SettingsFile + " is not a JSON object; fix it by hand")
	}
	return root, nil
}

// writeSettings replaces settings.json, keeping its file mode.
func (s *Server) writeSettings(data []byte) error {
	path := filepath.Join(s.configDir(), config.SettingsFile)
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	if err := writeFileAtomic(path, data, mode); err != nil {
		return huma.Error500InternalServerError("writing " + config.SettingsFile + ": " + err.Error())
	}
	return nil
}

// writeFileAtomic replaces path with data in one step: a temporary file in the same directory
// is written, synced and renamed over path, so a reader sees the old file or the new one,
// never half of one, and a crash leaves no half-written file. The file gets mode perm.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	// A symlinked file (a config kept elsewhere) is replaced where it lives, keeping the link.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// The rename itself is durable once the directory is synced; not every system can.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// jsonFields is a JSON object that keeps its fields' order and their values as written, so
// an edited config file differs from the old one only where it was changed.
type jsonFields struct {
	names  []string
	values map[string]json.RawMessage
}

// parseJSONFields reads a JSON object; it returns nil, nil for valid JSON that is not an
// object. A repeated name keeps its first place and its last value, as encoding/json reads it.
func parseJSONFields(data []byte) (*jsonFields, error) {
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil
	}
	f := &jsonFields{values: map[string]json.RawMessage{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		f.set(name, v)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("data after the object")
	}
	return f, nil
}

func (f *jsonFields) set(name string, v json.RawMessage) {
	if _, ok := f.values[name]; !ok {
		f.names = append(f.names, name)
	}
	f.values[name] = v
}

func (f *jsonFields) remove(name string) bool {
	if _, ok := f.values[name]; !ok {
		return false
	}
	delete(f.values, name)
	for i, n := range f.names {
		if n == name {
			f.names = append(f.names[:i], f.names[i+1:]...)
			break
		}
	}
	return true
}

// encode writes the object compactly, values as they were given.
func (f *jsonFields) encode() json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, n := range f.names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(mustJSON(n))
		b.WriteByte(':')
		b.Write(f.values[n])
	}
	b.WriteByte('}')
	return b.Bytes()
}

// mustJSON encodes a string, bool or number without HTML escaping, as a person would write it.
func mustJSON(v any) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only called with plain values
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// indentJSON lays a config file out readably, two spaces per level, ending in a newline.
func indentJSON(compact []byte) ([]byte, error) {
	var b bytes.Buffer
	if err := json.Indent(&b, compact, "", "  "); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}
