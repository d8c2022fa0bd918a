package fake

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRPMIsAnExactSlidingWindow(t *testing.T) {
	t0 := time.Date(2026, 3, 10, 10, 0, 7, 0, time.UTC)
	clk := newClock(t0)
	s := start(t, Options{Keys: map[string]Key{key1: {RPM: 3}, key2: {RPM: 3}}, Now: clk.Now})
	steps := []struct {
		at    time.Duration
		retry string // "" = accepted
	}{
		{0, ""},
		{10 * time.Second, ""},
		{20 * time.Second, ""},
		{30 * time.Second, "30s"}, // t0 leaves the window at t0+60s
		{59*time.Second + 500*time.Millisecond, "0.5s"}, // 429s do not count, so the delay only shrinks
		{60 * time.Second, ""},                          // t0 has left
		{61 * time.Second, "9s"},                        // t0+10s leaves at t0+70s
		{70 * time.Second, ""},
	}
	for _, st := range steps {
		clk.Set(t0.Add(st.at))
		res := gemini(t, s, key1, plainText)
		if st.retry == "" {
			if res.status != 200 {
				t.Fatalf("t0+%v: status %d, want 200: %s", st.at, res.status, res.raw)
			}
			continue
		}
		if res.status != 429 {
			t.Fatalf("t0+%v: status %d, want 429", st.at, res.status)
		}
		body := res.json(t)
		if ids := quotaIDs(t, body); len(ids) != 1 || ids[0] != "GenerateRequestsPerMinutePerProjectPerModel-FreeTier" {
			t.Errorf("t0+%v: quotaIds %v", st.at, ids)
		}
		if got := path(t, geminiDetail(t, body, "RetryInfo"), "retryDelay"); got != st.retry {
			t.Errorf("t0+%v: retryDelay %v, want %s", st.at, got, st.retry)
		}
		if got := path(t, geminiDetail(t, body, "QuotaFailure"), "violations", 0, "quotaValue"); got != "3" {
			t.Errorf("quotaValue %v", got)
		}
		msg := path(t, body, "error", "message").(string)
		if !strings.Contains(msg, "limit: 3,") || !strings.Contains(msg, "Please retry in "+st.retry+".") {
			t.Errorf("t0+%v: message %q", st.at, msg)
		}
	}
	ks := s.Stats().ByKey[key1]
	if ks.Accepted != 5 || ks.RateLimited != 3 || len(ks.AcceptedAt) != 5 || !ks.AcceptedAt[3].Equal(t0.Add(time.Minute)) {
		t.Errorf("key stats = %+v", ks)
	}

	// Quota is per key: key2's window is empty.
	if res := gemini(t, s, key2, plainText); res.status != 200 {
		t.Errorf("key2: status %d", res.status)
	}
}

func TestRPMOnOpenAI(t *testing.T) {
	t0 := time.Date(2026, 3, 10, 10, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	s := start(t, Options{Keys: map[string]Key{key1: {RPM: 2}}, Now: clk.Now})
	openai(t, s, key1, "a")
	clk.Set(t0.Add(15 * time.Second))
	openai(t, s, key1, "b")
	clk.Set(t0.Add(20*time.Second + 300*time.Millisecond))
	res := openai(t, s, key1, "c")
	if res.status != 429 {
		t.Fatalf("status %d", res.status)
	}
	body := res.json(t)
	if path(t, body, "error", "code") != "rate_limit_exceeded" || path(t, body, "error", "type") != "requests" {
		t.Errorf("error = %v", body)
	}
	if msg := path(t, body, "error", "message").(string); !strings.Contains(msg, "Limit 2") || !strings.Contains(msg, "try again in 39.7s") {
		t.Errorf("message %q", msg)
	}
	if got := res.header.Get("Retry-After"); got != "40" {
		t.Errorf("Retry-After = %q, want the delay rounded up", got)
	}
}

func TestRPDResetsAtMidnightInTheDayLocation(t *testing.T) {
	pst := time.FixedZone("PST", -8*60*60)
	// 15:59 PST is 23:59 UTC: the UTC day turns over in two minutes, the Pacific one does not.
	t0 := time.Date(2026, 1, 5, 15, 59, 0, 0, pst)
	clk := newClock(t0)
	s := start(t, Options{Keys: map[string]Key{key1: {RPD: 2}}, Now: clk.Now, DayLocation: pst})
	for i := range 2 {
		if res := gemini(t, s, key1, fmt.Sprint("prompt ", i)); res.status != 200 {
			t.Fatalf("request %d: status %d", i, res.status)
		}
	}
	clk.Set(t0.Add(2 * time.Minute)) // 16:01 PST, 00:01 UTC the next day
	res := gemini(t, s, key1, plainText)
	if res.status != 429 {
		t.Fatalf("after UTC midnight: status %d, want 429 until Pacific midnight", res.status)
	}
	if ids := quotaIDs(t, res.json(t)); len(ids) != 1 || ids[0] != "GenerateRequestsPerDayPerProjectPerModel-FreeTier" {
		t.Errorf("quotaIds %v", ids)
	}

	clk.Set(time.Date(2026, 1, 5, 23, 59, 30, 0, pst))
	res = openai(t, s, key1, plainText)
	if res.status != 429 {
		t.Fatalf("openai: status %d", res.status)
	}
	if msg := path(t, res.json(t), "error", "message").(string); !strings.Contains(msg, "requests per day (RPD): Limit 2") || !strings.Contains(msg, "try again in 30s") {
		t.Errorf("openai message %q", msg)
	}

	clk.Set(time.Date(2026, 1, 6, 0, 0, 0, 0, pst))
	if res := gemini(t, s, key1, plainText); res.status != 200 {
		t.Errorf("after Pacific midnight: status %d", res.status)
	}
	if ks := s.Stats().ByKey[key1]; ks.Accepted != 3 || ks.RateLimited != 2 {
		t.Errorf("key stats = %+v", ks)
	}
}

func TestDefaultDayLocationIsPacific(t *testing.T) {
	s := start(t, Options{})
	want := "America/Los_Angeles"
	if _, err := time.LoadLocation(want); err != nil {
		want = "UTC"
	}
	if got := s.opts.DayLocation.String(); got != want {
		t.Errorf("DayLocation = %s, want %s", got, want)
	}
}

func TestNoQuotaKey(t *testing.T) {
	s := start(t, Options{Keys: map[string]Key{key1: {NoQuota: true}}})
	res := gemini(t, s, key1, plainText)
	body := res.json(t)
	if res.status != 429 || path(t, body, "error", "status") != "RESOURCE_EXHAUSTED" {
		t.Fatalf("gemini: status %d: %s", res.status, res.raw)
	}
	if msg := path(t, body, "error", "message").(string); !strings.Contains(msg, "limit: 0") {
		t.Errorf("gemini message %q", msg)
	}
	res = openai(t, s, key1, plainText)
	if res.status != 429 || path(t, res.json(t), "error", "code") != "insufficient_quota" {
		t.Errorf("openai: status %d: %s", res.status, res.raw)
	}
	if ks := s.Stats().ByKey[key1]; ks.RateLimited != 2 || ks.Accepted != 0 {
		t.Errorf("key stats = %+v", ks)
	}
}

func TestDuplicatesCountWorkPaidTwice(t *testing.T) {
	clk := newClock(time.Date(2026, 3, 10, 10, 0, 0, 0, time.UTC))
	s := start(t, Options{Keys: map[string]Key{key1: {RPM: 2}, key2: {}}, Now: clk.Now})
	gemini(t, s, key1, "sample one")
	gemini(t, s, key2, "sample one") // another key: another annotator's work
	gemini(t, s, key1, "sample two")
	if res := gemini(t, s, key1, "sample one"); res.status != 429 { // refused: nothing paid
		t.Fatalf("status %d, want 429", res.status)
	}
	if got := s.Stats().Duplicates; got != 0 {
		t.Fatalf("Duplicates = %d before any repeat was served", got)
	}
	s.ResetStats()
	clk.Set(clk.Now().Add(time.Minute))
	gemini(t, s, key1, "sample one") // served again after the reset: still a repeat
	gemini(t, s, key1, "sample three")
	st := s.Stats()
	if st.Duplicates != 1 || st.Requests != 2 || st.ByKey[key2].Requests != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestLatencyAndInFlight(t *testing.T) {
	s := start(t, Options{Latency: 150 * time.Millisecond, Jitter: 50 * time.Millisecond, Seed: 1})
	begin := time.Now()
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { gemini(t, s, key1, fmt.Sprint("prompt ", i)) })
	}
	eventually(t, "three requests are in flight", func() bool { return s.Stats().InFlight == 3 })
	wg.Wait()
	if d := time.Since(begin); d < 150*time.Millisecond {
		t.Errorf("answered in %v, before Latency", d)
	}
	if st := s.Stats(); st.InFlight != 0 || st.MaxInFlight != 3 {
		t.Errorf("InFlight %d, MaxInFlight %d", st.InFlight, st.MaxInFlight)
	}
}
