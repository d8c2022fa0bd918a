package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/mhannotator/mha/internal/runs"
)

var redoCommand = command{
	name:    "redo",
	args:    "[--status error,malformed] " + selection,
	summary: "Annotate again, with the active prompt, the rows that ended badly",
	about: "Deletes the selected runs' stored annotations whose status is in --status (error, malformed,\n" +
		"blocked; ok rows are never touched) and has each run annotate those samples again with the\n" +
		"prompt that is active now. A run that is open is reset: it re-reads its progress and goes back\n" +
		"to the first sample it lacks (a paused run stays paused until resumed). A run that has ended\n" +
		"is started again; a run disabled in settings.json keeps its cleared rows until it is enabled\n" +
		"and started. The deleted rows' replies and errors are gone: export them first to keep them.",
	example: "starter redo --annotator 1 --domain urgency\n  starter redo --status blocked --all",
	flags: func(fs *pflag.FlagSet) func(context.Context, *invocation) error {
		var sel runs.Selector
		addSelector(fs, &sel)
		status := fs.String("status", strings.Join(runs.DefaultRedoStatuses, ","),
			"the stored statuses to redo, a comma `LIST` of "+strings.Join(runs.RedoStatuses, ", "))
		return func(ctx context.Context, in *invocation) error {
			return runRedo(ctx, in, sel, *status)
		}
	},
}

func runRedo(ctx context.Context, in *invocation, sel runs.Selector, statusList string) error {
	if err := in.noArgs(); err != nil {
		return err
	}
	statuses, err := runs.ParseRedoStatuses(statusList)
	if err != nil {
		return usagef("--status: %v", err)
	}
	ctl, pairs, err := in.controller(sel)
	if err != nil {
		return err
	}
	cfg := ctl.Config
	// Dialled before any row is deleted: rows cleared with no server to tell the run would
	// wait for a reset or start by hand.
	st, done, err := in.connect(ctx, ctl)
	if err != nil {
		return err
	}
	defer done()
	cl := ctl.Client
	// Runs that ended are started as `starter start` starts them.
	if ok, err := runs.EnsureSearchAttributes(ctx, cl, in.common.Namespace); err != nil {
		fmt.Fprintf(in.stderr, "starter: warning: %v; starting runs without search attributes\n", err)
	} else {
		ctl.SearchAttributes = ok
	}

	// The reset Update answers once a worker has taken it in.
	wait := cfg.Global.HeartbeatTimeout + runs.StopGrace
	results := make([]runs.Result, len(pairs))
	parallel(len(pairs), concurrency, func(i int) {
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		results[i] = ctl.Redo(ctx, pairs[i], st, statuses)
	})
	return report(in, "redo", results)
}
