package main

import (
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/llm/fake"
)

func TestTestKeyClassifiesTheKeyWithoutStoringAnything(t *testing.T) {
	srv, err := fake.Start(fake.Options{Keys: map[string]fake.Key{"good-key-123456": {}, "spent-key-123456": {NoQuota: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	f := newFixture(t)
	f.write(t, "config/settings.json", `{"global": {"provider": "gemini", "base_url": "`+srv.URL()+`", "request_timeout_seconds": 5},
		"annotators": {"1": {}, "2": {}, "3": {}, "4": {"provider": "offline"}}}`)
	f.write(t, "config/api_keys.json", `{"annotator_1": "good-key-123456", "annotator_2": "bad-key-1234567", "annotator_3": "spent-key-123456"}`)

	o := f.run(t, "test-key", "--annotator", "1")
	o.expect(t, exitOK)
	if !strings.Contains(o.stdout, "annotator 1 (gemini") || !strings.Contains(o.stdout, ": valid") {
		t.Fatalf("stdout: %s", o.stdout)
	}
	for _, tc := range []struct{ id, want string }{{"2", "invalid key"}, {"3", "no quota"}} {
		o := f.run(t, "test-key", "--annotator", tc.id)
		o.expect(t, exitFail, tc.want)
		if strings.Contains(o.stdout+o.stderr, "key-123456") {
			t.Fatalf("test-key printed the key:\n%s%s", o.stdout, o.stderr)
		}
	}
	srv.Inject(fake.Fault{Kind: fake.ModelNotFound, Times: 1})
	f.run(t, "test-key", "--annotator", "1").expect(t, exitFail, "model not found")
	if o := f.run(t, "test-key", "--annotator", "4"); o.code != exitOK || !strings.Contains(o.stdout, "offline") {
		t.Fatalf("offline annotator: exit %d, stdout %s", o.code, o.stdout)
	}
	f.run(t, "test-key").expect(t, exitUsage, "--annotator")
	if n, err := f.openStore(t).CountSamples(t.Context()); err != nil || n != 0 {
		t.Fatalf("store holds %d samples (%v); test-key must store nothing", n, err)
	}
}

func TestTestKeyReportsAnUnreachableProvider(t *testing.T) {
	f := newFixture(t)
	f.write(t, "config/settings.json", `{"global": {"provider": "openai", "base_url": "http://`+closedAddress(t)+`", "request_timeout_seconds": 2, "heartbeat_timeout_seconds": 5},
		"annotators": {"1": {}}}`)
	f.write(t, "config/api_keys.json", `{"annotator_1": "some-key-1234567"}`)
	f.run(t, "test-key", "--annotator", "1").expect(t, exitFail, "unreachable")
}
