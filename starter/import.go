package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/mhannotator/mha/internal/dataset"
)

var importCommand = command{
	name:    "import",
	args:    "[FILE] [--sheet NAME] [--if-empty]",
	summary: "Import a dataset file (.xlsx, .csv, .jsonl) into the store",
	about: "Reads the ID and Text columns of FILE and appends its new samples to the store, in file order.\n" +
		"Samples already stored with the same text are left alone; bad rows are skipped and listed\n" +
		"with their row numbers. A sample ID already stored with a different text refuses the whole\n" +
		"import (nothing is stored), because existing annotations must keep meaning their text.\n" +
		"Without FILE, the config's global.dataset_path is imported.",
	example: "starter import datasets/sample_students.csv",
	flags: func(fs *pflag.FlagSet) func(context.Context, *invocation) error {
		var opts dataset.Options
		ifEmpty := fs.Bool("if-empty", false, "import only when the store holds no samples yet (for scripts that run on every start)")
		fs.StringVar(&opts.Sheet, "sheet", "", "worksheet to read (xlsx only; default the first)")
		return func(ctx context.Context, in *invocation) error {
			return runImport(ctx, in, opts, *ifEmpty)
		}
	},
}

func runImport(ctx context.Context, in *invocation, opts dataset.Options, ifEmpty bool) error {
	if len(in.args) > 1 {
		return usagef("unexpected argument %q: import takes one FILE", in.args[1])
	}
	var path string
	if len(in.args) == 1 {
		path = in.args[0]
	} else {
		cfg, err := in.loadConfig()
		if err != nil {
			return err
		}
		path = cfg.Global.DatasetPath
	}
	st, err := in.common.OpenStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if ifEmpty {
		n, err := st.CountSamples(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			fmt.Fprintf(in.stdout, "store already holds %d samples; nothing imported\n", n)
			return nil
		}
	}
	rep, err := dataset.ImportFile(ctx, st, path, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(in.stdout, "imported %d new samples (%d already stored) from %s\n", rep.Added, rep.Unchanged, path)
	for _, s := range rep.Skipped {
		fmt.Fprintf(in.stdout, "  row %d: %s\n", s.Row, s.Reason)
	}
	fmt.Fprintf(in.stdout, "skipped %d %s\n", len(rep.Skipped), plural(len(rep.Skipped), "row", "rows"))
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
