package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// concurrency bounds the runs worked on at once: enough to finish 30 runs quickly, few enough
// not to flood the server.
const concurrency = 8

// restartGrace is added to the heartbeat timeout when waiting for a run to stop on restart:
// the sample in flight may take up to the heartbeat timeout.
const restartGrace = 30 * time.Second

// signals maps the control commands to the control (Update, or signal for older runs) they send.
var signals = map[string]string{
	"pause":  contract.SignalPause,
	"resume": contract.SignalResume,
	"stop":   contract.SignalStop,
	"reset":  contract.SignalReset,
}

// addSelector registers --all, --annotator and --domain.
func addSelector(fs *pflag.FlagSet, sel *runs.Selector) {
	fs.BoolVar(&sel.All, "all", false, "every run of the config")
	fs.StringVar(&sel.Annotator, "annotator", "", "the runs of annotator `N`")
	fs.StringVar(&sel.Domain, "domain", "", "the runs of domain `D` (urgency, therapeutic, intensity, adjunct, modality, redressal)")
}

// controlCommand is start, restart, or a command that sends the signal of the same name.
func controlCommand(name, summary, about, example string) command {
	return command{
		name: name, args: selection, summary: summary, about: about, example: example,
		flags: func(fs *pflag.FlagSet) func(context.Context, *invocation) error {
			var sel runs.Selector
			addSelector(fs, &sel)
			return func(ctx context.Context, in *invocation) error {
				return runControl(ctx, in, name, sel)
			}
		},
	}
}

func runControl(ctx context.Context, in *invocation, name string, sel runs.Selector) error {
	if err := in.noArgs(); err != nil {
		return err
	}
	ctl, pairs, err := in.controller(sel)
	if err != nil {
		return err
	}
	cfg := ctl.Config
	starts := name == "start" || name == "restart"
	if starts && sel.All {
		pairs = enabledOnly(cfg, pairs)
		if len(pairs) == 0 {
			fmt.Fprintln(in.stderr, "starter: no run is enabled in the config; nothing to do")
			return nil
		}
	}

	cl, err := in.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctl.Client = cl

	var op func(context.Context, runs.Pair) runs.Result
	switch name {
	case "start", "restart":
		ok, err := runs.EnsureSearchAttributes(ctx, cl, in.common.Namespace)
		if err != nil {
			// Search attributes only make runs filterable in the Web UI: start without them.
			fmt.Fprintf(in.stderr, "starter: warning: %v; starting runs without search attributes\n", err)
		}
		ctl.SearchAttributes = ok
		// Changed limits in settings.json reach running quota pools with the start.
		quotas := runs.QuotaClient{Client: cl, TaskQueue: in.common.TaskQueue}
		for _, a := range runs.PoolAnnotators(cfg) {
			if err := quotas.Configure(ctx, a.QuotaPool, a.QuotaLimits(cfg.Global)); err != nil {
				fmt.Fprintf(in.stderr, "starter: warning: %v\n", err)
			}
		}
		op = ctl.Start
		if name == "restart" {
			wait := cfg.Global.HeartbeatTimeout + restartGrace
			op = func(ctx context.Context, p runs.Pair) runs.Result { return ctl.Restart(ctx, p, wait) }
		}
	default:
		ctrl := signals[name]
		// A pause or stop answers once the sample in flight is stored.
		wait := cfg.Global.HeartbeatTimeout + restartGrace
		op = func(ctx context.Context, p runs.Pair) runs.Result {
			ctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			r, _ := ctl.Control(ctx, p, ctrl, nil)
			return r
		}
	}

	results := make([]runs.Result, len(pairs))
	parallel(len(pairs), concurrency, func(i int) { results[i] = op(ctx, pairs[i]) })
	return report(in, name, results)
}

// report prints one line per run and fails the command when any run's operation failed.
func report(in *invocation, name string, results []runs.Result) error {
	fmt.Fprint(in.stdout, formatResults(results))
	failed := 0
	for _, r := range results {
		if r.Outcome == runs.Failed {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%s failed for %d of %d %s", name, failed, len(results), plural(len(results), "run", "runs"))
	}
	return nil
}

// controller loads the config and selects the runs sel names.
func (in *invocation) controller(sel runs.Selector) (*runs.Controller, []runs.Pair, error) {
	cfg, err := in.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	ctl := &runs.Controller{Config: cfg, Namespace: in.common.Namespace, TaskQueue: in.common.TaskQueue}
	pairs, err := ctl.Select(sel)
	if err != nil {
		return nil, nil, &usageError{msg: err.Error()}
	}
	return ctl, pairs, nil
}

// connect opens the store and dials Temporal for ctl; done releases both.
func (in *invocation) connect(ctx context.Context, ctl *runs.Controller) (st store.Store, done func(), err error) {
	if st, err = in.common.OpenStore(ctx); err != nil {
		return nil, nil, err
	}
	cl, err := in.dial(ctx)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	ctl.Client, ctl.Store = cl, st
	return st, func() { cl.Close(); st.Close() }, nil
}

func enabledOnly(cfg *config.Config, pairs []runs.Pair) []runs.Pair {
	var out []runs.Pair
	for _, p := range pairs {
		if enabled(cfg, p) {
			out = append(out, p)
		}
	}
	return out
}

func enabled(cfg *config.Config, p runs.Pair) bool {
	a, ok := cfg.Annotator(p.Annotator)
	return ok && a.Domains[p.Domain].Enabled
}

// formatResults prints one aligned line per run: "annotation-1-urgency   started   target 60",
// "signalled pause", "error <detail>"; a note such as the target goes in a third column.
func formatResults(results []runs.Result) string {
	rows := make([][]string, len(results))
	for i, r := range results {
		detail := strings.Join(strings.Fields(r.Detail), " ")
		switch {
		case r.Outcome == runs.Signalled || r.Outcome == runs.Failed:
			rows[i] = []string{r.Run, strings.TrimSpace(r.Outcome + " " + detail)}
		default:
			rows[i] = []string{r.Run, r.Outcome, detail}
		}
	}
	return layout(rows, nil)
}
