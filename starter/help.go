package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/mhannotator/mha/internal/appenv"
)

// command is one subcommand of the starter.
type command struct {
	name    string
	args    string // what follows the name in the synopsis
	summary string // one line, for the overview
	about   string // what it does, for `starter help NAME`
	example string
	// flags registers the command's own flags on fs and returns what runs the command.
	flags func(fs *pflag.FlagSet) func(ctx context.Context, in *invocation) error
}

// selection is the synopsis of the run selector flags.
const selection = "(--all | --annotator N [--domain D] | --domain D)"

var commands = []command{
	importCommand,
	controlCommand("start", "Start the selected runs",
		"Starts the selected runs with the current config. With --all only enabled runs are started;\n"+
			"a run named explicitly but disabled in settings.json is reported as disabled. A run that\n"+
			"is already running is left alone (already_running): there is never a second one.",
		"starter start --all\n  starter start --annotator 1 --domain urgency"),
	controlCommand("pause", "Pause the selected runs after the sample in flight",
		"Signals the selected runs to pause once the sample in flight is stored, so no paid LLM call\n"+
			"is thrown away. Runs that are not running are reported as not_running.",
		"starter pause --annotator 2"),
	controlCommand("resume", "Resume paused (or failed) runs",
		"Signals the selected runs to resume. A failed run resumes from its progress.",
		"starter resume --all"),
	controlCommand("stop", "Stop the selected runs after the sample in flight",
		"Signals the selected runs to stop once the sample in flight is stored. Their progress is\n"+
			"kept in the store; `starter start` continues where they stopped.",
		"starter stop --domain redressal"),
	controlCommand("reset", "Clear the failure of failed runs so they try again",
		"Signals the selected runs to clear their failure and restart attempts and try again.",
		"starter reset --annotator 3 --domain intensity"),
	controlCommand("restart", "Stop the selected runs and start them with the current config",
		"Stops each selected run (waiting for the sample in flight, up to the heartbeat timeout plus\n"+
			"30s), then starts it again, which is how a changed target or batch size reaches a run.\n"+
			"With --all only enabled runs are restarted.",
		"starter restart --annotator 1"),
	redoCommand,
	statusCommand,
	quotaCommand,
	testKeyCommand,
	exportCommand,
	costCommand,
	agreementCommand,
	consensusCommand,
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func commandNames() string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return strings.Join(names, ", ") + ", help"
}

// flagSet builds the parser of c's command line: its own flags plus the common ones, which
// are written to common. It returns what runs the command.
func (c command) flagSet(common *appenv.Common) (*pflag.FlagSet, func(context.Context, *invocation) error) {
	fs := pflag.NewFlagSet(c.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by run
	exec := c.flags(fs)
	common.Register(fs)
	return fs, exec
}

// usage is the text of `starter help NAME`.
func (c command) usage() string {
	own := pflag.NewFlagSet(c.name, pflag.ContinueOnError)
	c.flags(own)
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: starter %s %s\n\n%s\n\nExample:\n  %s\n", c.name, c.args, c.about, c.example)
	if own.HasFlags() {
		fmt.Fprintf(&b, "\nFlags:\n%s", own.FlagUsages())
	}
	fmt.Fprintf(&b, "\nCommon flags (accepted by every command, before or after its name):\n%s", commonUsages())
	return b.String()
}

func commonUsages() string {
	fs := pflag.NewFlagSet("common", pflag.ContinueOnError)
	var c appenv.Common
	c.Register(fs)
	return fs.FlagUsages()
}

// overview is the text of `starter help`.
func overview() string {
	var b strings.Builder
	b.WriteString("starter imports datasets, starts and steers annotation runs on Temporal, shows their\nstatus and exports annotations.\n\n")
	b.WriteString("Usage: starter COMMAND [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-8s  %s\n", c.name, c.summary)
	}
	fmt.Fprintf(&b, "  %-8s  %s\n", "help", "Show the flags and an example of a command")
	b.WriteString("\nRun 'starter help COMMAND' for its flags and an example.\n")
	b.WriteString("Exit codes: 0 success, 1 an operation failed, 2 a usage error.\n")
	return b.String()
}

// help runs `starter help [COMMAND]`; args may hold common flags given before `help`.
func help(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("help", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c appenv.Common
	c.Register(fs)
	err := fs.Parse(args)
	switch {
	case err != nil && !errors.Is(err, pflag.ErrHelp):
		fmt.Fprintf(stderr, "starter: %v\nRun 'starter help' for usage.\n", err)
		return exitUsage
	case fs.NArg() == 0:
		fmt.Fprint(stdout, overview())
		return exitOK
	case fs.NArg() > 1:
		fmt.Fprintf(stderr, "starter: help takes one command name, got %q\n", strings.Join(fs.Args(), " "))
		return exitUsage
	}
	cmd, ok := lookup(fs.Arg(0))
	if !ok {
		fmt.Fprintf(stderr, "starter: unknown command %q (commands: %s)\n", fs.Arg(0), commandNames())
		return exitUsage
	}
	fmt.Fprint(stdout, cmd.usage())
	return exitOK
}
