package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/llm/providers"
	"github.com/mhannotator/mha/internal/prompts"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// costSamples is the samples each of the 30 runs of the breakdown's pieces and, at least,
// of a cost cell annotate.
const costSamples = 100

// bareSpan is how long a cell's bare loop should take at least: a rate measured over a few
// seconds is mostly the platform's start (about half a second to the first stored
// annotation), not its throughput.
const bareSpan = 15 * time.Second

// samples is how many samples each of the cell's 30 runs annotates: enough for the bare
// loop to take about bareSpan at the cell's latency (a 0 ms provider counts as 5 ms), 50
// to 1 000 (a slow provider's cell still lasts 25 s or more).
func (c costCell) samples() int {
	n := int(bareSpan * time.Duration(c.slots) / (30 * max(c.latency, 5*time.Millisecond)))
	return min(max(n, 50), 1000)
}

// costCell is one cell of the cost matrix: provider latency L and worker activity slots C
// (the bare loop's goroutines).
type costCell struct {
	latency time.Duration
	slots   int
}

func (c costCell) String() string { return fmt.Sprintf("L=%s_C=%d", fmtLatency(c.latency), c.slots) }

func fmtLatency(d time.Duration) string {
	if d == 0 {
		return "0ms"
	}
	return d.String()
}

// defaultCostCells is the whole matrix: L in {0, 50 ms, 500 ms} × C in {10, 30}.
var defaultCostCells = []costCell{
	{0, 10}, {0, 30}, {50 * time.Millisecond, 10}, {50 * time.Millisecond, 30},
	{500 * time.Millisecond, 10}, {500 * time.Millisecond, 30},
}

// costCells reads MHA_BENCH_COST ("0ms/10,50ms/10": latency/slots, comma separated), or
// returns the whole matrix when it is unset.
func costCells(b *testing.B) []costCell {
	env := strings.TrimSpace(os.Getenv("MHA_BENCH_COST"))
	if env == "" {
		return defaultCostCells
	}
	var cells []costCell
	for _, item := range strings.Split(env, ",") {
		l, c, ok := strings.Cut(strings.TrimSpace(item), "/")
		lat, lerr := time.ParseDuration(l)
		slots, cerr := strconv.Atoi(c)
		if !ok || lerr != nil || cerr != nil || lat < 0 || slots < 1 || slots > 1000 {
			b.Fatalf("MHA_BENCH_COST: %q is not latency/slots such as 50ms/10", item)
		}
		cells = append(cells, costCell{lat, slots})
	}
	return cells
}

// costRow is one cell's result.
type costRow struct {
	cell               costCell
	samples            int     // per run
	platform, bare     float64 // annotations per second
	elapsed, bareTime  time.Duration
	maxInFlight        int // at the fake during the platform run
	bareMaxInFlight    int
	calls, duplicates  int // calls the fake accepted during the platform run, and repeats of paid work
	rateLimited, other int // 429s and faulted/rejected calls during the platform run
	phases             []costPhase
	rpcs               map[string]float64 // the worker's Temporal requests per stored annotation, by operation
	// CPU time per annotation: the worker, the dev server and this process (the fake provider
	// and the benchmark's polling) during the platform run, and this process (the fake and the
	// bare loop) during the bare run.
	workerCPU, serverCPU, testCPU, bareCPU time.Duration
}

// costPhase is the mean time of one piece of the platform's work during a cell, measured by
// the worker's own timers (per sample) or from the runs' histories (per run).
type costPhase struct {
	name string
	n    int
	mean time.Duration
}

// BenchmarkCost is the P1 table: what the platform costs against a bare client doing the same
// networked work. Per cell, 30 runs (5 annotators × 6 domains, each annotator its own key and
// quota pool, quota effectively unlimited) × N samples (costCell.samples) with the openai
// provider against the fake provider with latency L on a worker with C activity slots, timed
// from `starter start --all` until the last run closed; then a plain loop of C goroutines making
// the same 30 × N calls with the same provider client against the same fake, parsing each reply
// and upserting it into a fresh store. Each cell also reports where the platform's time went
// (the worker's timers, the runs' histories, the worker's Temporal requests per annotation);
// then the time a sample's pieces cost one at a time on this machine. Select cells with
// MHA_BENCH_COST="0ms/10,500ms/30"; the default is all six (about 7 minutes).
func BenchmarkCost(b *testing.B) {
	cells := costCells(b)
	var rows []costRow
	for _, cell := range cells {
		b.Run(cell.String(), func(b *testing.B) {
			for range b.N {
				r := costOnce(b, cell)
				rows = append(rows, r)
				goal, ok := ">= 0.90", r.platform/r.bare >= 0.9
				if r.cell.latency == 0 {
					goal, ok = ">= 0.40", r.platform/r.bare >= 0.4
				}
				record(figure{ID: "P1", Measure: fmt.Sprintf("throughput ÷ a bare client at L=%s, C=%d", fmtLatency(r.cell.latency), r.cell.slots),
					Value: r.platform / r.bare, Goal: goal, Met: met(ok),
					Settings: fmt.Sprintf("30 runs × %d samples, openai on the fake, batch 10, quota pools metered at 100 000/min (never reached); platform %.1f/s, bare %.1f/s", r.samples, r.platform, r.bare)})
				b.ReportMetric(r.platform, "annotations/s")
				b.ReportMetric(r.bare, "bare-annotations/s")
				b.ReportMetric(r.platform/r.bare, "platform/bare")
				b.ReportMetric(float64(r.maxInFlight), "max-in-flight")
			}
		})
	}
	var latencies []time.Duration
	for _, c := range cells {
		if !slices.Contains(latencies, c.latency) {
			latencies = append(latencies, c.latency)
		}
	}
	var parts []costPart
	b.Run("breakdown", func(b *testing.B) {
		for range b.N {
			parts = costBreakdown(b, latencies)
		}
	})

	var t strings.Builder
	fmt.Fprintf(&t, "\nP1: platform against a bare client, 30 runs × N samples, openai provider on the fake, stream on, batch 10\n\n")
	fmt.Fprintln(&t, "| L | C | N | platform/s | bare/s | platform/bare | platform time | bare time | slot-ms/sample platform | slot-ms/sample bare | max in flight (platform) | max in flight (bare) | calls | duplicates | 429s |")
	fmt.Fprintln(&t, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		fmt.Fprintf(&t, "| %s | %d | %d | %.1f | %.1f | %.3f | %s | %s | %.1f | %.1f | %d | %d | %d | %d | %d |\n",
			fmtLatency(r.cell.latency), r.cell.slots, r.samples, r.platform, r.bare, r.platform/r.bare,
			r.elapsed.Round(10*time.Millisecond), r.bareTime.Round(10*time.Millisecond),
			float64(r.cell.slots)*1000/r.platform, float64(r.cell.slots)*1000/r.bare,
			r.maxInFlight, r.bareMaxInFlight, r.calls, r.duplicates, r.rateLimited)
	}
	fmt.Fprintln(&t, "\nslot-ms/sample = C / rate: how long a sample holds one of the C slots; the platform's minus the bare one is the orchestration cost per sample.")
	if len(rows) > 0 {
		fmt.Fprintln(&t, "\nWhere the platform's time went in each cell: per sample, the worker's own timers (mha_sample_phase_seconds, mha_quota_wait_seconds, mha_provider_request_duration_seconds); per run, the histories (mean, count)")
		fmt.Fprintln(&t)
		fmt.Fprint(&t, "| piece |")
		for _, r := range rows {
			fmt.Fprintf(&t, " %s |", r.cell)
		}
		fmt.Fprint(&t, "\n| --- |")
		for range rows {
			fmt.Fprint(&t, " --- |")
		}
		fmt.Fprintln(&t)
		for i, ph := range rows[0].phases {
			fmt.Fprintf(&t, "| %s |", ph.name)
			for _, r := range rows {
				fmt.Fprintf(&t, " %s (%d) |", fmtMicros(r.phases[i].mean), r.phases[i].n)
			}
			fmt.Fprintln(&t)
		}
		for _, c := range []struct {
			name string
			of   func(costRow) time.Duration
		}{
			{"CPU per annotation: worker", func(r costRow) time.Duration { return r.workerCPU }},
			{"CPU per annotation: dev server", func(r costRow) time.Duration { return r.serverCPU }},
			{"CPU per annotation: fake provider and benchmark process", func(r costRow) time.Duration { return r.testCPU }},
			{"CPU per annotation: bare loop and fake provider", func(r costRow) time.Duration { return r.bareCPU }},
		} {
			fmt.Fprintf(&t, "| %s |", c.name)
			for _, r := range rows {
				fmt.Fprintf(&t, " %s |", fmtMicros(c.of(r)))
			}
			fmt.Fprintln(&t)
		}
		var ops []string
		for _, r := range rows {
			for op := range r.rpcs {
				if !slices.Contains(ops, op) {
					ops = append(ops, op)
				}
			}
		}
		slices.Sort(ops)
		for _, op := range ops {
			fmt.Fprintf(&t, "| %s per annotation (the worker's temporal_request_total and temporal_long_request_total) |", op)
			for _, r := range rows {
				fmt.Fprintf(&t, " %.3f |", r.rpcs[op])
			}
			fmt.Fprintln(&t)
		}
	}
	if len(parts) > 0 {
		fmt.Fprintln(&t, "\nTime breakdown of one sample on this machine (sequential, means)")
		fmt.Fprintln(&t)
		fmt.Fprintln(&t, "| piece | n | mean | p50 | p95 |")
		fmt.Fprintln(&t, "| --- | --- | --- | --- | --- |")
		for _, p := range parts {
			fmt.Fprintf(&t, "| %s | %d | %s | %s | %s |\n", p.name, len(p.times), fmtMicros(p.mean()), fmtMicros(p.pct(50)), fmtMicros(p.pct(95)))
		}
	}
	fmt.Fprintln(os.Stderr, t.String())
}

// costCellSeq numbers the cells run by this process: run IDs are per annotator and domain on the
// one dev server, so each cell has its own annotators (c<n>a1..c<n>a5).
var costCellSeq atomic.Int64

// costPairs names a cell's 30 runs: its 5 annotators × the six domains.
func costPairs() []runs.Pair {
	n := costCellSeq.Add(1)
	var pairs []runs.Pair
	for a := 1; a <= 5; a++ {
		for _, d := range labels.Domains {
			pairs = append(pairs, runs.Pair{Annotator: fmt.Sprintf("c%da%d", n, a), Domain: d})
		}
	}
	return pairs
}

// costKey is annotator a's API key at the fake.
func costKey(a string) string { return "cost-key-" + a }

func costOnce(b *testing.B, cell costCell) costRow {
	n := cell.samples()
	pairs := costPairs()
	spec := map[string]map[labels.Domain]int{}
	keys := map[string]string{}
	fkeys := map[string]fake.Key{}
	for _, p := range pairs {
		if spec[p.Annotator] == nil {
			spec[p.Annotator] = map[labels.Domain]int{}
		}
		spec[p.Annotator][p.Domain] = n
		keys[p.Annotator] = costKey(p.Annotator)
		fkeys[costKey(p.Annotator)] = fake.Key{} // no limit at the fake
	}
	f, err := fake.Start(fake.Options{Latency: cell.latency, Keys: fkeys})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	g := map[string]any{
		"provider": "openai", "base_url": f.URL(), "model_name": "gpt-cost",
		"batch_size": 10, "max_concurrent_activities": cell.slots,
		"requests_per_minute": 100000, "requests_per_day": 100000000,
		"heartbeat_timeout_seconds": 30, "request_timeout_seconds": 10, "stream_idle_timeout_seconds": 5,
	}
	s := newStackWith(b, g, spec, n, nil, keys)
	w := s.startWorkerWith(filepath.Join(binDir, "worker"), nil, "--health-listen", "127.0.0.1:0")
	waitPollers(b, s.taskQueue)
	b.Cleanup(func() { // a failed cell leaves no run behind
		for _, p := range pairs {
			_ = server.Client().TerminateWorkflow(context.Background(), p.ID(), "", "cost benchmark cell ended")
		}
	})

	pids := [3]int{w.cmd.Process.Pid, devServerPid(b), os.Getpid()}
	var cpu0 [3]time.Duration
	for i, pid := range pids {
		cpu0[i] = procCPU(b, pid)
	}
	start := time.Now()
	s.startAll()
	timeout := 3*time.Duration(len(pairs)*n)*cell.latency/time.Duration(cell.slots) + 3*time.Minute
	end := waitClosed(b, s, pairs, start, timeout, func() string {
		st := f.Stats()
		accepted := 0
		for _, ks := range st.ByKey {
			accepted += ks.Accepted
		}
		stored := 0
		for _, p := range pairs {
			stored += s.stored(p)
		}
		return fmt.Sprintf("fake: %d requests, %d accepted, %d in flight (max %d); store: %d annotations", st.Requests, accepted, st.InFlight, st.MaxInFlight, stored)
	})
	elapsed := end.Sub(start)
	total := time.Duration(len(pairs) * n)
	perAnnotation := func(i int) time.Duration { return (procCPU(b, pids[i]) - cpu0[i]) / total }
	workerCPU, serverCPU, testCPU := perAnnotation(0), perAnnotation(1), perAnnotation(2)
	for _, p := range pairs {
		if got := s.stored(p); got != n {
			b.Fatalf("%s stored %d annotations, want %d", p.ID(), got, n)
		}
	}
	st := f.Stats()
	row := costRow{cell: cell, samples: n, elapsed: elapsed, platform: float64(len(pairs)*n) / elapsed.Seconds(),
		maxInFlight: st.MaxInFlight, duplicates: st.Duplicates, workerCPU: workerCPU, serverCPU: serverCPU, testCPU: testCPU}
	m := scrapeMetrics(b, w.health+"/metrics")
	row.phases = append(samplePhases(m), runPhases(b, pairs)...)
	row.rpcs = m.perOperation("temporal_request_total", float64(len(pairs)*n))
	// Long requests: polls, and the quota reservations (Update-with-start).
	for op, v := range m.perOperation("temporal_long_request_total", float64(len(pairs)*n)) {
		row.rpcs[op] += v
	}
	for _, ks := range st.ByKey {
		row.calls += ks.Accepted
		row.rateLimited += ks.RateLimited
		row.other += ks.Faulted + ks.Rejected
	}
	_ = w.cmd.Process.Kill() // an idle worker still polls; the cleanup waits for it

	f.ResetStats()
	bare0 := procCPU(b, pids[2])
	row.bare, row.bareTime = bareClient(b, s.cfg, pairs, n, cell.slots)
	row.bareCPU = (procCPU(b, pids[2]) - bare0) / total
	row.bareMaxInFlight = f.Stats().MaxInFlight

	fmt.Fprintf(os.Stderr, "%s: platform %d annotations in %s = %.1f/s (max %d in flight, %d calls, %d duplicates, %d 429s, %d other); bare %.1f/s in %s (max %d in flight); platform/bare %.3f\n",
		cell, len(pairs)*n, elapsed.Round(time.Millisecond), row.platform, row.maxInFlight, row.calls, row.duplicates,
		row.rateLimited, row.other, row.bare, row.bareTime.Round(time.Millisecond), row.bareMaxInFlight, row.platform/row.bare)
	return row
}

// waitPollers waits until a worker polls both of the task queue's task types, so the worker's
// start-up is not timed.
func waitPollers(b *testing.B, taskQueue string) {
	waitFor(b, time.Minute, "the worker to poll "+taskQueue, func() (bool, string) {
		for _, tt := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
			d, err := server.Client().DescribeTaskQueue(context.Background(), taskQueue, tt)
			if err != nil {
				return false, err.Error()
			}
			if len(d.GetPollers()) == 0 {
				return false, "no " + tt.String() + " poller"
			}
		}
		return true, ""
	})
}

// waitClosed waits until every pair's workflow completed and returns the latest close time.
// It only describes workflows (no status queries), so watching costs the worker nothing.
func waitClosed(b *testing.B, s *stack, pairs []runs.Pair, start time.Time, timeout time.Duration, diag func() string) time.Time {
	var last time.Time
	left := pairs
	deadline := time.Now().Add(timeout)
	for len(left) > 0 {
		d, err := server.Client().DescribeWorkflowExecution(context.Background(), left[0].ID(), "")
		if err != nil {
			b.Fatalf("describe %s: %v", left[0].ID(), err)
		}
		info := d.GetWorkflowExecutionInfo()
		switch info.GetStatus() {
		case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
			if at := info.GetCloseTime().AsTime(); at.After(last) {
				last = at
			}
			left = left[1:]
			continue
		case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		default:
			b.Fatalf("%s closed as %s", left[0].ID(), info.GetStatus())
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d runs not completed after %s; %s; first: %+v", len(left), time.Since(start).Round(time.Second), diag(), s.status(left[0]))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !last.After(start) {
		b.Fatalf("last close time %s is not after the start %s", last, start)
	}
	return last
}

// bareClient is what a hand-written script would do: C goroutines making the 30 × N calls with
// the annotators' provider clients (one per annotator, as the worker builds them), parsing each
// reply and upserting it into a fresh store. It returns annotations per second and the time.
func bareClient(b *testing.B, cfg *config.Config, pairs []runs.Pair, n, slots int) (float64, time.Duration) {
	ctx := context.Background()
	st, err := store.Open(ctx, b.TempDir()+"/bare.db")
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ImportSamples(ctx, samples(n)); err != nil {
		b.Fatal(err)
	}
	all, err := st.Samples(ctx, 0, n)
	if err != nil {
		b.Fatal(err)
	}
	provs := map[string]llm.Provider{}
	for _, a := range cfg.Annotators {
		if provs[a.ID], err = providers.New(a, cfg.Global); err != nil {
			b.Fatal(err)
		}
	}
	type job struct {
		p    runs.Pair
		tmpl string
		smp  store.Sample
	}
	jobs := make(chan job, len(pairs)*len(all))
	for _, p := range pairs {
		tmpl, err := prompts.Builtin(p.Domain)
		if err != nil {
			b.Fatal(err)
		}
		for _, smp := range all {
			jobs <- job{p, tmpl, smp}
		}
	}
	close(jobs)
	var malformed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range slots {
		wg.Go(func() {
			for j := range jobs {
				t0 := time.Now()
				resp, err := provs[j.p.Annotator].Complete(ctx, llm.Request{Model: cfg.Global.ModelName,
					Prompt: prompts.Render(j.tmpl, j.smp.Text), Domain: j.p.Domain, Text: j.smp.Text})
				if err != nil {
					b.Error(err)
					return
				}
				o := labels.Parse(j.p.Domain, resp.Text)
				status := store.StatusOK
				if !o.OK() {
					status = store.StatusMalformed
					malformed.Add(1)
				}
				if err := st.UpsertAnnotation(ctx, store.Annotation{Annotator: j.p.Annotator, Domain: string(j.p.Domain),
					SampleID: j.smp.ID, Label: o.Label, Status: status, RawReply: resp.Text, ParseError: o.ParseError,
					ValidityError: o.ValidityError, Model: resp.Model, PromptHash: prompts.Hash(j.tmpl),
					LatencyMS: time.Since(t0).Milliseconds(), InputTokens: resp.InputTokens, OutputTokens: resp.OutputTokens,
					Attempt: 1}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if b.Failed() {
		b.FailNow()
	}
	if n := malformed.Load(); n > 0 {
		b.Fatalf("bare loop: %d malformed replies from the fake", n)
	}
	return float64(len(pairs)*len(all)) / elapsed.Seconds(), elapsed
}

// samplePhases reads, from the worker's /metrics page m, the mean time a sample spent in each piece
// of its path and how many samples were timed.
func samplePhases(m scrape) []costPhase {
	out := []costPhase{m.mean("quota wait (mha_quota_wait_seconds)", "mha_quota_wait_seconds", nil)}
	for _, ph := range []string{"load", "control", "call_slot"} {
		out = append(out, m.mean(ph+" (mha_sample_phase_seconds)", "mha_sample_phase_seconds", map[string]string{"phase": ph}))
	}
	out = append(out, m.mean("provider call (mha_provider_request_duration_seconds)", "mha_provider_request_duration_seconds", nil),
		m.mean("store (mha_sample_phase_seconds)", "mha_sample_phase_seconds", map[string]string{"phase": "store"}))
	return out
}

// runPhases reads the runs' histories: the time from a run's start to its first batch, the
// gaps between its batches (a batch's end, the workflow task that takes it in, the next
// batch's start) and the time from its last batch to its close.
func runPhases(b *testing.B, pairs []runs.Pair) []costPhase {
	var first, gaps, last []time.Duration
	for _, p := range pairs {
		var started, ended time.Time
		batches := map[int64]bool{} // scheduled event IDs of AnnotateBatch
		it := server.Client().GetWorkflowHistory(context.Background(), p.ID(), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				b.Fatal(err)
			}
			at := e.GetEventTime().AsTime()
			switch e.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
				started = at
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
				batches[e.GetEventId()] = e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() == contract.AnnotateBatchName
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
				if !batches[e.GetActivityTaskStartedEventAttributes().GetScheduledEventId()] {
					continue
				}
				if ended.IsZero() {
					first = append(first, at.Sub(started))
				} else {
					gaps = append(gaps, at.Sub(ended))
				}
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
				if batches[e.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()] {
					ended = at
				}
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
				last = append(last, at.Sub(ended))
			}
		}
	}
	return []costPhase{durations("run start → first batch starts (history)", first),
		durations("batch ends → next batch starts (history)", gaps), durations("last batch ends → run closes (history)", last)}
}

func durations(name string, ds []time.Duration) costPhase {
	ph := costPhase{name: name, n: len(ds)}
	for _, d := range ds {
		ph.mean += d / time.Duration(len(ds))
	}
	return ph
}

// costPart is the measured durations of one piece of a sample's path.
type costPart struct {
	name  string
	times []time.Duration
}

func (p costPart) mean() time.Duration {
	var sum time.Duration
	for _, t := range p.times {
		sum += t
	}
	return sum / time.Duration(len(p.times))
}

func (p costPart) pct(q int) time.Duration {
	s := slices.Clone(p.times)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*q/100)]
}

func fmtMicros(d time.Duration) string {
	if d >= 10*time.Millisecond {
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

// timeN runs f n times after one warm-up call and returns each call's duration.
func timeN(b *testing.B, n int, f func(i int) error) []time.Duration {
	if err := f(-1); err != nil {
		b.Fatal(err)
	}
	out := make([]time.Duration, n)
	for i := range n {
		t0 := time.Now()
		if err := f(i); err != nil {
			b.Fatal(err)
		}
		out[i] = time.Since(t0)
	}
	return out
}

// costBreakdown measures, one at a time, the pieces a sample goes through: a provider call at
// each latency (client side, stream on, as the platform makes it), rendering and parsing, a
// store upsert, and Temporal round trips a worker's activity makes or causes: a frontend-only
// RPC (describe), a query answered by the worker, and a `reserve` Update through QuotaClient
// (update-with-start, a workflow task on the worker and a history write).
func costBreakdown(b *testing.B, latencies []time.Duration) []costPart {
	ctx := context.Background()
	var parts []costPart
	all := samples(costSamples)
	tmpl, err := prompts.Builtin(labels.Urgency)
	if err != nil {
		b.Fatal(err)
	}

	// The provider exactly as the platform builds it: same settings as costOnce, C = 10.
	for _, lat := range latencies {
		f, err := fake.Start(fake.Options{Latency: lat, Keys: map[string]fake.Key{"breakdown-key": {}}})
		if err != nil {
			b.Fatal(err)
		}
		g := config.Global{Stream: true, RequestTimeout: 10 * time.Second, StreamIdleTimeout: 5 * time.Second,
			MaxOutputTokens: 1024, MaxConcurrentActivities: 10}
		p, err := providers.New(config.Annotator{ID: "bd", Provider: config.ProviderOpenAI, BaseURL: f.URL(),
			ModelName: "gpt-cost", APIKey: config.Secret("breakdown-key")}, g)
		if err != nil {
			b.Fatal(err)
		}
		n := int(min(200, max(5, 3*time.Second/(lat+time.Millisecond))))
		times := timeN(b, n, func(i int) error {
			smp := all[(i+costSamples)%costSamples]
			_, err := p.Complete(ctx, llm.Request{Model: "gpt-cost", Prompt: prompts.Render(tmpl, smp.Text), Domain: labels.Urgency, Text: smp.Text})
			return err
		})
		parts = append(parts, costPart{fmt.Sprintf("provider call at L=%s (stream on, client side)", fmtLatency(lat)), times})
		f.Close()
	}

	// Render, parse: CPU only.
	reply := "The student sounds overwhelmed. <<LEVEL_2>>"
	parts = append(parts, costPart{"render prompt + labels.Parse", timeN(b, 1000, func(i int) error {
		_ = prompts.Render(tmpl, all[max(i, 0)%costSamples].Text)
		_ = labels.Parse(labels.Urgency, reply)
		return nil
	})})

	// One upsert into a fresh store, as the activity stores a sample.
	st, err := store.Open(ctx, b.TempDir()+"/breakdown.db")
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ImportSamples(ctx, all); err != nil {
		b.Fatal(err)
	}
	const upserts = 500
	parts = append(parts, costPart{"store upsert (SQLite, WAL)", timeN(b, upserts, func(i int) error {
		smp := all[(i+costSamples)%costSamples]
		return st.UpsertAnnotation(ctx, store.Annotation{Annotator: "bd", Domain: string(labels.Urgency), SampleID: smp.ID,
			Label: "LEVEL_2", Status: store.StatusOK, RawReply: reply, Model: "gpt-cost", PromptHash: prompts.Hash(tmpl),
			Attempt: 1, LatencyMS: int64(i)})
	})})

	// Temporal round trips on the dev server, with a worker on the task queue.
	s := newStack(b, nil, map[string]map[labels.Domain]int{"bd": {labels.Urgency: 1}}, 1)
	s.startWorker()
	waitPollers(b, s.taskQueue)
	limits := contract.QuotaLimits{RequestsPerMinute: 100000, RequestsPerDay: 100000000}
	q := &runs.QuotaClient{Client: server.Client(), TaskQueue: s.taskQueue, Limits: limits}
	pool := fmt.Sprintf("breakdown-%d", time.Now().UnixNano())
	const rpcs = 200
	parts = append(parts, costPart{"Temporal: `reserve` Update via QuotaClient (1 caller)", timeN(b, rpcs, func(int) error {
		_, _, err := q.Reserve(ctx, pool, contract.Ask{Requester: "breakdown", Count: 1}, time.Second, limits)
		return err
	})})
	parts = append(parts, costPart{"Temporal: query `state` of the quota workflow (worker answers)", timeN(b, rpcs, func(int) error {
		_, ok, err := q.State(ctx, pool)
		if err == nil && !ok {
			err = fmt.Errorf("pool %s has no quota workflow", pool)
		}
		return err
	})})
	parts = append(parts, costPart{"Temporal: DescribeWorkflowExecution (frontend only)", timeN(b, rpcs, func(int) error {
		_, err := server.Client().DescribeWorkflowExecution(ctx, contract.QuotaID(pool), "")
		return err
	})})
	parts = append(parts, costPart{"Temporal: synchronous activity heartbeat (the check before each paid call)", heartbeats(b, rpcs)})
	return parts
}

// heartbeats times n synchronous heartbeats of one activity, as a batch sends before each
// paid call, on an in-process worker of its own task queue.
func heartbeats(b *testing.B, n int) []time.Duration {
	ctx := context.Background()
	taskQueue := fmt.Sprintf("breakdown-beats-%d", time.Now().UnixNano())
	out := make([]time.Duration, n)
	beat := func(ctx context.Context) error {
		info := activity.GetInfo(ctx)
		for i := range n {
			t0 := time.Now()
			if err := activity.GetClient(ctx).RecordActivityHeartbeat(ctx, info.TaskToken, i); err != nil {
				return err
			}
			out[i] = time.Since(t0)
		}
		return nil
	}
	run := func(ctx workflow.Context) error {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute, HeartbeatTimeout: 10 * time.Second})
		return workflow.ExecuteActivity(ctx, "beat").Get(ctx, nil)
	}
	w := worker.New(server.Client(), taskQueue, worker.Options{})
	w.RegisterActivityWithOptions(beat, activity.RegisterOptions{Name: "beat"})
	w.RegisterWorkflowWithOptions(run, workflow.RegisterOptions{Name: "beats"})
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	wr, err := server.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: taskQueue}, "beats")
	if err == nil {
		err = wr.Get(ctx, nil)
	}
	if err != nil {
		b.Fatal(err)
	}
	return out
}
