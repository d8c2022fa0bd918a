package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/mhannotator/mha/internal/cost"
	"github.com/mhannotator/mha/internal/prompts"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

var costCommand = command{
	name:    "cost",
	args:    "[--json]",
	summary: "Show the tokens and estimated cost of the stored annotations",
	about: "Sums the tokens the providers reported for the stored annotations (re-asks included) per\n" +
		"run, annotator and domain, and prices them with the \"prices\" table of settings.json\n" +
		"(US dollars per million input and output tokens, by model name). A model without a price\n" +
		"shows tokens and no cost. `starter start --dry-run` estimates runs before they start.",
	example: "starter cost\n  starter cost --json",
	flags: func(fs *pflag.FlagSet) func(context.Context, *invocation) error {
		asJSON := fs.Bool("json", false, "print the report as JSON")
		return func(ctx context.Context, in *invocation) error {
			if err := in.noArgs(); err != nil {
				return err
			}
			cfg, err := in.loadConfig()
			if err != nil {
				return err
			}
			st, err := in.common.OpenStore(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			stats, err := st.Stats(ctx, store.Filter{})
			if err != nil {
				return err
			}
			r := cost.Used(cfg, stats)
			if *asJSON {
				return writeJSON(in, r)
			}
			rows := [][]string{{"annotator", "domain", "model", "annotations", "input tokens", "output tokens", "cost (USD)", "cache hits"}}
			for _, l := range append(r.Runs, r.Total) {
				rows = append(rows, append(costRow(l), fmt.Sprintf("%.0f%%", 100*l.CacheHit)))
			}
			rows[len(rows)-1][0] = "all"
			fmt.Fprint(in.stdout, layout(rows, []bool{false, false, false, true, true, true, true, true}))
			if len(r.Unpriced) > 0 {
				fmt.Fprintf(in.stdout, "\nNo price in settings.json for: %v; add them under \"prices\" to see their cost.\n", r.Unpriced)
			}
			return nil
		}
	},
}

func costRow(l cost.Line) []string {
	return []string{l.Annotator, l.Domain, l.Model, strconv.Itoa(l.Annotations), strconv.FormatInt(l.InputTokens, 10),
		strconv.FormatInt(l.OutputTokens, 10), dollars(l.Cost)}
}

// dollars prints a cost to the cent, finer when it is under a cent; "-" when unknown.
func dollars(c *float64) string {
	switch {
	case c == nil:
		return "-"
	case *c != 0 && *c < 0.01:
		return fmt.Sprintf("%.4f", *c)
	}
	return fmt.Sprintf("%.2f", *c)
}

func writeJSON(in *invocation, v any) error {
	enc := json.NewEncoder(in.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// dryRun prints what starting pairs would cost, and starts nothing.
func dryRun(ctx context.Context, in *invocation, ctl *runs.Controller, pairs []runs.Pair) error {
	st, err := in.common.OpenStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	want := make([]cost.Pair, len(pairs))
	for i, p := range pairs {
		want[i] = cost.Pair(p)
	}
	e := cost.Estimator{Config: ctl.Config, Store: st, Prompts: prompts.Library{Dir: filepath.Join(in.common.ConfigDir, "prompts")}}
	est, err := e.Runs(ctx, want)
	if err != nil {
		return err
	}
	rows := [][]string{{"annotator", "domain", "model", "samples left", "input tokens", "output tokens", "cost (USD)", "at most"}}
	for _, r := range append(est.Runs, est.Total) {
		row := costRow(r.Line)
		row[3] = strconv.Itoa(r.Samples)
		rows = append(rows, append(row, dollars(r.CostMax)))
	}
	rows[len(rows)-1][0] = "all"
	fmt.Fprint(in.stdout, layout(rows, []bool{false, false, false, true, true, true, true, true}))
	fmt.Fprintf(in.stdout, "\nDry run: nothing was started. Estimate: %s.\n", est.Note)
	return nil
}
