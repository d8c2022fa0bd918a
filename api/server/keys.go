package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/mhannotator/mha/internal/clip"
	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm/providers"
)

func init() { registrations = append(registrations, (*Server).keyRoutes) }

// API keys are write-only: no reply, log line or problem detail holds one. The key's body is
// read raw, because huma's own validation errors quote the offending value.

// keyTestLimit bounds a key test whatever the configured request timeout: the caller is a
// person waiting on a button.
const keyTestLimit = 60 * time.Second

// maxKeyLength bounds a key; real keys are far shorter.
const maxKeyLength = 1024

// KeyView shows an annotator's key masked.
type KeyView struct {
	Annotator  string `json:"annotator"`
	Key        string `json:"key" doc:"the key masked (\"****\" plus at most its last 4 characters); empty when there is none"`
	KeyFromEnv bool   `json:"key_from_env,omitempty" doc:"the MHA_API_KEY_<annotator> environment variable holds the key in force, whatever api_keys.json says"`
}

// KeyTest is the outcome of one real call with an annotator's key.
type KeyTest struct {
	Annotator string `json:"annotator"`
	OK        bool   `json:"ok"`
	Class     string `json:"class" doc:"ok, offline, no_key, invalid_key, no_quota, model_not_found, rate_limited, daily_quota, bad_request or unreachable"`
	Verdict   string `json:"verdict" doc:"the outcome in words"`
	Detail    string `json:"detail" doc:"the provider's message, if any"`
	LatencyMS int64  `json:"latency_ms"`
}

type keyAnnotatorInput struct {
	Annotator string `path:"annotator" pattern:"^[A-Za-z0-9_-]{1,32}$" doc:"annotator ID, as in settings.json"`
}

type putKeyInput struct {
	Annotator string `path:"annotator" pattern:"^[A-Za-z0-9_-]{1,32}$" doc:"annotator ID, as in settings.json"`
	RawBody   []byte `contentType:"application/json"`
}

// keyBody documents PUT /api/keys/{annotator}; the handler reads the body itself.
type keyBody struct {
	Key string `json:"key" writeOnly:"true" doc:"the API key; it is stored in api_keys.json and never shown again"`
}

type keyOutput struct {
	Body KeyView
}

type keyTestOutput struct {
	Body KeyTest
}

func (s *Server) keyRoutes() {
	huma.Register(s.api, huma.Operation{OperationID: "put-key", Method: http.MethodPut, Path: "/api/keys/{annotator}",
		Summary: "Set an annotator's API key", Tags: []string{"config"}, SkipValidateBody: true,
		Description: "Stores the key in api_keys.json (mode 0600, written atomically). The reply shows it masked; " +
			"no reply ever shows a key."}, s.putKey)
	s.documentJSONBody(http.MethodPut, "/api/keys/{annotator}", reflect.TypeFor[keyBody](), "KeyBody", "key")
	huma.Register(s.api, huma.Operation{OperationID: "delete-key", Method: http.MethodDelete, Path: "/api/keys/{annotator}",
		Summary: "Remove an annotator's API key from api_keys.json", Tags: []string{"config"},
		Description: "Refused (409) while the annotator needs the key: a real provider with enabled runs."}, s.deleteKey)
	huma.Register(s.api, huma.Operation{OperationID: "test-key", Method: http.MethodPost, Path: "/api/keys/{annotator}/test",
		Summary: "Make one real call with an annotator's key and model", Tags: []string{"config"},
		Description: "Sends one small request with the annotator's key, model and base URL, as `starter test-key` does, " +
			"and classifies the outcome. Nothing is stored. Bounded by the request timeout, and by a minute at most."}, s.testKey)
}

func (s *Server) putKey(_ context.Context, in *putKeyInput) (*keyOutput, error) {
	key, err := parseKeyBody(in.RawBody)
	if err != nil {
		return nil, err
	}
	s.configMu.Lock()
	defer s.configMu.Unlock()
	files, err := s.readConfigFiles()
	if err != nil {
		return nil, err
	}
	if err := files.checkAnnotator(in.Annotator); err != nil {
		return nil, err
	}
	keys, err := files.keyEntries()
	if err != nil {
		return nil, err
	}
	keys.set(config.KeyName(in.Annotator), mustJSON(key))
	if err := s.writeKeys(files, keys, in.Annotator); err != nil {
		return nil, err
	}
	s.o.Logger.Info("api key set", "annotator", in.Annotator)
	return &keyOutput{Body: KeyView{Annotator: in.Annotator, Key: maskKey(config.Secret(key)), KeyFromEnv: s.keyFromEnv(in.Annotator)}}, nil
}

func (s *Server) deleteKey(_ context.Context, in *keyAnnotatorInput) (*keyOutput, error) {
	s.configMu.Lock()
	defer s.configMu.Unlock()
	files, err := s.readConfigFiles()
	if err != nil {
		return nil, err
	}
	if err := files.checkAnnotator(in.Annotator); err != nil {
		return nil, err
	}
	keys, err := files.keyEntries()
	if err != nil {
		return nil, err
	}
	if keys.remove(config.KeyName(in.Annotator)) {
		if err := s.writeKeys(files, keys, in.Annotator); err != nil {
			return nil, err
		}
		s.o.Logger.Info("api key removed", "annotator", in.Annotator)
	}
	out := &keyOutput{Body: KeyView{Annotator: in.Annotator}}
	if s.keyFromEnv(in.Annotator) {
		out.Body.Key, out.Body.KeyFromEnv = maskKey(config.Secret(strings.TrimSpace(s.getenv(config.KeyEnvPrefix+in.Annotator)))), true
	}
	return out, nil
}

// writeKeys validates keys as api_keys.json beside the settings with the config loader and
// writes it. Only problems with annotator's own key refuse the change: other problems were
// there before it, and must not block the key that may fix them.
func (s *Server) writeKeys(files configFiles, keys *jsonFields, annotator string) error {
	data, err := indentJSON(keys.encode())
	if err != nil {
		return huma.Error500InternalServerError("encoding the API keys failed")
	}
	_, err = config.Parse(files.settings, data, s.o.Getenv)
	var invalid *config.ValidationError
	var syntax *config.SyntaxError
	switch {
	case errors.As(err, &invalid):
		for _, p := range invalid.Problems {
			if p.Path == config.KeyPath(annotator) {
				// The loader's messages name the annotator and the file, never the key.
				return huma.Error409Conflict("the config would not load without this key; nothing was changed", &huma.ErrorDetail{
					Location: "path.annotator", Message: p.Reason + " (to remove the key, disable its runs or give it the offline provider first)", Value: annotator})
			}
		}
	case errors.As(err, &syntax):
		// A keys file's syntax error quotes no character of it.
		return huma.Error503ServiceUnavailable("the config on disk cannot be used: " + syntax.Error())
	case err != nil:
		return huma.Error500InternalServerError("checking the API keys failed")
	}
	if err := writeFileAtomic(s.keysPath(), data, 0o600); err != nil {
		return huma.Error500InternalServerError("writing " + config.KeysFile + ": " + err.Error())
	}
	return nil
}

// checkAnnotator answers 404 unless settings.json names the annotator. It reads the file's
// annotators without validating the rest, so a key can be set while a missing key is what
// keeps the config from loading.
func (f configFiles) checkAnnotator(id string) error {
	root, err := f.root()
	if err != nil {
		return err
	}
	annotators, err := parseJSONFields(root.values["annotators"])
	if err != nil || annotators == nil {
		return huma.Error503ServiceUnavailable("the config on disk cannot be used: " + config.SettingsFile + " has no annotators object")
	}
	if _, ok := annotators.values[id]; ok {
		return nil
	}
	return huma.Error404NotFound("no such annotator", &huma.ErrorDetail{Location: "path.annotator",
		Message: "annotator " + id + " is not in " + config.SettingsFile + " (annotators: " + strings.Join(annotators.names, ", ") + ")", Value: id})
}

// keyEntries reads api_keys.json, or an empty object when there is none. A file that is not a
// JSON object is left alone for a person to fix: it may hold keys. Its parse error is not
// shown, since it can quote a character of a key.
func (f configFiles) keyEntries() (*jsonFields, error) {
	if len(strings.TrimSpace(string(f.keys))) == 0 {
		return &jsonFields{values: map[string]json.RawMessage{}}, nil
	}
	keys, err := parseJSONFields(f.keys)
	if err != nil || keys == nil {
		return nil, huma.Error503ServiceUnavailable("the config on disk cannot be used: " + config.KeysFile +
			` is not a JSON object like {"annotator_1": "..."}; fix or remove it by hand; nothing was changed`)
	}
	return keys, nil
}

// parseKeyBody reads {"key": "..."}; its problems never quote the body.
func parseKeyBody(raw []byte) (string, error) {
	body, err := parseJSONFields(raw)
	if err != nil || body == nil {
		return "", huma.Error422UnprocessableEntity("the body must be a JSON object", &huma.ErrorDetail{Location: "body",
			Message: `expected a JSON object like {"key": "..."}`})
	}
	var problems []error
	for _, name := range body.names {
		if name != "key" {
			problems = append(problems, &huma.ErrorDetail{Location: "body." + name, Message: "unknown field (allowed: key)"})
		}
	}
	raw, ok := body.values["key"]
	var key string
	switch {
	case !ok:
		problems = append(problems, &huma.ErrorDetail{Location: "body.key", Message: "is required"})
	case json.Unmarshal(raw, &key) != nil:
		problems = append(problems, &huma.ErrorDetail{Location: "body.key", Message: "expected a string"})
	default:
		if msg := checkKey(strings.TrimSpace(key)); msg != "" {
			problems = append(problems, &huma.ErrorDetail{Location: "body.key", Message: msg})
		}
	}
	if len(problems) > 0 {
		return "", huma.Error422UnprocessableEntity("the key cannot be stored", problems...)
	}
	return strings.TrimSpace(key), nil
}

// checkKey says what is wrong with a key, without quoting it. A key travels in an HTTP header,
// so it is printable ASCII without spaces.
func checkKey(key string) string {
	switch {
	case key == "":
		return "must not be empty"
	case len(key) > maxKeyLength:
		return "is longer than 1024 characters"
	case strings.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r > '~' }):
		return "may hold only printable ASCII characters, without spaces"
	}
	return ""
}

func (s *Server) testKey(ctx context.Context, in *keyAnnotatorInput) (*keyTestOutput, error) {
	cfg, _, err := s.configWithoutKeys()
	if err != nil {
		return nil, err
	}
	ann, ok := cfg.Annotator(in.Annotator)
	if !ok {
		ids := make([]string, len(cfg.Annotators))
		for i, a := range cfg.Annotators {
			ids[i] = a.ID
		}
		return nil, huma.Error404NotFound("no such annotator", &huma.ErrorDetail{Location: "path.annotator",
			Message: "annotator " + in.Annotator + " is not in the config (annotators: " + strings.Join(ids, ", ") + ")", Value: in.Annotator})
	}
	ctx, cancel := context.WithTimeout(ctx, keyTestLimit)
	defer cancel()
	res, err := providers.CheckKey(ctx, ann, cfg.Global)
	if err != nil {
		return nil, huma.Error500InternalServerError("the provider cannot be built: " + scrubKey(err.Error(), ann.APIKey.Reveal()))
	}
	out := KeyTest{Annotator: ann.ID, OK: res.OK, Class: res.Class, Verdict: res.Verdict,
		Detail: clip.String(scrubKey(res.Detail, ann.APIKey.Reveal()), 500), LatencyMS: res.Latency.Milliseconds()}
	switch res.Class {
	case providers.ClassOffline:
		out.Detail = "annotator " + ann.ID + " uses the offline annotator: no key to test"
	case providers.ClassNoKey:
		out.Detail = "annotator " + ann.ID + " has no API key: PUT /api/keys/" + ann.ID + " or set " + config.KeyEnvPrefix + ann.ID
	}
	s.o.Logger.Info("api key tested", "annotator", ann.ID, "provider", ann.Provider, "model", ann.ModelName,
		"class", out.Class, "latency_ms", out.LatencyMS)
	return &keyTestOutput{Body: out}, nil
}

// configWithoutKeys reads the config as currentConfig does, except that annotators without a
// usable API key do not make it unusable: while keys are being set one by one the config does
// not load for want of some, and the key routes and GET /api/config must still serve, or
// nothing could show or fix it. Those annotators come back with no key, and their problems
// (which name the annotator and the file, never a key) are returned to be shown. For the read
// they get a stand-in key, dropped again before the config is returned, so it is never sent.
// Any other problem answers 503, as for every route.
func (s *Server) configWithoutKeys() (*config.Config, []config.Problem, error) {
	unusable := func(err error) error {
		return huma.Error503ServiceUnavailable("the config on disk cannot be used: " + err.Error())
	}
	cfg, err := s.config()
	if err == nil {
		return cfg, nil, nil
	}
	var invalid *config.ValidationError
	if !errors.As(err, &invalid) {
		return nil, nil, unusable(err)
	}
	keyless := map[string]bool{}
	for _, p := range invalid.Problems {
		id, ok := strings.CutPrefix(p.Path, "api_keys.annotator_")
		if !ok || p.Path != config.KeyPath(id) {
			return nil, nil, unusable(err)
		}
		keyless[id] = true
	}
	getenv := func(name string) string {
		if id, ok := strings.CutPrefix(name, config.KeyEnvPrefix); ok && keyless[id] {
			return "stand-in key, never sent"
		}
		return s.getenv(name)
	}
	if cfg, err = config.Load(config.Options{Dir: s.configDir(), Getenv: getenv}); err != nil {
		return nil, nil, unusable(err)
	}
	for i := range cfg.Annotators {
		if keyless[cfg.Annotators[i].ID] {
			cfg.Annotators[i].APIKey = ""
		}
	}
	return cfg, invalid.Problems, nil
}

// scrubKey masks key, and any run of 8 or more of its characters, in text: providers leave keys
// out of their errors, and some quote part of a key ("Incorrect API key provided: sk-ab***cd").
func scrubKey(text, key string) string {
	const window = 8
	if key == "" {
		return text
	}
	if len(key) <= window {
		return strings.ReplaceAll(text, key, "****")
	}
	covered := make([]bool, len(text))
	for i := 0; i+window <= len(key); i++ {
		piece := key[i : i+window]
		for off := 0; off < len(text); {
			j := strings.Index(text[off:], piece)
			if j < 0 {
				break
			}
			for k := off + j; k < off+j+window; k++ {
				covered[k] = true
			}
			off += j + 1
		}
	}
	var b strings.Builder
	for i := 0; i < len(text); i++ {
		if !covered[i] {
			b.WriteByte(text[i])
			continue
		}
		b.WriteString("****")
		for i+1 < len(text) && covered[i+1] {
			i++
		}
	}
	return b.String()
}
