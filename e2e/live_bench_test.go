package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/runs"
)

// The live-event benchmarks' knobs:
//
//	MHA_BENCH_LIVE          the measured window of both benchmarks (default 20s)
//	MHA_BENCH_LIVE_LATENCY  the offline annotator's pause per sample in BenchmarkLiveEvents (100ms)
//	MHA_BENCH_IDLE_RUNS     the idle-run counts of BenchmarkIdleRunsCost, comma separated (30,1000)
const (
	liveWindow  = 20 * time.Second
	liveLatency = 100 * time.Millisecond
	// liveDrain is how long clients may take, after the window, to receive the annotations
	// stored in it.
	liveDrain = 10 * time.Second
	// watchPoll is how often the benchmark's own reader polls the store's change feed, to see
	// when each annotation's commit became visible.
	watchPoll = 5 * time.Millisecond
	// userHZ is the unit of the CPU times in /proc/<pid>/stat (USER_HZ, 100 on Linux).
	userHZ = 100
)

var (
	liveClientCounts = []int{1, 10, 100}
	idleRunCounts    = []int{30, 1000}
)

// liveRow is one client count's result.
type liveRow struct {
	clients        int
	window         time.Duration
	stored         int           // annotations stored in the window
	runsStoring    int           // runs that stored in the window
	received       int           // annotation events of the window, summed over the clients
	minGot, maxGot int           // per client
	missing, dups  int           // summed over the clients
	disconnected   int           // clients whose stream ended before the benchmark closed it
	p50, p95, p99  time.Duration // receipt − created_at
	max            time.Duration
	// fromCommit: receipt − when the benchmark's poller first saw the annotation committed;
	// write: that moment − created_at (the write's wait for the store's write connection,
	// the transaction, and up to watchPoll).
	fromCommit [3]time.Duration // p50, p95, p99
	write      [3]time.Duration
	// CPU over the window in % of one core: the api, the worker, the dev server, this test
	// process (the clients, the poller), and every other process on the machine.
	apiCPU, workerCPU, serverCPU, testCPU, otherCPU float64
	machineCPU                                      float64 // % of all cores busy
	apiHWM                                          int     // kB
	apiHWMSinceStart                                bool    // VmHWM could not be reset: the peak since the api started
}

// BenchmarkLiveEvents measures the api's live-event path: 30 runs (5 annotators × 6 domains,
// offline annotator pausing MHA_BENCH_LIVE_LATENCY per sample, 30 activity slots) store
// annotations on one worker while one api process pushes them to 1, 10 and 100 WebSocket
// clients. It reports, for every annotation stored during the window, every client's delay
// from the annotation's created_at to the message's arrival, and whether each client got every
// one of them; and the api's CPU and peak RSS over the window. created_at is taken before the
// write waits for the store's single write connection, not at the commit, so the benchmark
// also polls the change feed itself every watchPoll and splits the delay into the write
// (created_at to the commit it saw) and the api's path (that commit to the client).
func BenchmarkLiveEvents(b *testing.B) {
	window := envDuration(b, "MHA_BENCH_LIVE", liveWindow)
	latency := envDuration(b, "MHA_BENCH_LIVE_LATENCY", liveLatency)
	// Every run must still be storing at the last window's end: a run stores at most one
	// sample per latency; a minute of warm-up and slack, then per client count the window, the
	// drain and the connects.
	span := time.Minute + time.Duration(len(liveClientCounts))*(window+liveDrain+10*time.Second)
	target := int(span/latency) + 1
	spec := map[string]map[labels.Domain]int{}
	var pairs []runs.Pair
	for a := 1; a <= 5; a++ {
		id := fmt.Sprintf("lv%d", a)
		spec[id] = map[labels.Domain]int{}
		for _, d := range labels.Domains {
			spec[id][d] = target
			pairs = append(pairs, runs.Pair{Annotator: id, Domain: d})
		}
	}
	s := newStack(b, map[string]any{"offline_latency_seconds": latency.Seconds(), "max_concurrent_activities": len(pairs)},
		spec, target)
	worker := s.startWorker()
	base, api := s.startAPIProcess()
	pids := livePids{api: api.Process.Pid, worker: worker.Process.Pid, server: devServerPid(b), test: os.Getpid()}
	if out, code := s.starter("start", "--all"); code != 0 {
		b.Fatalf("start exited %d: %s", code, out)
	}
	waitFor(b, time.Minute, "every run to store", func() (bool, string) {
		idle := 0
		for _, p := range pairs {
			if s.stored(p) == 0 {
				idle++
			}
		}
		return idle == 0, fmt.Sprintf("%d runs stored nothing yet", idle)
	})

	var rows []liveRow
	for _, n := range liveClientCounts {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			for range b.N {
				r := liveOnce(b, s, base, pids, n, window)
				record(figure{ID: "P4", Measure: fmt.Sprintf("annotation commit → WebSocket client, p95, %d clients", n), Value: ms(r.p95), Unit: "ms",
					Goal: "< 100 ms", Met: met(r.p95 < 100*time.Millisecond),
					Settings: fmt.Sprintf("30 runs, offline %s/sample, window %s; p50 %.1f ms, p99 %.1f ms", latency, window, ms(r.p50), ms(r.p99))})
				rows = append(rows, r)
				b.ReportMetric(ms(r.p50), "p50-ms")
				b.ReportMetric(ms(r.p95), "p95-ms")
				b.ReportMetric(ms(r.p99), "p99-ms")
				b.ReportMetric(ms(r.fromCommit[1]), "commit-p95-ms")
				b.ReportMetric(float64(r.received), "events")
				b.ReportMetric(float64(r.stored)/r.window.Seconds(), "annotations/s")
				b.ReportMetric(float64(r.missing), "missing")
				b.ReportMetric(r.apiCPU, "api-cpu-%")
				b.ReportMetric(r.apiPerMessage(), "api-us/message")
				b.ReportMetric(float64(r.apiHWM)/1024, "api-maxRSS-MiB")
			}
		})
	}

	var t strings.Builder
	fmt.Fprintf(&t, "\nLive events: 30 runs (5 annotators × 6 domains), offline annotator %s/sample, batch %v, %d activity slots, target %d; one worker, one api; window %s\n\n",
		latency, s.global["batch_size"], len(pairs), target, window)
	fmt.Fprintln(&t, "| clients | stored/s | runs storing | events received | per client min–max | missing | dups | disconnected | p50 | p95 | p99 | max | commit→client p50/p95/p99 | write p50/p95/p99 | api CPU | api CPU per message | api max RSS | worker CPU | dev server CPU | test process CPU | other processes CPU | machine busy |")
	fmt.Fprintln(&t, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		hwm := fmt.Sprintf("%.1f MiB", float64(r.apiHWM)/1024)
		if r.apiHWMSinceStart {
			hwm += " (since start)"
		}
		fmt.Fprintf(&t, "| %d | %.1f | %d | %d | %d–%d | %d | %d | %d | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %s | %s | %.1f%% | %.0f µs | %s | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% |\n",
			r.clients, float64(r.stored)/r.window.Seconds(), r.runsStoring, r.received, r.minGot, r.maxGot, r.missing, r.dups,
			r.disconnected, ms(r.p50), ms(r.p95), ms(r.p99), ms(r.max), fmtPcts(r.fromCommit), fmtPcts(r.write), r.apiCPU, r.apiPerMessage(), hwm, r.workerCPU, r.serverCPU, r.testCPU, r.otherCPU, r.machineCPU)
	}
	fmt.Fprintln(&t, "\nDelay (p50…max): a message's arrival at the client minus its annotation's created_at, over every client and every annotation stored in the window.")
	fmt.Fprintf(&t, "created_at is taken before the write waits for the store's one write connection: commit→client counts from when the benchmark's own %s poll of the change feed first saw the annotation (up to %s late), write from created_at to then.\n", watchPoll, watchPoll)
	fmt.Fprintln(&t, "API CPU per message: the api's CPU time over the window / the annotation messages it delivered (fixed costs included).")
	fmt.Fprintf(&t, "CPU: %% of one core over the window (/proc/<pid>/stat); other processes: the machine's busy time less the four named (this machine has %d cores, so 100%% busy = %d%%). Max RSS: VmHWM, reset at the window's start.\n",
		runtime.NumCPU(), 100*runtime.NumCPU())
	// The parent of sub-benchmarks prints its log only with -v: the table goes to stderr, as
	// the other benchmarks' do.
	fmt.Fprintln(os.Stderr, t.String())
}

// apiPerMessage is the api's CPU time per annotation message delivered, in µs.
func (r liveRow) apiPerMessage() float64 {
	if r.received == 0 {
		return 0
	}
	return r.apiCPU / 100 * r.window.Seconds() * 1e6 / float64(r.received)
}

// livePids are the processes whose CPU BenchmarkLiveEvents reports.
type livePids struct{ api, worker, server, test int }

func (p livePids) cpu(b *testing.B) [4]time.Duration {
	return [4]time.Duration{procCPU(b, p.api), procCPU(b, p.worker), procCPU(b, p.server), procCPU(b, p.test)}
}

// liveOnce connects n clients to the api, measures one window and closes them.
func liveOnce(b *testing.B, s *stack, base string, pids livePids, n int, window time.Duration) liveRow {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clients := make([]*liveClient, n)
	for i := range clients {
		c, err := dialLive(ctx, base)
		if err != nil {
			b.Fatalf("client %d: %v", i, err)
		}
		clients[i] = c
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	for i, c := range clients {
		select {
		case <-c.state:
		case <-c.done:
			b.Fatalf("client %d: the stream ended before its state: %v", i, c.err)
		case <-time.After(30 * time.Second):
			b.Fatalf("client %d: no state within 30 s", i)
		}
	}
	time.Sleep(time.Second) // past the connects' own work

	hwmReset := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pids.api), []byte("5"), 0) == nil
	cpu0 := pids.cpu(b)
	busy0, all0 := machineCPU(b)
	s0 := lastSeq(b, s)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch := watchCommits(wctx, s, s0)
	t0 := time.Now()
	time.Sleep(window)
	s1 := lastSeq(b, s)
	elapsed := time.Since(t0)
	cpu1 := pids.cpu(b)
	busy1, all1 := machineCPU(b)
	hwm := vmHWM(b, pids.api)

	// The annotations stored in the window that are still there: one stored again later has
	// a new seq, beyond s1.
	want := map[int64]bool{}
	storing := map[string]bool{}
	created := map[int64]time.Time{}
	var last int64
	for after := s0; after < s1; {
		page, err := s.store.Changes(context.Background(), after, 1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, c := range page {
			if c.Seq <= s1 {
				want[c.Seq] = true
				created[c.Seq] = c.CreatedAt
				storing[contract.RunID(c.Annotator, labels.Domain(c.Domain))] = true
				last = c.Seq
			}
		}
		after = page[len(page)-1].Seq
	}
	// Every client gets them, or gives up.
	deadline := time.Now().Add(liveDrain)
	for _, c := range clients {
		for c.maxSeq.Load() < last && time.Now().Before(deadline) {
			select {
			case <-c.done:
			case <-time.After(10 * time.Millisecond):
				continue
			}
			break
		}
	}
	for _, c := range clients {
		c.close()
	}
	stopWatch()
	<-watch.done
	if watch.err != nil {
		b.Fatalf("watching the store's change feed: %v", watch.err)
	}

	r := liveRow{clients: n, window: elapsed, stored: len(want), runsStoring: len(storing), minGot: -1, apiHWM: hwm,
		apiHWMSinceStart: !hwmReset}
	share := func(i int) float64 { return 100 * (cpu1[i] - cpu0[i]).Seconds() / elapsed.Seconds() }
	r.apiCPU, r.workerCPU, r.serverCPU, r.testCPU = share(0), share(1), share(2), share(3)
	if all1 > all0 {
		r.machineCPU = 100 * float64(busy1-busy0) / float64(all1-all0)
		r.otherCPU = max(0, r.machineCPU*float64(runtime.NumCPU())-r.apiCPU-r.workerCPU-r.serverCPU-r.testCPU)
	}
	var delays, fromCommit, write []time.Duration
	for seq, at := range created {
		if seen, ok := watch.seen[seq]; ok {
			write = append(write, seen.Sub(at))
		}
	}
	for _, c := range clients {
		got := map[int64]bool{}
		for _, e := range c.got {
			if e.seq <= s0 || e.seq > s1 {
				continue
			}
			if got[e.seq] {
				r.dups++
				continue
			}
			got[e.seq] = true
			delays = append(delays, e.delay)
			if seen, ok := watch.seen[e.seq]; ok {
				fromCommit = append(fromCommit, e.at.Sub(seen))
			}
		}
		for seq := range want {
			if !got[seq] {
				r.missing++
			}
		}
		r.received += len(got)
		if r.minGot < 0 || len(got) < r.minGot {
			r.minGot = len(got)
		}
		r.maxGot = max(r.maxGot, len(got))
		if c.err != nil {
			r.disconnected++
			b.Logf("a client's stream ended during the window: %v", c.err)
		}
	}
	if len(delays) == 0 {
		b.Fatalf("no annotation reached any client in %s (seq %d to %d)", elapsed, s0, s1)
	}
	p := pcts(delays)
	r.p50, r.p95, r.p99, r.max = p[0], p[1], p[2], slices.Max(delays)
	r.fromCommit, r.write = pcts(fromCommit), pcts(write)
	if r.runsStoring < 30 {
		b.Errorf("only %d of the 30 runs stored during the window: the benchmark wants 30 active runs", r.runsStoring)
	}
	b.Logf("clients=%d: %d annotations stored in %s by %d runs; %d events received (%d–%d per client), %d missing, %d duplicates, %d disconnected; delay p50 %s p95 %s p99 %s max %s (commit→client %s, write %s); api CPU %.1f%%, max RSS %d kB; worker %.1f%%, dev server %.1f%%, test process %.1f%%, other processes %.1f%%; machine %.1f%% busy",
		n, r.stored, elapsed.Round(time.Millisecond), r.runsStoring, r.received, r.minGot, r.maxGot, r.missing, r.dups, r.disconnected,
		r.p50.Round(100*time.Microsecond), r.p95.Round(100*time.Microsecond), r.p99.Round(100*time.Microsecond), r.max.Round(100*time.Microsecond),
		fmtPcts(r.fromCommit), fmtPcts(r.write), r.apiCPU, r.apiHWM, r.workerCPU, r.serverCPU, r.testCPU, r.otherCPU, r.machineCPU)
	return r
}

// liveClient is one WebSocket client that notes, per annotation event, its seq and delay.
type liveClient struct {
	conn   *websocket.Conn
	cancel context.CancelFunc
	state  chan struct{} // closed at the first state event
	done   chan struct{} // closed when reading ended
	closed atomic.Bool   // the benchmark closed it
	maxSeq atomic.Int64
	// got and err are the reader's until done is closed.
	got []liveRecv
	err error // why the stream ended before the benchmark closed it
}

type liveRecv struct {
	seq   int64
	at    time.Time     // received
	delay time.Duration // at − created_at
}

// dialLive connects a client and starts its reader; unlike wsEvents it reports problems
// instead of failing the benchmark from its goroutine.
func dialLive(ctx context.Context, base string) (*liveClient, error) {
	ctx, cancel := context.WithCancel(ctx)
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/api/ws", nil)
	if err != nil {
		cancel()
		return nil, err
	}
	conn.SetReadLimit(16 << 20)
	c := &liveClient{conn: conn, cancel: cancel, state: make(chan struct{}), done: make(chan struct{})}
	go c.read(ctx)
	return c, nil
}

func (c *liveClient) read(ctx context.Context) {
	defer close(c.done)
	var stated bool
	for {
		_, msg, err := c.conn.Read(ctx)
		at := time.Now()
		if err != nil {
			if !c.closed.Load() {
				c.err = err
			}
			return
		}
		// A frame holds one or more events, one per line.
		for _, line := range bytes.Split(msg, []byte("\n")) {
			var e struct {
				Type string `json:"type"`
				Data struct {
					Seq       int64     `json:"seq"`
					CreatedAt time.Time `json:"created_at"`
				} `json:"data"`
			}
			if err := json.Unmarshal(line, &e); err != nil {
				c.err = fmt.Errorf("event is not JSON (%v): %.200s", err, line)
				return
			}
			switch e.Type {
			case "state":
				if !stated {
					stated = true
					close(c.state)
				}
			case "annotation":
				c.got = append(c.got, liveRecv{e.Data.Seq, at, at.Sub(e.Data.CreatedAt)})
				if e.Data.Seq > c.maxSeq.Load() {
					c.maxSeq.Store(e.Data.Seq)
				}
			}
		}
	}
}

// close ends the client and waits for its reader; it may be called again.
func (c *liveClient) close() {
	c.closed.Store(true)
	c.cancel()
	c.conn.CloseNow()
	<-c.done
}

// commitWatcher notes when each annotation is first seen committed in the store.
type commitWatcher struct {
	done chan struct{} // closed when it stopped
	// seen and err are the watcher's until done is closed.
	seen map[int64]time.Time
	err  error
}

// watchCommits polls the change feed after seq every watchPoll until ctx ends. A change is
// noted at the start of the first read that returns it: it committed after the read before.
func watchCommits(ctx context.Context, s *stack, after int64) *commitWatcher {
	w := &commitWatcher{done: make(chan struct{}), seen: map[int64]time.Time{}}
	go func() {
		defer close(w.done)
		t := time.NewTicker(watchPoll)
		defer t.Stop()
		for {
			at := time.Now()
			page, err := s.store.Changes(ctx, after, 1000)
			if err != nil {
				if ctx.Err() == nil {
					w.err = err
				}
				return
			}
			for _, c := range page {
				w.seen[c.Seq] = at
				after = c.Seq
			}
			if len(page) == 1000 {
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// pcts returns the 50th, 95th and 99th percentiles of d, which it sorts.
func pcts(d []time.Duration) [3]time.Duration {
	if len(d) == 0 {
		return [3]time.Duration{}
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return [3]time.Duration{at(0.50), at(0.95), at(0.99)}
}

func fmtPcts(p [3]time.Duration) string {
	return fmt.Sprintf("%.1f/%.1f/%.1f ms", ms(p[0]), ms(p[1]), ms(p[2]))
}

// idleRow is one run count's result.
type idleRow struct {
	runs              int
	setup             time.Duration // start and pause every run, until visibility shows them paused
	signalled         time.Duration // of which: the starts and pause signals
	load              time.Duration // the api's start until ready
	settled           time.Duration // the api's start until the hub's status reads stopped
	loadCalls         int64         // the hub's calls from the api's start until the window
	calls             map[string]int64
	hub, other        int64 // frontend calls in the window: the hub's operations, the rest
	window            time.Duration
	apiCPU, serverCPU float64
}

// hubOperations are the frontend operations the hub's Temporal calls come down to: its
// visibility listing, runs.Controller.Status (describe, then query or the result's history),
// and the quota pools' queries.
var hubOperations = []string{"ListWorkflowExecutions", "DescribeWorkflowExecution", "QueryWorkflow", "GetWorkflowExecutionHistory"}

// BenchmarkIdleRunsCost measures what idle runs cost the api: per run count (30 and 1000 by
// default), that many runs started with the offline annotator and paused, then one api
// process with one WebSocket client, and the Temporal calls it makes per second over the
// window. The calls are counted by the dev server's frontend (its Prometheus service_requests,
// operations the hub uses), since the hub's own count (Hub.TemporalCalls) is not on the api's
// /metrics; nothing else calls those operations during the window.
func BenchmarkIdleRunsCost(b *testing.B) {
	window := envDuration(b, "MHA_BENCH_LIVE", liveWindow)
	counts := idleRunCounts
	if env := strings.TrimSpace(os.Getenv("MHA_BENCH_IDLE_RUNS")); env != "" {
		counts = nil
		for _, f := range strings.Split(env, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 10000 {
				b.Fatalf("MHA_BENCH_IDLE_RUNS: %q is not a run count from 1 to 10000", f)
			}
			counts = append(counts, n)
		}
	}
	metricsURL := devServerMetrics(b)
	var rows []idleRow
	for _, n := range counts {
		b.Run(fmt.Sprintf("runs=%d", n), func(b *testing.B) {
			for range b.N {
				r := idleOnce(b, metricsURL, n, window)
				rows = append(rows, r)
				b.ReportMetric(float64(r.hub)/r.window.Seconds(), "temporal-calls/s")
				b.ReportMetric(float64(r.runs), "runs")
				b.ReportMetric(float64(r.loadCalls), "load-calls")
				b.ReportMetric(r.apiCPU, "api-cpu-%")
			}
		})
	}

	var t strings.Builder
	fmt.Fprintf(&t, "\nIdle runs: runs started with the offline annotator and paused; one worker, one api, 1 WebSocket client; window %s; calls counted by the dev server's frontend (%s)\n\n",
		window, metricsURL)
	fmt.Fprintln(&t, "| runs | setup | api ready | hub settled | hub calls until settled | hub calls/s in window | by operation | other frontend calls/s | api CPU | dev server CPU |")
	fmt.Fprintln(&t, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		var ops []string
		for _, op := range hubOperations {
			if r.calls[op] > 0 {
				ops = append(ops, fmt.Sprintf("%s %.2f/s", op, float64(r.calls[op])/r.window.Seconds()))
			}
		}
		fmt.Fprintf(&t, "| %d | %s | %s | %s | %d | %.2f | %s | %.2f | %.1f%% | %.1f%% |\n", r.runs, r.setup.Round(100*time.Millisecond),
			r.load.Round(100*time.Millisecond), r.settled.Round(100*time.Millisecond), r.loadCalls, float64(r.hub)/r.window.Seconds(), strings.Join(ops, ", "),
			float64(r.other)/r.window.Seconds(), r.apiCPU, r.serverCPU)
	}
	fmt.Fprintln(&t, "\nHub calls: the frontend's service_requests of the operations the hub uses; other: the rest (the worker's polls).")
	fmt.Fprintln(os.Stderr, t.String())
}

func idleOnce(b *testing.B, metricsURL string, n int, window time.Duration) idleRow {
	const samples = 100 // a run that annotated before its pause would not complete at once
	spec := map[string]map[labels.Domain]int{}
	var pairs []runs.Pair
	for k := 0; len(pairs) < n; k++ {
		id := fmt.Sprintf("li%dx%d", n, k)
		spec[id] = map[labels.Domain]int{}
		for _, d := range labels.Domains {
			if len(pairs) < n {
				spec[id][d] = samples
				pairs = append(pairs, runs.Pair{Annotator: id, Domain: d})
			}
		}
	}
	s := newStack(b, map[string]any{"max_concurrent_activities": 30}, spec, samples)
	ctx := context.Background()
	row := idleRow{runs: n, window: window}

	// The cheapest way to idle runs: start them while no worker polls, pause each with the
	// pause signal (the change the pause Update makes; the Update would wait for a worker),
	// then start the worker. A run's first task holds its start and its pause: it reads its
	// progress once and settles paused without annotating. Pausing running runs instead
	// queues each pause behind every run's batches, which takes many minutes for 1000.
	start := time.Now()
	for _, r := range s.ctl.Apply(ctx, runs.ActionStart, pairs, runs.ApplyOptions{}) {
		if r.Outcome != runs.Started {
			b.Fatalf("start %s: %s %s", r.Run, r.Outcome, r.Detail)
		}
	}
	results := make([]runs.Result, len(pairs))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, p := range pairs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = s.ctl.Signal(ctx, p, contract.SignalPause, nil)
		})
	}
	wg.Wait()
	for _, r := range results {
		if r.Outcome != runs.Signalled {
			b.Fatalf("pause %s: %s %s", r.Run, r.Outcome, r.Detail)
		}
	}
	row.signalled = time.Since(start)
	s.startWorker()
	query := fmt.Sprintf("WorkflowType = '%s' AND TaskQueue = '%s' AND ExecutionStatus = 'Running' AND %s = '%s'",
		contract.AnnotationRunName, s.taskQueue, contract.RunStatusKey.GetName(), contract.StatusPaused)
	waitFor(b, 3*time.Minute, "visibility to show every run paused", func() (bool, string) {
		c, err := server.Client().CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: "default", Query: query})
		if err != nil {
			return false, err.Error()
		}
		return c.GetCount() == int64(n), fmt.Sprintf("%d of %d paused", c.GetCount(), n)
	})
	row.setup = time.Since(start)
	paused := time.Now()
	if seq := lastSeq(b, s); seq != 0 {
		b.Logf("runs=%d: %d annotations were stored before the runs settled paused", n, seq)
	}

	before := frontendCalls(b, metricsURL)
	t0 := time.Now()
	base, api := s.startAPIProcess()
	row.load = time.Since(t0)
	c, err := dialLive(ctx, base)
	if err != nil {
		b.Fatal(err)
	}
	defer c.close()
	select {
	case <-c.state:
	case <-time.After(30 * time.Second):
		b.Fatalf("no state within 30 s: %v", c.err)
	}
	var ov struct {
		ByStatus map[string]int `json:"by_status"`
	}
	if code := call(b, http.MethodGet, base+"/api/overview", nil, &ov); code != http.StatusOK {
		b.Fatalf("overview: %d", code)
	}
	if got := ov.ByStatus[contract.StatusPaused]; got != n {
		b.Fatalf("the api shows %d paused runs (%v), want %d", got, ov.ByStatus, n)
	}
	// The hub has read every run as it loaded; its first listings reach VisibilityOverlap
	// (10 s) back before its start and have it read again the runs that changed within it.
	// It has settled once no status read (a describe, a query) reached the frontend for 3 s.
	time.Sleep(time.Until(paused.Add(12 * time.Second)))
	mid := frontendCalls(b, metricsURL)
	for quiet := 0; quiet < 3; {
		if time.Since(t0) > 3*time.Minute {
			b.Fatalf("the hub still reads run statuses %s after the api started", time.Since(t0).Round(time.Second))
		}
		time.Sleep(time.Second)
		cur := frontendCalls(b, metricsURL)
		quiet++
		if cur["DescribeWorkflowExecution"] != mid["DescribeWorkflowExecution"] || cur["QueryWorkflow"] != mid["QueryWorkflow"] {
			quiet = 0
		}
		mid = cur
	}
	row.settled = time.Since(t0)

	for _, op := range hubOperations {
		row.loadCalls += mid[op] - before[op]
	}
	srvPid := devServerPid(b)
	api0, srv0 := procCPU(b, api.Process.Pid), procCPU(b, srvPid)
	w0 := time.Now()
	time.Sleep(window)
	after := frontendCalls(b, metricsURL)
	row.window = time.Since(w0)
	api1, srv1 := procCPU(b, api.Process.Pid), procCPU(b, srvPid)
	row.apiCPU = 100 * (api1 - api0).Seconds() / row.window.Seconds()
	row.serverCPU = 100 * (srv1 - srv0).Seconds() / row.window.Seconds()
	row.calls = map[string]int64{}
	for op, v := range after {
		d := v - mid[op]
		row.calls[op] = d
		if slices.Contains(hubOperations, op) {
			row.hub += d
		} else {
			row.other += d
		}
	}
	select {
	case <-c.done:
		b.Fatalf("the client's stream ended during the window: %v", c.err)
	default:
	}
	var hub, other []string
	for op, d := range row.calls {
		if d == 0 {
			continue
		}
		if slices.Contains(hubOperations, op) {
			hub = append(hub, fmt.Sprintf("%s %d", op, d))
		} else {
			other = append(other, fmt.Sprintf("%s %d", op, d))
		}
	}
	slices.Sort(hub)
	slices.Sort(other)
	b.Logf("runs=%d: setup %s (starts and signals %s), api ready in %s, hub settled in %s after %d calls of its operations; window %s: hub operations %d calls = %.2f/s (%s); other frontend calls: %s; api CPU %.1f%%, dev server CPU %.1f%%",
		n, row.setup.Round(100*time.Millisecond), row.signalled.Round(100*time.Millisecond), row.load.Round(100*time.Millisecond), row.settled.Round(100*time.Millisecond), row.loadCalls, row.window.Round(time.Millisecond),
		row.hub, float64(row.hub)/row.window.Seconds(), strings.Join(hub, ", "), strings.Join(other, ", "), row.apiCPU, row.serverCPU)
	return row
}

// envDuration reads a duration from the environment, or returns def when it is unset.
func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	env := strings.TrimSpace(os.Getenv(name))
	if env == "" {
		return def
	}
	d, err := time.ParseDuration(env)
	if err != nil || d <= 0 {
		b.Fatalf("%s: %q is not a positive duration such as 5s", name, env)
	}
	return d
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func lastSeq(b *testing.B, s *stack) int64 {
	seq, err := s.store.LastSeq(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return seq
}

// procCPU is the user plus system CPU time process pid has used.
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command name, which is in parentheses and may hold spaces: state
	// is the first, utime the 12th and stime the 13th.
	i := strings.LastIndexByte(string(data), ')')
	f := strings.Fields(string(data[i+1:]))
	if i < 0 || len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	return time.Duration(utime+stime) * time.Second / userHZ
}

// machineCPU returns the busy and total CPU time of every core, in USER_HZ ticks.
func machineCPU(b *testing.B) (busy, total int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		b.Fatalf("/proc/stat: %q", line)
	}
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// vmHWM is process pid's peak resident set size in kB.
func vmHWM(b *testing.B, pid int) int {
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

// devServerPid finds the dev server the harness started: this process's child running the
// CLI on the frontend's port.
func devServerPid(b *testing.B) int {
	_, port, _ := net.SplitHostPort(server.FrontendHostPort())
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat[i+1:]))
		if i < 0 || len(f) < 2 || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(string(cmdline), "\x00")
		if slices.Contains(args, "start-dev") && slices.Contains(args, port) {
			return pid
		}
	}
	b.Fatal("the dev server's process is not among this process's children")
	return 0
}

// devServerMetrics returns the URL of the dev server's Prometheus page. The CLI picks the
// port and prints it on the test binary's stdout, which the harness does not keep: the page is
// the one of the dev server's listening ports that answers /metrics with service_requests.
func devServerMetrics(b *testing.B) string {
	pid := devServerPid(b)
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, fd := range fds {
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil {
			if inode, ok := strings.CutPrefix(link, "socket:["); ok {
				inodes[strings.TrimSuffix(inode, "]")] = true
			}
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[3] != "0A" || !inodes[fs[9]] { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil {
				ports = append(ports, int(p))
			}
		}
		f.Close()
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	for _, p := range ports {
		url := fmt.Sprintf("http://127.0.0.1:%d/metrics", p)
		resp, err := hc.Get(url)
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.Contains(string(body), "service_requests{") {
			return url
		}
	}
	b.Fatalf("none of the dev server's listening ports %v serves Prometheus metrics", ports)
	return ""
}

// frontendCalls reads the dev server's frontend request counters of the default namespace,
// by operation.
func frontendCalls(b *testing.B, url string) map[string]int64 {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		labelsText, ok := strings.CutPrefix(line, "service_requests{")
		if !ok {
			continue
		}
		labelsText, value, ok := strings.Cut(labelsText, "} ")
		if !ok || !strings.Contains(labelsText, `service_name="frontend"`) || !strings.Contains(labelsText, `namespace="default"`) {
			continue
		}
		_, op, ok := strings.Cut(labelsText, `operation="`)
		if !ok {
			continue
		}
		op, _, _ = strings.Cut(op, `"`)
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			b.Fatalf("metrics line %q: %v", line, err)
		}
		out[op] += int64(v)
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	if len(out) == 0 {
		b.Fatalf("no frontend service_requests at %s", url)
	}
	return out
}
