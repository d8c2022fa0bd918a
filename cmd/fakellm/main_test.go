package main

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer lets the test read what run writes from another goroutine.
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

func TestRunServesAndPrintsWhereAndStats(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--keys", "k1,k2", "--rpm", "1"}, &out) }()

	urlLine := regexp.MustCompile(`openai base URL: (\S+)`)
	deadline := time.Now().Add(5 * time.Second)
	for urlLine.FindStringSubmatch(out.String()) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no URL printed: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	base := urlLine.FindStringSubmatch(out.String())[1]
	for _, want := range []int{200, 429} {
		req, _ := http.NewRequest(http.MethodPost, base+"/chat/completions",
			strings.NewReader(`{"model": "m", "messages": [{"role": "user", "content": "hi"}]}`))
		req.Header.Set("Authorization", "Bearer k2")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("status %d, want %d", resp.StatusCode, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"gemini base URL: http://127.0.0.1:", "keys: k1,k2", "requests=2 accepted=1 rate_limited=1", "k2=1"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--faults", "hang,gremlins"},
		{"--fault-rate", "1.5"},
		{"--addr", "256.0.0.1:1"},
	} {
		if err := run(context.Background(), args, &bytes.Buffer{}); err == nil {
			t.Errorf("run %v: no error", args)
		}
	}
}
