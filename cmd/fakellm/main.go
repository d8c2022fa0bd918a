// Command fakellm runs the fake LLM provider (Gemini and OpenAI wire formats) for manual runs
// and demos: point a provider's base URL at it and watch quotas and faults at work.
package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/mhannotator/mha/internal/llm/fake"
)

// statsInterval is how often the stats line is printed.
const statsInterval = 10 * time.Second

// faultAliases are short names for the kinds people ask for most.
var faultAliases = map[string]fake.FaultKind{
	"reset":  fake.ResetConnection,
	"stall":  fake.StallStream,
	"5xx":    fake.ServerError,
	"429":    fake.RateLimitMinute,
	"safety": fake.SafetyBlockPrompt,
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fakellm:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := pflag.NewFlagSet("fakellm", pflag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8089", "listen address")
	keys := fs.StringSlice("keys", []string{"fake-key-1", "fake-key-2", "fake-key-3", "fake-key-4", "fake-key-5"}, "accepted API keys")
	rpm := fs.Int("rpm", 0, "requests per minute per key (0 = unlimited)")
	rpd := fs.Int("rpd", 0, "requests per day per key, reset at midnight America/Los_Angeles (0 = unlimited)")
	latency := fs.Duration("latency", 0, "delay before every answer")
	jitter := fs.Duration("jitter", 0, "uniform random extra delay, 0..jitter")
	seed := fs.Int64("seed", 1, "seed of the jitter and random faults")
	chunks := fs.Int("chunks", 4, "text deltas per streamed reply")
	faultRate := fs.Float64("fault-rate", 0, "probability that a request gets a random fault (e.g. 0.1)")
	faultNames := fs.StringSlice("faults", []string{"hang", "reset", "5xx", "malformed", "safety"},
		"kinds of random faults: "+kindList()+", or the aliases reset, stall, 5xx, 429, safety")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *faultRate < 0 || *faultRate > 1 {
		return fmt.Errorf("--fault-rate %v is not a probability (0..1)", *faultRate)
	}
	var kinds []fake.FaultKind
	for _, name := range *faultNames {
		kind, ok := faultAliases[strings.ToLower(strings.TrimSpace(name))]
		if !ok {
			var err error
			if kind, err = fake.ParseFaultKind(name); err != nil {
				return fmt.Errorf("--faults: %w (want %s)", err, kindList())
			}
		}
		kinds = append(kinds, kind)
	}
	opts := fake.Options{
		Addr: *addr, Keys: map[string]fake.Key{}, Latency: *latency, Jitter: *jitter, Seed: *seed,
		ChunkCount: *chunks, FaultRate: *faultRate, RandomFaults: kinds,
	}
	for _, k := range *keys {
		opts.Keys[k] = fake.Key{RPM: *rpm, RPD: *rpd}
	}

	s, err := fake.Start(opts)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(out, "gemini base URL: %s (POST /v1beta/models/{model}:generateContent, :streamGenerateContent?alt=sse)\n", s.URL())
	fmt.Fprintf(out, "openai base URL: %s/v1 (POST /chat/completions)\nkeys: %s\n", s.URL(), strings.Join(*keys, ","))
	if *faultRate > 0 {
		fmt.Fprintf(out, "random faults: %.0f%% of requests, from %s\n", *faultRate*100, strings.Join(*faultNames, ","))
	}

	tick := time.NewTicker(statsInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, statsLine(s.Stats()))
			return nil
		case <-tick.C:
			fmt.Fprintln(out, statsLine(s.Stats()))
		}
	}
}

func kindList() string {
	names := make([]string, len(fake.FaultKinds))
	for i, k := range fake.FaultKinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// statsLine sums the per-key counters, with each key's accepted count at the end.
func statsLine(st fake.Stats) string {
	var total fake.KeyStats
	keys := slices.Sorted(maps.Keys(st.ByKey))
	perKey := make([]string, 0, len(keys))
	for _, k := range keys {
		ks := st.ByKey[k]
		total.Accepted += ks.Accepted
		total.RateLimited += ks.RateLimited
		total.Rejected += ks.Rejected
		total.Faulted += ks.Faulted
		perKey = append(perKey, fmt.Sprintf("%s=%d", k, ks.Accepted))
	}
	return fmt.Sprintf("%s requests=%d accepted=%d rate_limited=%d rejected=%d faulted=%d duplicates=%d in_flight=%d max_in_flight=%d accepted_by_key[%s]",
		time.Now().Format(time.TimeOnly), st.Requests, total.Accepted, total.RateLimited, total.Rejected, total.Faulted,
		st.Duplicates, st.InFlight, st.MaxInFlight, strings.Join(perKey, " "))
}
