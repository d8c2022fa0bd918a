package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// concurrency bounds the runs worked on at once: enough to finish 30 runs quickly, few enough
// not to flood the server.
const concurrency = 8

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
			var dry bool
			if name == "start" {
				fs.BoolVar(&dry, "dry-run", false, "start nothing: print the tokens and cost the selected runs' remaining samples are expected to take")
			}
			return func(ctx context.Context, in *invocation) error {
				return runControl(ctx, in, name, sel, dry)
			}
		},
	}
}

func runControl(ctx context.Context, in *invocation, name string, sel runs.Selector, dry bool) error {
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
		pairs = runs.EnabledOnly(cfg, pairs)
		if len(pairs) == 0 {
			fmt.Fprintln(in.stderr, "starter: no run is enabled in the config; nothing to do")
			return nil
		}
	}
	if dry {
		return dryRun(ctx, in, ctl, pairs)
	}

	cl, err := in.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctl.Client = cl
	results := ctl.Apply(ctx, name, pairs, runs.ApplyOptions{
		Warn: func(err error) { fmt.Fprintf(in.stderr, "starter: warning: %v\n", err) },
	})
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
