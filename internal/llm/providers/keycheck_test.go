package providers

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/fake"
)

func TestCheckKeyClassifiesEachOutcome(t *testing.T) {
	srv, err := fake.Start(fake.Options{Keys: map[string]fake.Key{testKey: {}, "spent-key-0123456789": {NoQuota: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	a, g := load(t, config.ProviderGemini, srv.URL(), map[string]any{"request_timeout_seconds": 5})

	res, err := CheckKey(t.Context(), a, g)
	if err != nil || !res.OK || res.Class != ClassOK || res.Verdict != "valid" || res.Detail != "" || res.Latency <= 0 {
		t.Fatalf("good key: %+v, %v", res, err)
	}
	for _, tc := range []struct {
		key, class, verdict string
	}{
		{"wrong-key-0123456789", string(llm.InvalidKey), "invalid key"},
		{"spent-key-0123456789", string(llm.NoQuota), "no quota for this model"},
	} {
		a.APIKey = config.Secret(tc.key)
		res, err := CheckKey(t.Context(), a, g)
		if err != nil || res.OK || res.Class != tc.class || res.Kind != llm.Kind(tc.class) || res.Verdict != tc.verdict || res.Detail == "" {
			t.Errorf("key %s: %+v, %v", tc.key, res, err)
		}
		if strings.Contains(res.Detail, tc.key) {
			t.Errorf("the detail holds the key: %s", res.Detail)
		}
	}

	a.APIKey = ""
	if res, err := CheckKey(t.Context(), a, g); err != nil || res.OK || res.Class != ClassNoKey {
		t.Errorf("no key: %+v, %v", res, err)
	}
	a.Provider = config.ProviderOffline
	if res, err := CheckKey(t.Context(), a, g); err != nil || !res.OK || res.Class != ClassOffline {
		t.Errorf("offline: %+v, %v", res, err)
	}
}

func TestCheckKeyReportsAnUnreachableProviderWithinTheRequestTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	a, g := load(t, config.ProviderOpenAI, "http://"+addr, map[string]any{"request_timeout_seconds": 1, "heartbeat_timeout_seconds": 5})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	res, err := CheckKey(ctx, a, g)
	if err != nil || res.OK || res.Class != ClassUnreachable || res.Verdict != "unreachable" || res.Detail == "" {
		t.Fatalf("closed port: %+v, %v", res, err)
	}
}
