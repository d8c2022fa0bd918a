package server

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm/fake"
)

func (f *configFixture) storedKeys() map[string]any {
	f.t.Helper()
	var keys map[string]any
	if err := json.Unmarshal([]byte(f.readFile(config.KeysFile)), &keys); err != nil {
		f.t.Fatalf("api_keys.json: %v", err)
	}
	return keys
}

func TestPutKeyStoresTheKeyWriteOnly(t *testing.T) {
	f := newConfigFixture(t)
	f.writeFile(config.KeysFile, `{"annotator_2": "kept-key-of-annotator-two", "annotator_99": "an old annotator's"}`)
	f.secret("kept-key-of-annotator-two")
	key := f.secret("AIzaSy-new-key-for-one-9a8b")

	rec := f.call(http.MethodPut, "/api/keys/1", fmt.Sprintf(`{"key": "  %s\n"}`, key), http.StatusOK)
	if got := decodeInto[KeyView](t, rec); got != (KeyView{Annotator: "1", Key: "****9a8b"}) {
		t.Errorf("reply = %+v", got)
	}
	keys := f.storedKeys()
	if keys["annotator_1"] != key || keys["annotator_2"] != "kept-key-of-annotator-two" || keys["annotator_99"] != "an old annotator's" {
		t.Errorf("api_keys.json = %v", keys)
	}
	if fi, err := os.Stat(f.path(config.KeysFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("api_keys.json mode %v, %v; want 0600", fi.Mode(), err)
	}
	if a, _ := f.load().Annotator("1"); a.APIKey.Reveal() != key {
		t.Errorf("the loader reads %v", a.APIKey)
	}
	if got := decodeInto[ConfigView](t, f.call(http.MethodGet, "/api/config", nil, http.StatusOK)).Annotators["1"].Key; got != "****9a8b" {
		t.Errorf("GET /api/config shows %q", got)
	}
	f.noTempFiles()
	if !strings.Contains(f.logs.String(), "api key set") {
		t.Errorf("no log line:\n%s", f.logs.String())
	}

	// A second key replaces the first; with no keys file one is created, 0600.
	f.call(http.MethodPut, "/api/keys/1", map[string]string{"key": f.secret("second-key-ffff-0000")}, http.StatusOK)
	if keys := f.storedKeys(); keys["annotator_1"] != "second-key-ffff-0000" || len(keys) != 3 {
		t.Errorf("api_keys.json = %v", keys)
	}
	if err := os.Remove(f.path(config.KeysFile)); err != nil {
		t.Fatal(err)
	}
	f.call(http.MethodPut, "/api/keys/5", map[string]string{"key": f.secret("short")}, http.StatusOK)
	if fi, err := os.Stat(f.path(config.KeysFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new api_keys.json mode %v, %v", fi.Mode(), err)
	}
}

func TestPutKeyRefusesBadBodiesWithoutQuotingThem(t *testing.T) {
	const secret = "SECRETSECRET-4242"
	tests := []struct {
		name, body, location, msg string
	}{
		{"an empty key", `{"key": "   "}`, "body.key", "must not be empty"},
		{"a key with a space", `{"key": "SECRETSECRET 4242"}`, "body.key", "without spaces"},
		{"a key with a non-ASCII letter", `{"key": "SECRETSECRET-4242é"}`, "body.key", "printable ASCII"},
		{"a key too long", `{"key": "` + strings.Repeat("SECRETSECRET-4242", 70) + `"}`, "body.key", "longer than 1024"},
		{"a number", `{"key": 12345678901234}`, "body.key", "expected a string"},
		{"no key", `{"kee": "` + secret + `"}`, "body.key", "is required"},
		{"an unknown field", `{"key": "` + secret + `", "note": "` + secret + `"}`, "body.note", "unknown field"},
		{"not an object", `["` + secret + `"]`, "body", "expected a JSON object"},
		{"broken JSON", `{"key": "` + secret, "body", "expected a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newConfigFixture(t)
			f.secret(secret)
			f.secret("SECRETSECRET 4242")
			f.writeFile(config.KeysFile, `{"annotator_1": "the-stored-key-0000"}`)
			f.secret("the-stored-key-0000")
			before := f.readFile(config.KeysFile)
			rec := f.call(http.MethodPut, "/api/keys/1", tt.body, http.StatusUnprocessableEntity)
			p := wantProblem(t, rec, tt.location, tt.msg)
			for _, e := range p.Errors {
				if e.Value != nil {
					t.Errorf("a problem quotes a value: %+v", e)
				}
			}
			if strings.Contains(rec.Body.String(), "SECRETSECRET") {
				t.Errorf("the reply quotes the key: %s", rec.Body.String())
			}
			f.unchanged(config.KeysFile, before)
		})
	}
}

func TestPutKeyNeedsAnAnnotatorOfTheConfig(t *testing.T) {
	f := newConfigFixture(t)
	key := f.secret("a-good-looking-key-1234")
	wantProblem(t, f.call(http.MethodPut, "/api/keys/9", map[string]string{"key": key}, http.StatusNotFound), "path.annotator", "annotator 9 is not in settings.json", "1, 2, 3, 4, 5")
	f.call(http.MethodPut, "/api/keys/a.b", map[string]string{"key": key}, http.StatusUnprocessableEntity)
	f.call(http.MethodPut, "/api/keys/..%2F..%2Fsettings", map[string]string{"key": key}, http.StatusNotFound)
	if _, err := os.Stat(f.path(config.KeysFile)); !os.IsNotExist(err) {
		t.Errorf("a keys file was written: %v", err)
	}
}

func TestPutKeyLeavesABrokenKeysFileAlone(t *testing.T) {
	f := newConfigFixture(t)
	f.writeFile(config.KeysFile, `{"annotator_1": "half-a-key-`)
	f.secret("half-a-key-")
	before := f.readFile(config.KeysFile)
	rec := f.call(http.MethodPut, "/api/keys/2", map[string]string{"key": f.secret("another-key-5678")}, http.StatusServiceUnavailable)
	if !strings.Contains(rec.Body.String(), "fix or remove it by hand") {
		t.Errorf("reply: %s", rec.Body.String())
	}
	f.unchanged(config.KeysFile, before)
}

// geminiSettings is a config whose annotators use the Gemini API at url: 1 and 2 with enabled
// runs, 3 with none, 4 offline.
func geminiSettings(url string) string {
	return `{"global": {"provider": "gemini", "base_url": "` + url + `", "request_timeout_seconds": 5},
		"annotators": {"1": {"urgency": {"enabled": true, "target_count": 5}}, "2": {"urgency": {"enabled": true, "target_count": 5}},
		"3": {}, "4": {"provider": "offline", "urgency": {"enabled": true, "target_count": 5}}}}`
}

func TestAKeyCanBeSetWhileItsAbsenceBreaksTheConfig(t *testing.T) {
	f := newConfigFixture(t)
	f.writeFile(config.SettingsFile, geminiSettings("http://127.0.0.1:1"))
	f.writeFile(config.KeysFile, `{"annotator_2": "`+f.secret("key-of-annotator-two")+`"}`)
	// The config does not load, yet it is shown, with what it lacks.
	if _, err := config.Load(config.Options{Dir: f.dir, Getenv: func(string) string { return "" }}); err == nil {
		t.Fatal("the config loads without annotator 1's key")
	}
	got := decodeInto[ConfigView](t, f.call(http.MethodGet, "/api/config", nil, http.StatusOK))
	if len(got.Problems) != 1 || !strings.HasPrefix(got.Problems[0], "api_keys.annotator_1: annotator 1 uses provider gemini") ||
		got.Annotators["1"].Key != "" || got.Annotators["2"].Key != "****-two" || got.Annotators["1"].Provider != "gemini" {
		t.Fatalf("config shown: %+v", got)
	}
	f.call(http.MethodPut, "/api/keys/1", map[string]string{"key": f.secret("key-of-annotator-one")}, http.StatusOK)
	got = decodeInto[ConfigView](t, f.call(http.MethodGet, "/api/config", nil, http.StatusOK))
	if got.Annotators["1"].Key != "****-one" || got.Annotators["2"].Key != "****-two" || got.Problems != nil {
		t.Errorf("config shown: %+v", got)
	}
	f.load()
}

func TestDeleteKey(t *testing.T) {
	f := newConfigFixture(t)
	f.writeFile(config.SettingsFile, geminiSettings("http://127.0.0.1:1"))
	f.writeFile(config.KeysFile, `{"annotator_1": "`+f.secret("key-of-annotator-one")+`", "annotator_2": "`+f.secret("key-of-annotator-two")+
		`", "annotator_3": "`+f.secret("key-of-annotator-three")+`"}`)

	// Annotator 3 has no enabled runs, so it can do without its key.
	if got := decodeInto[KeyView](t, f.call(http.MethodDelete, "/api/keys/3", nil, http.StatusOK)); got != (KeyView{Annotator: "3"}) {
		t.Errorf("reply = %+v", got)
	}
	if keys := f.storedKeys(); len(keys) != 2 || keys["annotator_3"] != nil {
		t.Errorf("api_keys.json = %v", keys)
	}
	f.call(http.MethodDelete, "/api/keys/3", nil, http.StatusOK) // already gone

	// Annotator 1 needs its key: the config would no longer load.
	before := f.readFile(config.KeysFile)
	rec := f.call(http.MethodDelete, "/api/keys/1", nil, http.StatusConflict)
	wantProblem(t, rec, "path.annotator", "annotator 1 uses provider gemini and has enabled domains but no API key", "disable its runs")
	f.unchanged(config.KeysFile, before)
	f.load()

	// With the key in the environment too, the file's entry can go.
	f.env[config.KeyEnvPrefix+"1"] = f.secret("env-key-of-annotator-one-abcd")
	got := decodeInto[KeyView](t, f.call(http.MethodDelete, "/api/keys/1", nil, http.StatusOK))
	if got != (KeyView{Annotator: "1", Key: "****abcd", KeyFromEnv: true}) {
		t.Errorf("reply = %+v", got)
	}
	f.call(http.MethodDelete, "/api/keys/9", nil, http.StatusNotFound)
	f.load()
}

func TestTestKeyMakesOneRealCall(t *testing.T) {
	good, spent := "good-key-0123456789abcd", "spent-key-0123456789ef01"
	srv, err := fake.Start(fake.Options{Keys: map[string]fake.Key{good: {}, spent: {NoQuota: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	f := newConfigFixture(t)
	f.writeFile(config.SettingsFile, geminiSettings(srv.URL()))
	f.writeFile(config.KeysFile, fmt.Sprintf(`{"annotator_1": %q, "annotator_2": %q}`, f.secret(good), f.secret(spent)))

	got := decodeInto[KeyTest](t, f.call(http.MethodPost, "/api/keys/1/test", nil, http.StatusOK))
	if !got.OK || got.Class != "ok" || got.Annotator != "1" || got.Verdict != "valid" || got.LatencyMS < 0 {
		t.Errorf("good key: %+v", got)
	}
	got = decodeInto[KeyTest](t, f.call(http.MethodPost, "/api/keys/2/test", nil, http.StatusOK))
	if got.OK || got.Class != "no_quota" || got.Detail == "" {
		t.Errorf("spent key: %+v", got)
	}
	wrong := f.secret("wrong-key-0123456789fedc")
	f.call(http.MethodPut, "/api/keys/2", map[string]string{"key": wrong}, http.StatusOK)
	got = decodeInto[KeyTest](t, f.call(http.MethodPost, "/api/keys/2/test", nil, http.StatusOK))
	if got.OK || got.Class != "invalid_key" || got.Verdict != "invalid key" {
		t.Errorf("wrong key: %+v", got)
	}
	if got = decodeInto[KeyTest](t, f.call(http.MethodPost, "/api/keys/3/test", nil, http.StatusOK)); got.OK || got.Class != "no_key" || !strings.Contains(got.Detail, "PUT /api/keys/3") {
		t.Errorf("no key: %+v", got)
	}
	if got = decodeInto[KeyTest](t, f.call(http.MethodPost, "/api/keys/4/test", nil, http.StatusOK)); !got.OK || got.Class != "offline" {
		t.Errorf("offline: %+v", got)
	}
	wantProblem(t, f.call(http.MethodPost, "/api/keys/8/test", nil, http.StatusNotFound), "path.annotator", "not in the config")
	if n, err := f.st.CountSamples(t.Context()); err != nil || n != 0 {
		t.Errorf("a key test stored something: %d, %v", n, err)
	}
	if !strings.Contains(f.logs.String(), "class=invalid_key") {
		t.Errorf("no log line for the test:\n%s", f.logs.String())
	}
}

func TestTestKeyReportsAnUnreachableProvider(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	f := newConfigFixture(t)
	f.writeFile(config.SettingsFile, geminiSettings("http://"+addr))
	f.writeFile(config.KeysFile, `{"annotator_1": "`+f.secret("some-key-0123456789")+`", "annotator_2": "x-key-0123456789"}`)
	got := decodeInto[KeyTest](t, f.call(http.MethodPost, "/api/keys/1/test", nil, http.StatusOK))
	if got.OK || got.Class != "unreachable" || got.Detail == "" {
		t.Errorf("closed port: %+v", got)
	}
}

func TestScrubKeyMasksTheKeyAndPiecesOfIt(t *testing.T) {
	key := "sk-proj-abcdefghijklmnop1234"
	for _, tc := range []struct{ in, want string }{
		{"refused " + key + " today", "refused **** today"},
		{"Incorrect API key provided: sk-proj-****************1234.", "Incorrect API key provided: ********************1234."},
		{"tail ijklmnop1234 shown", "tail **** shown"},
		{"a middle piece defghijklmnop1 and a short one 1234", "a middle piece **** and a short one 1234"},
		{"nothing of it", "nothing of it"},
	} {
		if got := scrubKey(tc.in, key); got != tc.want {
			t.Errorf("scrubKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := scrubKey("x", ""); got != "x" {
		t.Errorf("empty key: %q", got)
	}
}

func TestTestKeyWorksWhileOtherKeysAreMissing(t *testing.T) {
	good := "good-key-0123456789abcd"
	srv, err := fake.Start(fake.Options{Keys: map[string]fake.Key{good: {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	f := newConfigFixture(t)
	f.writeFile(config.SettingsFile, geminiSettings(srv.URL()))
	f.writeFile(config.KeysFile, `{"annotator_1": "`+f.secret(good)+`"}`)
	if got := decodeInto[ConfigView](t, f.call(http.MethodGet, "/api/config", nil, http.StatusOK)); len(got.Problems) != 1 || !strings.Contains(got.Problems[0], "annotator 2") {
		t.Fatalf("problems: %q", got.Problems)
	}

	if got := decodeInto[KeyTest](t, f.call(http.MethodPost, "/api/keys/1/test", nil, http.StatusOK)); !got.OK || got.Class != "ok" {
		t.Errorf("annotator 1: %+v", got)
	}
	if got := decodeInto[KeyTest](t, f.call(http.MethodPost, "/api/keys/2/test", nil, http.StatusOK)); got.OK || got.Class != "no_key" {
		t.Errorf("annotator 2: %+v", got)
	}
	if n := srv.Stats().Requests; n != 1 {
		t.Errorf("the fake provider saw %d requests, want 1 (no stand-in key is ever sent)", n)
	}
	// Other problems still make the config unusable.
	f.writeFile(config.SettingsFile, strings.Replace(geminiSettings(srv.URL()), `"request_timeout_seconds": 5`, `"request_timeout_seconds": 5, "batch_size": 0`, 1))
	f.call(http.MethodPost, "/api/keys/1/test", nil, http.StatusServiceUnavailable)
}
