package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/mhannotator/mha/internal/agreement"
	"github.com/mhannotator/mha/internal/analysis"
	"github.com/mhannotator/mha/internal/export"
	"github.com/mhannotator/mha/internal/labels"
)

var agreementCommand = command{
	name:    "agreement",
	args:    "[--domain D] [--json] [--disputed N] [--xlsx FILE]",
	summary: "Show how far the annotators agree, per domain",
	about: "Computes, over the samples at least two annotators labelled ok (malformed, error and blocked\n" +
		"rows count as missing), pairwise Cohen's κ and their mean (Light's κ), Fleiss' κ over the\n" +
		"samples every annotator labelled, and Krippendorff's α: ordinal for urgency and intensity,\n" +
		"over label sets with the MASI distance for therapeutic, adjunct and modality (with each\n" +
		"code's binary α). α and Fleiss' κ carry a seeded bootstrap 95% interval. Redressal is free\n" +
		"text: coverage and list lengths only. --disputed N lists the N samples of each domain the\n" +
		"annotators agree on least, with every label. --xlsx writes the agreement workbook (every\n" +
		"domain: figures, κ matrix, and each sample's labels, consensus and agreement share).\n" +
		"It reads only the store.",
	example: "starter agreement --domain urgency\n  starter agreement --json > agreement.json",
	flags: func(fs *pflag.FlagSet) func(context.Context, *invocation) error {
		domain := fs.String("domain", "", "only domain `D`")
		asJSON := fs.Bool("json", false, "print the reports as JSON")
		disputed := fs.Int("disputed", 0, "also list the `N` most disputed samples of each domain")
		xlsx := fs.String("xlsx", "", "write the agreement workbook to `FILE` instead of printing the tables")
		return func(ctx context.Context, in *invocation) error {
			if err := in.noArgs(); err != nil {
				return err
			}
			domains := labels.Domains
			if *domain != "" {
				d, err := labels.ParseDomain(*domain)
				if err != nil {
					return &usageError{msg: "--domain: " + err.Error()}
				}
				domains = []labels.Domain{d}
			}
			a, done, err := in.analyzer(ctx, *disputed)
			if err != nil {
				return err
			}
			defer done()
			if *xlsx != "" {
				book, err := export.ReadAgreementBook(ctx, a)
				if err != nil {
					return err
				}
				if _, err := writeFile(*xlsx, func(w io.Writer) (int, error) { return 0, export.WriteAgreementXLSX(w, book) }); err != nil {
					return err
				}
				fmt.Fprintf(in.stderr, "wrote the agreement workbook to %s\n", *xlsx)
				return nil
			}
			res, err := a.Agreement(ctx, domains)
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(in, map[string]any{"domains": res})
			}
			for _, r := range res {
				printAgreement(in.stdout, r)
				if *disputed > 0 && r.Domain != labels.Redressal && r.Report != nil {
					top, err := a.Disputed(ctx, r.Domain, *disputed)
					if err != nil {
						return err
					}
					printDisputed(in.stdout, top)
				}
			}
			return nil
		}
	},
}

func printAgreement(w io.Writer, r analysis.Agreement) {
	fmt.Fprintf(w, "== %s\n", r.Domain)
	if r.Report == nil {
		fmt.Fprintf(w, "  %s\n\n", r.Error)
		return
	}
	rep := r.Report
	c := rep.Coverage
	fmt.Fprintf(w, "  %d samples labelled, %d by two annotators or more (counted), %d by all %d\n", c.Samples, c.Pairable, c.Complete, len(rep.Annotators))
	rows := [][]string{{"figure", "value", "95% interval", "samples"}}
	for _, f := range []*agreement.Figure{rep.AlphaOrdinal, rep.AlphaMASI, rep.AlphaJaccard, rep.AlphaNominal, rep.Fleiss} {
		if f == nil {
			continue
		}
		row := figureRow(*f)
		if rep.Headline != nil && rep.Headline.Statistic == f.Statistic {
			row[0] += " (headline)"
		}
		rows = append(rows, row)
	}
	if rep.Cohen != nil {
		rows = append(rows, figureRow(rep.Cohen.Light))
		for _, p := range rep.Cohen.Pairs {
			row := figureRow(p.Kappa)
			row[0] = fmt.Sprintf("  κ %s–%s", p.A, p.B)
			rows = append(rows, row)
		}
	}
	for _, cf := range rep.Codes {
		row := figureRow(cf.Alpha)
		row[0] = "  α " + cf.Code
		rows = append(rows, row)
	}
	for _, p := range rep.Points {
		rows = append(rows, []string{"points of " + p.Annotator, fmt.Sprintf("mean %.1f, median %.1f", p.MeanPoints, p.MedianPoints), "", strconv.Itoa(p.Labels)})
	}
	if len(rows) > 1 {
		fmt.Fprint(w, indent(layout(rows, []bool{false, true, false, true})))
	}
	if rep.Note != "" {
		fmt.Fprintf(w, "  %s\n", rep.Note)
	}
	fmt.Fprintln(w)
}

func figureRow(f agreement.Figure) []string {
	value, ci := "undefined", ""
	if f.Defined {
		value = fmt.Sprintf("%.4f", f.Value)
	} else if f.Reason != "" {
		value = "undefined: " + f.Reason
	}
	if f.CI != nil {
		ci = fmt.Sprintf("[%.4f, %.4f]", f.CI.Low, f.CI.High)
	}
	return []string{f.Statistic, value, ci, strconv.Itoa(f.Units)}
}

func printDisputed(w io.Writer, top []analysis.Sample) {
	fmt.Fprintln(w, "  most disputed:")
	for _, s := range top {
		consensus := s.Consensus
		if s.Tie {
			consensus = "tie: " + strings.Join(s.Tied, " / ")
		}
		fmt.Fprintf(w, "  - %s (agreement %.2f, consensus %s): %s\n", s.SampleID, s.Agreement, consensus, cut(strings.Join(strings.Fields(s.Text), " "), 100))
		for _, r := range s.Replies {
			fmt.Fprintf(w, "      %s: %s %s\n", r.Annotator, r.Status, r.Label)
		}
	}
	fmt.Fprintln(w)
}

func indent(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "  " + l
		}
	}
	return strings.Join(lines, "")
}

var consensusCommand = command{
	name:    "consensus",
	args:    "--domain D [--format csv|jsonl|labelstudio] [--disputed N] [--out FILE]",
	summary: "Write a domain's consensus dataset, or its samples as Label Studio tasks",
	about: "Writes every sample of the domain that two or more annotators labelled ok, with its text,\n" +
		"each annotator's label, the consensus (the majority label; for multi-label domains the codes\n" +
		"at least half chose; a tie is reported, never broken) and the agreement share, as CSV or\n" +
		"JSONL. --format labelstudio writes Label Studio tasks with each annotator's label as a\n" +
		"prediction, for people to review; --labelstudio-config prints the labeling config they fit.\n" +
		"--disputed N keeps the N samples the annotators agree on least, least first.",
	example: "starter consensus --domain urgency --format csv --out urgency-consensus.csv\n" +
		"  starter consensus --domain therapeutic --format labelstudio --disputed 50 --out review.json",
	flags: func(fs *pflag.FlagSet) func(context.Context, *invocation) error {
		domain := fs.String("domain", "", "the domain `D` (required)")
		format := fs.String("format", "csv", "csv, jsonl or labelstudio")
		disputed := fs.Int("disputed", 0, "only the `N` most disputed samples")
		out := fs.String("out", "", "file to write; default standard output")
		config := fs.Bool("labelstudio-config", false, "print the Label Studio labeling config of the domain and exit")
		return func(ctx context.Context, in *invocation) error {
			if err := in.noArgs(); err != nil {
				return err
			}
			d, err := labels.ParseDomain(*domain)
			if err != nil {
				return &usageError{msg: "--domain: " + err.Error()}
			}
			if *config {
				_, err := io.WriteString(in.stdout, export.LabelStudioConfig(d))
				return err
			}
			if *format != "csv" && *format != "jsonl" && *format != "labelstudio" {
				return usagef("--format: %q is not csv, jsonl or labelstudio", *format)
			}
			a, done, err := in.analyzer(ctx, *disputed)
			if err != nil {
				return err
			}
			defer done()
			var samples []analysis.Sample
			if *disputed > 0 {
				samples, err = a.Disputed(ctx, d, *disputed)
			} else {
				samples, err = a.Consensus(ctx, d)
			}
			if err != nil {
				return err
			}
			res, err := a.Agreement(ctx, []labels.Domain{d})
			if err != nil {
				return err
			}
			var annotators []string
			if res[0].Report != nil {
				annotators = res[0].Report.Annotators
			}
			write := func(w io.Writer) (int, error) {
				if *format == "labelstudio" {
					return len(samples), export.WriteLabelStudio(w, d, samples)
				}
				return len(samples), export.WriteConsensus(w, export.Format(*format), d, annotators, samples)
			}
			if *out == "" {
				_, err := write(in.stdout)
				return err
			}
			n, err := writeFile(*out, write)
			if err == nil {
				fmt.Fprintf(in.stderr, "wrote %d samples to %s\n", n, *out)
			}
			return err
		}
	},
}

// analyzer checks --disputed and opens the store for an analysis; done closes it.
func (in *invocation) analyzer(ctx context.Context, disputed int) (*analysis.Analyzer, func(), error) {
	if disputed < 0 {
		return nil, nil, usagef("--disputed: %d is negative", disputed)
	}
	st, err := in.common.OpenStore(ctx)
	if err != nil {
		return nil, nil, err
	}
	return &analysis.Analyzer{Store: st}, func() { st.Close() }, nil
}
