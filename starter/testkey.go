package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/providers"
)

// completeGrace lets the provider's own request timeout end the call, so its classified
// error is what gets reported.
const completeGrace = 2 * time.Second

var testKeyCommand = command{
	name:    "test-key",
	args:    "--annotator N",
	summary: "Make one real call with an annotator's key and model, and say whether they work",
	about: "Sends one small request with the annotator's key, model and base URL and prints the\n" +
		"classified result: valid, invalid key, no quota, model not found, rate limited, daily quota\n" +
		"spent, or unreachable. Nothing is stored and no run is touched. Exit code 0 means valid.",
	example: "starter test-key --annotator 1",
	flags: func(fs *pflag.FlagSet) func(context.Context, *invocation) error {
		annotator := fs.String("annotator", "", "the annotator whose key to test")
		return func(ctx context.Context, in *invocation) error { return runTestKey(ctx, in, *annotator) }
	},
}

// verdicts says, for each failure class, what test-key reports.
var verdicts = map[llm.Kind]string{
	llm.InvalidKey:    "invalid key",
	llm.NoQuota:       "no quota for this model",
	llm.ModelNotFound: "model not found",
	llm.RateLimited:   "rate limited (the key was accepted; try again later)",
	llm.DailyQuota:    "daily quota spent (the key was accepted)",
	llm.Unavailable:   "unreachable",
	llm.BadRequest:    "request refused",
}

func runTestKey(ctx context.Context, in *invocation, id string) error {
	if err := in.noArgs(); err != nil {
		return err
	}
	if id == "" {
		return usagef("--annotator is required")
	}
	cfg, err := in.loadConfig()
	if err != nil {
		return err
	}
	ann, ok := cfg.Annotator(id)
	if !ok {
		return usagef("--annotator: %q is not in the config", id)
	}
	if ann.Provider == config.ProviderOffline {
		fmt.Fprintf(in.stdout, "annotator %s uses the offline annotator: no key to test\n", id)
		return nil
	}
	p, err := providers.New(ann, cfg.Global)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Global.RequestTimeout+completeGrace)
	defer cancel()
	err = providers.Check(ctx, p)
	// The key is shown masked; Secret never prints itself.
	subject := fmt.Sprintf("annotator %s (%s, model %s, key %s)", id, ann.Provider, ann.ModelName, ann.APIKey)
	if err == nil {
		fmt.Fprintf(in.stdout, "%s: valid\n", subject)
		return nil
	}
	var e *llm.Error
	if errors.As(err, &e) {
		fmt.Fprintf(in.stdout, "%s: %s\n  %s\n", subject, verdicts[e.Kind], e.Error())
		return fmt.Errorf("the key of annotator %s did not pass: %s", id, verdicts[e.Kind])
	}
	fmt.Fprintf(in.stdout, "%s: unreachable\n  %v\n", subject, err)
	return fmt.Errorf("the key of annotator %s could not be tested: %w", id, err)
}
