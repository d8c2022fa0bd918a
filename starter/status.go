package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/runs"
)

// statusUnknown marks a run whose status could not be read; its last_error says why.
const statusUnknown = "unknown"

// clearScreen moves the cursor home and clears the terminal, for --watch.
const clearScreen = "\x1b[H\x1b[2J"

var statusCommand = command{
	name:    "status",
	args:    "[--json] [--watch] [--interval 2s] [--all | --annotator N | --domain D]",
	summary: "Show the progress of runs, once or continuously",
	about: "Shows one line per run: status, done of target, malformed and error counts, samples per\n" +
		"minute, restarts and the last error. Without a selector (or with --all) it shows the runs\n" +
		"that are enabled or have been started; --annotator and --domain show every run they name.\n" +
		"--json prints one JSON array of run status documents instead; --watch redraws the table\n" +
		"every --interval until Ctrl-C.",
	example: "starter status --watch --domain urgency\n  starter status --json",
	flags: func(fs *pflag.FlagSet) func(context.Context, *invocation) error {
		var sel runs.Selector
		addSelector(fs, &sel)
		asJSON := fs.Bool("json", false, "print one JSON array of run status documents (with the full last_error)")
		watch := fs.Bool("watch", false, "redraw the table every --interval until Ctrl-C")
		interval := fs.Duration("interval", 2*time.Second, "time between two redraws of --watch")
		return func(ctx context.Context, in *invocation) error {
			return runStatus(ctx, in, sel, *asJSON, *watch, *interval)
		}
	},
}

// statusView is what the status command shows.
type statusView struct {
	ctl      *runs.Controller
	pairs    []runs.Pair
	hideIdle bool // leave out runs that are disabled and were never started
}

func runStatus(ctx context.Context, in *invocation, sel runs.Selector, asJSON, watch bool, interval time.Duration) error {
	if err := in.noArgs(); err != nil {
		return err
	}
	if asJSON && watch {
		return usagef("--json and --watch cannot be combined")
	}
	if interval <= 0 {
		return usagef("--interval must be positive, got %s", interval)
	}
	v := statusView{hideIdle: sel.Annotator == "" && sel.Domain == ""}
	if v.hideIdle {
		sel.All = true
	}
	var err error
	if v.ctl, v.pairs, err = in.controller(sel); err != nil {
		return err
	}
	_, done, err := in.connect(ctx, v.ctl)
	if err != nil {
		return err
	}
	defer done()

	if watch {
		v.watch(ctx, in.stdout, interval)
		return nil
	}
	sts, failed := v.fetch(ctx)
	if asJSON {
		if err := writeJSON(in, sts); err != nil {
			return err
		}
	} else {
		fmt.Fprint(in.stdout, renderTable(sts, false))
	}
	if failed > 0 {
		return fmt.Errorf("could not read the status of %d of %d %s", failed, len(v.pairs), plural(len(v.pairs), "run", "runs"))
	}
	return nil
}

// fetch reads the statuses of the runs to show, in selection order, and counts the runs
// whose status could not be read; those are shown as unknown with the reason.
func (v statusView) fetch(ctx context.Context) ([]contract.Status, int) {
	sts := make([]contract.Status, len(v.pairs))
	errs := make([]error, len(v.pairs))
	parallel(len(v.pairs), concurrency, func(i int) { sts[i], errs[i] = v.ctl.Status(ctx, v.pairs[i]) })
	out := []contract.Status{} // never nil: --json prints [] for no runs
	failed := 0
	for i, p := range v.pairs {
		st := sts[i]
		if errs[i] != nil {
			failed++
			st = contract.Status{WorkflowID: p.ID(), Annotator: p.Annotator, Domain: string(p.Domain),
				Status: statusUnknown, Target: v.ctl.Input(p).Target, LastError: errs[i].Error()}
		}
		if v.hideIdle && st.Status == runs.StatusNotStarted && !runs.Enabled(v.ctl.Config, p) {
			continue
		}
		out = append(out, st)
	}
	return out, failed
}

// watch redraws the table until ctx ends. A terminal gets the screen cleared for each redraw;
// anything else (a file, a pipe) gets successive tables, so a log stays readable.
func (v statusView) watch(ctx context.Context, w io.Writer, interval time.Duration) {
	tty := isTerminal(w)
	for first := true; ; first = false {
		sts, _ := v.fetch(ctx)
		if ctx.Err() != nil {
			return // interrupted while reading: the statuses are incomplete
		}
		table := renderTable(sts, true)
		switch {
		case tty:
			fmt.Fprintf(w, "%s%s   every %s, Ctrl-C to stop\n\n%s", clearScreen, time.Now().Format("15:04:05"), interval, table)
		case first:
			fmt.Fprint(w, table)
		default:
			fmt.Fprint(w, "\n"+table)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
