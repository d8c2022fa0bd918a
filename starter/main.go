// Command starter is the command line for people and scripts: it imports datasets, starts and
// steers annotation runs, shows their status and exports annotations. Its commands, output
// lines and exit codes are a stable interface that scripts rely on.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"

	"github.com/mhannotator/mha/internal/appenv"
	"github.com/mhannotator/mha/internal/config"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // an operation failed
	exitUsage = 2 // the command line is wrong
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// usageError is a mistake in the command line; it exits 2, so a script can tell it apart
// from a failed operation.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// invocation is what a command runs with.
type invocation struct {
	common appenv.Common
	args   []string // positional arguments after the flags
	stdout io.Writer
	stderr io.Writer
	logger *slog.Logger
}

// run executes the command line args and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	name, rest, err := splitCommand(args)
	switch {
	case errors.Is(err, pflag.ErrHelp):
		fmt.Fprint(stdout, overview())
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "starter: %v\nRun 'starter help' for usage.\n", err)
		return exitUsage
	case name == "":
		fmt.Fprint(stderr, overview())
		return exitUsage
	case name == "help":
		return help(rest, stdout, stderr)
	}
	cmd, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "starter: unknown command %q (commands: %s)\nRun 'starter help' for usage.\n", name, commandNames())
		return exitUsage
	}

	in := &invocation{stdout: stdout, stderr: stderr}
	fs, exec := cmd.flagSet(&in.common)
	err = fs.Parse(rest)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Fprint(stdout, cmd.usage())
		return exitOK
	}
	if err == nil {
		in.args = fs.Args()
		// Flag values are checked before anything is opened or dialled.
		in.logger, err = in.common.Logger(stderr)
		if err != nil {
			err = &usageError{msg: err.Error()}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "starter: %v\nRun 'starter help %s' for usage.\n", err, name)
		return exitUsage
	}
	err = exec(ctx, in)
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "starter: %v\nRun 'starter help %s' for usage.\n", err, name)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "starter: %v\n", err)
		return exitFail
	}
}

// splitCommand finds the command name, so that common flags may come before it as well as
// after; it returns the remaining arguments, those before the name first.
func splitCommand(args []string) (string, []string, error) {
	fs := pflag.NewFlagSet("starter", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(false)
	// Registered only so the parser knows which flags take a value.
	var c appenv.Common
	c.Register(fs)
	if err := fs.Parse(args); err != nil {
		return "", nil, err
	}
	if fs.NArg() == 0 {
		if len(args) > 0 {
			return "", nil, errors.New("no command given")
		}
		return "", nil, nil
	}
	before := args[:len(args)-fs.NArg()]
	if n := len(before); n > 0 && before[n-1] == "--" {
		before = before[:n-1]
	}
	rest := append(append([]string{}, before...), fs.Args()[1:]...)
	return fs.Arg(0), rest, nil
}

// noArgs refuses positional arguments for commands that take none.
func (in *invocation) noArgs() error {
	if len(in.args) > 0 {
		return usagef("unexpected argument %q", in.args[0])
	}
	return nil
}

// loadConfig loads the config; a bad one is reported with every problem it has.
func (in *invocation) loadConfig() (*config.Config, error) {
	cfg, err := in.common.LoadConfig()
	var verr *config.ValidationError
	if errors.As(err, &verr) {
		lines := make([]string, len(verr.Problems))
		for i, p := range verr.Problems {
			lines[i] = "  " + p.String()
		}
		return nil, fmt.Errorf("config %s has %d problem(s), nothing was done:\n%s",
			in.common.ConfigDir, len(lines), strings.Join(lines, "\n"))
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", in.common.ConfigDir, err)
	}
	return cfg, nil
}

// dial connects to Temporal; appenv's error already says where and what to do.
func (in *invocation) dial(ctx context.Context) (client.Client, error) {
	return in.common.Dial(ctx, in.logger, client.Options{})
}

// parallel calls fn(i) for every i in [0, n), at most limit at a time, and returns when all
// calls have returned. Callers store results by index, so output keeps selection order.
func parallel(n, limit int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, limit)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}
