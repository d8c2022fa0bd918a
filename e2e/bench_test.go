package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/offline"
	"github.com/mhannotator/mha/internal/prompts"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// benchSamples is N, the samples each of the 30 runs annotates.
const benchSamples = 200

// BenchmarkThirtyRuns measures what orchestration costs: 30 runs (5 annotators × 6 domains)
// with the offline annotator on the dev server, against a bare loop that calls the same
// annotator and the same store for the same 30 × N samples. Run it with `make bench`.
func BenchmarkThirtyRuns(b *testing.B) {
	for _, batch := range []int{10, 50} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			for range b.N {
				benchOnce(b, batch)
			}
		})
	}
}

func benchOnce(b *testing.B, batch int) {
	spec := map[string]map[labels.Domain]int{}
	for a := 1; a <= 5; a++ {
		spec[fmt.Sprintf("b%d", a)] = map[labels.Domain]int{}
		for _, d := range labels.Domains {
			spec[fmt.Sprintf("b%d", a)][d] = benchSamples
		}
	}
	s := newStack(b, map[string]any{"batch_size": batch, "max_concurrent_activities": 30}, spec, benchSamples)
	w := s.startWorker()
	start := time.Now()
	s.startAll()
	var pairs []runs.Pair
	for a := 1; a <= 5; a++ {
		for _, d := range labels.Domains {
			pairs = append(pairs, runs.Pair{Annotator: fmt.Sprintf("b%d", a), Domain: d})
		}
	}
	for _, p := range pairs {
		s.waitStatus(p, contract.StatusCompleted, 10*time.Minute)
	}
	elapsed := time.Since(start)
	total := len(pairs) * benchSamples
	rss := peakRSS(b, w.Process.Pid)

	bare := bareLoop(b, pairs)
	platform := float64(total) / elapsed.Seconds()
	b.ReportMetric(platform, "annotations/s")
	b.ReportMetric(bare, "bare-annotations/s")
	b.ReportMetric(bare/platform, "bare/platform")
	b.ReportMetric(float64(rss)/1024, "worker-peak-RSS-MiB")
	fmt.Fprintf(os.Stderr, "batch=%d: %d annotations in %s = %.0f/s on Temporal; bare loop %.0f/s; ratio %.1f; worker peak RSS %d MiB\n",
		batch, total, elapsed.Round(time.Millisecond), platform, bare, bare/platform, rss/1024)
}

// bareLoop annotates the same samples with no orchestration: annotator, parser and store
// called directly, one sample after another, into a fresh store.
func bareLoop(b *testing.B, pairs []runs.Pair) float64 {
	ctx := context.Background()
	st, err := store.Open(ctx, b.TempDir()+"/bare.db")
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ImportSamples(ctx, samples(benchSamples)); err != nil {
		b.Fatal(err)
	}
	all, err := st.Samples(ctx, 0, benchSamples)
	if err != nil {
		b.Fatal(err)
	}
	var ann offline.Annotator
	start := time.Now()
	for _, p := range pairs {
		tmpl, _ := prompts.Builtin(p.Domain)
		for _, smp := range all {
			resp, err := ann.Complete(ctx, llm.Request{Prompt: prompts.Render(tmpl, smp.Text), Domain: p.Domain, Text: smp.Text})
			if err != nil {
				b.Fatal(err)
			}
			o := labels.Parse(p.Domain, resp.Text)
			if err := st.UpsertAnnotation(ctx, store.Annotation{Annotator: p.Annotator, Domain: string(p.Domain), SampleID: smp.ID,
				Label: o.Label, Status: store.StatusOK, RawReply: resp.Text, Model: resp.Model, PromptHash: prompts.Hash(tmpl), Attempt: 1}); err != nil {
				b.Fatal(err)
			}
		}
	}
	return float64(len(pairs)*len(all)) / time.Since(start).Seconds()
}

// peakRSS reads a process's peak resident set size in KiB.
func peakRSS(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				b.Fatal(err)
			}
			return kb
		}
	}
	b.Fatal("no VmHWM in /proc status")
	return 0
}
