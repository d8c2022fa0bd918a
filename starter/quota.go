package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/runs"
)

var quotaCommand = command{
	name:    "quota",
	args:    "[--json]",
	summary: "Show the request quota of every quota pool",
	about: "Queries the quota workflow (quota-<pool>) of every pool the config's network annotators use:\n" +
		"limits, calls in the current minute and day, the next free slot and any 429 penalty.\n" +
		"A pool starts with its first request, so a pool nobody has used yet shows as not_started.",
	example: "starter quota --json",
	flags: func(fs *pflag.FlagSet) func(context.Context, *invocation) error {
		asJSON := fs.Bool("json", false, "print one JSON array of pool states")
		return func(ctx context.Context, in *invocation) error { return runQuota(ctx, in, *asJSON) }
	},
}

func runQuota(ctx context.Context, in *invocation, asJSON bool) error {
	if err := in.noArgs(); err != nil {
		return err
	}
	cfg, err := in.loadConfig()
	if err != nil {
		return err
	}
	pools := runs.Pools(cfg)
	cl, err := in.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	q := runs.QuotaClient{Client: cl, TaskQueue: in.common.TaskQueue}
	states := make([]contract.QuotaStatus, len(pools))
	started := make([]bool, len(pools))
	errs := make([]error, len(pools))
	parallel(len(pools), concurrency, func(i int) { states[i], started[i], errs[i] = q.State(ctx, pools[i]) })
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	if asJSON {
		b, err := json.MarshalIndent(states, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(in.stdout, string(b))
		return nil
	}
	if len(pools) == 0 {
		fmt.Fprintln(in.stdout, "no quota pools: every annotator uses the offline provider")
		return nil
	}
	fmt.Fprint(in.stdout, renderQuota(states, started, time.Now()))
	return nil
}

// batches is a pool's batch jobs at the provider and their input tokens, against the limits.
func batches(s contract.QuotaStatus) string {
	if s.Batches == 0 && s.MaxBatches == 0 && s.MaxEnqueuedTokens == 0 {
		return "-"
	}
	limit := func(n int) string {
		if n == 0 {
			return ""
		}
		return fmt.Sprintf("/%d", n)
	}
	return fmt.Sprintf("%d%s (%d%s tokens)", s.Batches, limit(s.MaxBatches), s.EnqueuedTokens, limit(s.MaxEnqueuedTokens))
}

// renderQuota is the table of pool states.
func renderQuota(states []contract.QuotaStatus, started []bool, now time.Time) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	fmt.Fprintln(w, "POOL\tMINUTE\tDAY\tTOKENS/MIN\tBATCHES\tNEXT SLOT\tPENALTY")
	for i, s := range states {
		if !started[i] {
			fmt.Fprintf(w, "%s\tnot_started\t\t\t\t\t\n", s.Pool)
			continue
		}
		tokens := "-"
		if s.TokensPerMinute > 0 {
			tokens = fmt.Sprintf("%d/%d", s.TokensThisMinute, s.TokensPerMinute)
		}
		next := "now"
		if d := s.NextFreeSlot.Sub(now); d > 0 {
			next = "in " + d.Round(time.Second).String()
		}
		penalty := ""
		if d := s.PenaltyUntil.Sub(now); d > 0 {
			penalty = "429, " + d.Round(time.Second).String() + " left"
		}
		fmt.Fprintf(w, "%s\t%d/%d\t%d/%d\t%s\t%s\t%s\t%s\n", s.Pool, s.CallsThisMinute, s.RequestsPerMinute,
			s.CallsToday, s.RequestsPerDay, tokens, batches(s), next, penalty)
	}
	w.Flush()
	return b.String()
}
