package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm/providers"
)

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
	res, err := providers.CheckKey(ctx, ann, cfg.Global)
	if err != nil {
		return err
	}
	// The key is shown masked; Secret never prints itself.
	subject := fmt.Sprintf("annotator %s (%s, model %s, key %s)", id, ann.Provider, ann.ModelName, ann.APIKey)
	switch {
	case res.OK:
		fmt.Fprintf(in.stdout, "%s: valid\n", subject)
		return nil
	case res.Class == providers.ClassNoKey:
		fmt.Fprintf(in.stdout, "%s: %s\n", subject, res.Verdict)
		return fmt.Errorf("annotator %s has no API key: set %q in %s or the %s environment variable",
			id, config.KeyName(id), config.KeysFile, config.KeyEnvPrefix+id)
	}
	fmt.Fprintf(in.stdout, "%s: %s\n  %s\n", subject, res.Verdict, res.Detail)
	if res.Kind != "" {
		return fmt.Errorf("the key of annotator %s did not pass: %s", id, res.Verdict)
	}
	return fmt.Errorf("the key of annotator %s could not be tested: %s", id, res.Detail)
}
