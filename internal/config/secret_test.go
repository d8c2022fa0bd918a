package config

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretMasksShowAtMostTheLastFourCharactersOfLongKeys(t *testing.T) {
	cases := []struct {
		name, key, want string
	}{
		{"an empty key shows none", "", "(none)"},
		{"a short key shows only stars", "abc", "****"},
		{"an 11-character key shows only stars", "abcdefghijk", "****"},
		{"a 12-character key shows its last four", "abcdefghijkl", "****ijkl"},
		{"a long key shows its last four", "AIzaSyD-very-secret-XYZ9", "****XYZ9"},
		{"characters are counted, not bytes", "ééééééééééé1", "****ééé1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Secret(c.key).String(); got != c.want {
				t.Errorf("String() = %q, want %q", got, c.want)
			}
			if got := Secret(c.key).Reveal(); got != c.key {
				t.Errorf("Reveal() = %q, want the key", got)
			}
		})
	}
}

func TestSecretNeverShowsInPrintsJSONOrLogs(t *testing.T) {
	const key = "sk-very-secret-key-0123456789"
	cfg := mustParse(t, []byte(`{"global": {"provider": "openai"}, "annotators": {"1": {"urgency": {"enabled": true}}}}`),
		nil, envOf(map[string]string{"MHA_API_KEY_1": key}))
	a, _ := cfg.Annotator("1")
	if a.APIKey.Reveal() != key {
		t.Fatalf("the key did not load")
	}

	outputs := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		outputs["fmt "+verb+" of the config"] = fmt.Sprintf(verb, cfg)
		outputs["fmt "+verb+" of the annotator"] = fmt.Sprintf(verb, a)
		outputs["fmt "+verb+" of the secret"] = fmt.Sprintf(verb, a.APIKey)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outputs["json of the config"] = string(js)

	var text, jsonLog bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&text, nil), slog.NewJSONHandler(&jsonLog, nil)} {
		log := slog.New(h)
		log.Info("loaded", "key", a.APIKey, "annotator", a, "config", cfg)
		log.Info("grouped", slog.Group("g", slog.Any("key", a.APIKey)))
	}
	outputs["slog text"] = text.String()
	outputs["slog json"] = jsonLog.String()

	for name, out := range outputs {
		for _, leak := range []string{key, "very-secret", hex.EncodeToString([]byte(key))[:16]} {
			if strings.Contains(strings.ToLower(out), strings.ToLower(leak)) {
				t.Errorf("%s shows the key: %s", name, out)
			}
		}
	}
	if !strings.Contains(outputs["json of the config"], `"APIKey":"****6789"`) {
		t.Errorf("json should show the mask, got %s", js)
	}
	if !strings.Contains(outputs["slog text"], "key=****6789") {
		t.Errorf("slog should show the mask, got %s", text.String())
	}
}
