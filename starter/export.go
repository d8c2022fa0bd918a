package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/mhannotator/mha/internal/export"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

var exportCommand = command{
	name:    "export",
	args:    "--format jsonl|csv|xlsx [--out FILE] [--annotator N] [--domain D]",
	summary: "Write stored annotations with their texts as JSONL, CSV or an Excel workbook",
	about: "Writes the stored annotations (all, or those of --annotator and/or --domain), each with its\n" +
		"sample text, ordered by annotator, domain and dataset position, to --out or standard output.\n" +
		"xlsx writes a workbook: a summary sheet of counts per annotator and domain, then a sheet per\n" +
		"domain; a value longer than a cell holds continues in columns named \"<column> (cont. 2)\" and on.\n" +
		"It reads only the store: Temporal need not be running.",
	example: "starter export --format xlsx --out urgency.xlsx --domain urgency",
	flags: func(fs *pflag.FlagSet) func(context.Context, *invocation) error {
		format := fs.String("format", string(export.JSONL), "output format: jsonl, csv or xlsx")
		out := fs.String("out", "", "file to write (replaced if it exists); default standard output")
		annotator := fs.String("annotator", "", "only the annotations of annotator `N`")
		domain := fs.String("domain", "", "only the annotations of domain `D`")
		return func(ctx context.Context, in *invocation) error {
			return runExport(ctx, in, *format, *out, runs.Selector{Annotator: *annotator, Domain: *domain})
		}
	},
}

func runExport(ctx context.Context, in *invocation, formatName, out string, sel runs.Selector) error {
	if err := in.noArgs(); err != nil {
		return err
	}
	format, err := export.ParseFormat(formatName)
	if err != nil {
		return &usageError{msg: "--format: " + err.Error()}
	}
	if format == export.XLSX && out == "" && isTerminal(in.stdout) {
		return &usageError{msg: "--format xlsx writes a binary workbook: give --out FILE or redirect standard output"}
	}
	cfg, err := in.loadConfig()
	if err != nil {
		return err
	}
	var filter store.Filter
	if sel.Annotator != "" || sel.Domain != "" {
		// Select checks both names against the config, with the messages the other commands give.
		pairs, err := (&runs.Controller{Config: cfg}).Select(sel)
		if err != nil {
			return &usageError{msg: err.Error()}
		}
		filter.Annotator = sel.Annotator
		if sel.Domain != "" && len(pairs) > 0 {
			filter.Domain = string(pairs[0].Domain) // as the store spells it
		}
	}
	st, err := in.common.OpenStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()

	if out == "" {
		n, err := export.Write(ctx, st, filter, format, in.stdout)
		if err != nil {
			return err
		}
		fmt.Fprintf(in.stderr, "exported %d annotations to standard output\n", n)
		return nil
	}
	n, err := writeFile(out, func(w io.Writer) (int, error) { return export.Write(ctx, st, filter, format, w) })
	if err != nil {
		return err
	}
	fmt.Fprintf(in.stderr, "exported %d annotations to %s\n", n, out)
	return nil
}

// writeFile creates (or truncates) path and fills it with write; on failure it removes the
// file, so no half-written export is mistaken for a whole one.
func writeFile(path string, write func(io.Writer) (int, error)) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	n, err := write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, errors.Join(err, os.Remove(path))
	}
	return n, nil
}
