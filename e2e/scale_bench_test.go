package e2e

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math"
	"net/url"
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

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/runs"
)

// The scale benchmark's knobs:
//
//	MHA_BENCH_SCALE_WINDOW   the measured window of each cell (default 20s)
//	MHA_BENCH_SCALE_RUNS     the run counts, comma separated (30,300,1000)
//	MHA_BENCH_SCALE_WORKERS  the worker counts, comma separated (1,2)
//	MHA_BENCH_SCALE_LATENCY  the fake provider's fixed latency per call (200ms)
//	MHA_BENCH_SCALE_SLOTS    max_concurrent_activities: each worker's call slots (50)
//	MHA_BENCH_SCALE_WARMUP   the longest warm-up after the last start (60s): from 300 runs on, not every run has had a batch by then (see the activity backlog)
const (
	scaleWindow  = 20 * time.Second
	scaleLatency = 200 * time.Millisecond
	scaleSlots   = 50
	scaleWarmup  = 60 * time.Second
	// scaleMinWarmup is the shortest warm-up after the last start.
	scaleMinWarmup = 5 * time.Second
	// scaleSamples is the dataset of every cell and every run's target: no run can finish
	// before its cell's window ends (30 runs × 2000 at the two workers' slot ceiling, 500/s,
	// take 2 minutes).
	scaleSamples = 2000
	// scaleStartParallel bounds the starts (and the terminations at a cell's end) in flight.
	scaleStartParallel = 16
	// scaleSample is how often the window samples the calls in flight at the fake and the
	// cell's PostgreSQL backends.
	scaleSample = 250 * time.Millisecond
)

var (
	scaleRunCounts    = []int{30, 300, 1000}
	scaleWorkerCounts = []int{1, 2}
)

// scaleCell is one cell of the matrix.
type scaleCell struct{ runs, workers int }

func (c scaleCell) String() string { return fmt.Sprintf("runs=%d_workers=%d", c.runs, c.workers) }

// scaleRow is one cell's result.
type scaleRow struct {
	cell        scaleCell
	annotators  int           // = quota pools
	setup       time.Duration // schema, samples, workers polling
	startTook   time.Duration // every run started
	warmup      time.Duration // the last start until the window
	warmStoring int           // runs that had stored when the window began
	window      time.Duration
	stored      int64 // annotation writes in the window (store seq)
	notOK       int   // of which not status ok
	runsStoring int   // runs that stored in the window
	calls       int   // calls the fake accepted in the window
	badCalls    int   // 429s, rejected or faulted calls in the window
	inFlight    float64
	maxInFlight int
	// CPU over the window in % of one core; RSS in kB.
	workerCPU                  []float64
	workerHWM, workerRSS       []int // peak since the worker started, and at the window's end
	serverCPU, pgCPU, testCPU  float64
	otherCPU, machineBusy      float64
	serverRSS                  int
	pgBackends                 map[string]float64 // the cell's backends by state/wait, mean over samples
	frontend                   map[string]int64   // dev server frontend requests in the window, by operation
	frontendTotal              int64
	machineBusyBefore          float64 // the machine in the 5 s before the cell
	pgCommitsPerS, pgRollbacks float64
	// The task queue at the window's end, by type (activity, workflow): tasks waiting, the
	// oldest one's age, and the server's dispatch rate.
	backlog [2]queueStats
}

// queueStats is one task queue type's backlog as the server reports it.
type queueStats struct {
	count    int64
	age      time.Duration
	dispatch float32 // tasks per second
}

// batches is the activity tasks completed in the window (batches, and the runs' first
// progress reads).
func (r scaleRow) batches() int64 { return r.frontend["RespondActivityTaskCompleted"] }

func (r scaleRow) rate() float64 { return float64(r.stored) / r.window.Seconds() }

func (r scaleRow) workersCPU() float64 {
	var s float64
	for _, c := range r.workerCPU {
		s += c
	}
	return s
}

func (r scaleRow) maxHWM() int { return slices.Max(r.workerHWM) }

func (r scaleRow) sumHWM() int {
	s := 0
	for _, h := range r.workerHWM {
		s += h
	}
	return s
}

// perAnnotation is a CPU share (% of one core over the window) in CPU-ms per annotation.
func (r scaleRow) perAnnotation(cpu float64) float64 {
	if r.stored == 0 {
		return 0
	}
	return cpu / 100 * r.window.Seconds() * 1000 / float64(r.stored)
}

func (r scaleRow) pgMean(key string) float64 { return r.pgBackends[key] }

func (r scaleRow) pgActive() float64 {
	var s float64
	for _, v := range r.pgBackends {
		s += v
	}
	return s
}

// slotUse is the mean calls in flight at the fake over the workers' call slots.
func (r scaleRow) slotUse(slots int) float64 {
	return r.inFlight / float64(r.cell.workers*slots)
}

// envInts reads a comma separated list of positive integers up to hi, or returns def.
func envInts(b *testing.B, name string, def []int, hi int) []int {
	env := strings.TrimSpace(os.Getenv(name))
	if env == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > hi {
			b.Fatalf("%s: %q is not a number from 1 to %d", name, f, hi)
		}
		out = append(out, n)
	}
	return out
}

// BenchmarkScale is the scale table: 30, 300 and 1000 runs on one and on two workers sharing a
// PostgreSQL store, every call answered by the fake provider (gemini wire format, stream on)
// after a fixed latency, with request limits far above what the runs can reach (each
// annotator has six runs, its own key at the fake without limits and its own quota pool at
// 100000/min). Per cell: a fresh schema, fresh workers and annotators of its own; every run
// started (16 at a time), a warm-up until every run has stored (or MHA_BENCH_SCALE_WARMUP),
// then a window in which it measures annotations stored per second, each worker's CPU and
// RSS, the dev server's CPU, PostgreSQL's CPU and what the cell's backends wait for, the
// calls in flight at the fake, and the dev server's frontend requests. The table, the growth
// from each run count to the next, and the evidence on what limits the largest cell go to
// stderr. Knobs: see the constants above.
func BenchmarkScale(b *testing.B) {
	window := envDuration(b, "MHA_BENCH_SCALE_WINDOW", scaleWindow)
	latency := envDuration(b, "MHA_BENCH_SCALE_LATENCY", scaleLatency)
	warmupMax := envDuration(b, "MHA_BENCH_SCALE_WARMUP", scaleWarmup)
	slots := envInts(b, "MHA_BENCH_SCALE_SLOTS", []int{scaleSlots}, 1000)[0]
	runCounts := envInts(b, "MHA_BENCH_SCALE_RUNS", scaleRunCounts, 3000)
	workerCounts := envInts(b, "MHA_BENCH_SCALE_WORKERS", scaleWorkerCounts, 8)
	metricsURL := devServerMetrics(b)
	srvPid := devServerPid(b)
	began := time.Now()

	var rows []scaleRow
	for _, n := range runCounts {
		for _, w := range workerCounts {
			cell := scaleCell{runs: n, workers: w}
			b.Run(cell.String(), func(b *testing.B) {
				for range b.N {
					r := scaleOnce(b, cell, scaleEnv{latency: latency, slots: slots, window: window, warmupMax: warmupMax,
						metricsURL: metricsURL, serverPid: srvPid})
					rows = append(rows, r)
					record(figure{ID: "P5", Measure: fmt.Sprintf("annotations/s at %d runs, %d workers", r.cell.runs, r.cell.workers), Value: r.rate(),
						Settings: fmt.Sprintf("fake provider %s/call, PostgreSQL; worker max RSS %.0f MiB, workers CPU %.0f%%", latency, float64(r.maxHWM())/1024, r.workersCPU())})
					b.ReportMetric(r.rate(), "annotations/s")
					b.ReportMetric(r.workersCPU(), "workers-cpu-%")
					b.ReportMetric(float64(r.maxHWM())/1024, "worker-maxRSS-MiB")
					b.ReportMetric(r.serverCPU, "server-cpu-%")
					b.ReportMetric(r.pgCPU, "postgres-cpu-%")
					b.ReportMetric(r.machineBusy, "machine-busy-%")
					b.ReportMetric(r.slotUse(slots), "slot-use")
				}
			})
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(os.Stderr, scaleReport(rows, latency, slots, window, time.Since(began)))
}

// scaleEnv is what every cell shares.
type scaleEnv struct {
	latency    time.Duration
	slots      int
	window     time.Duration
	warmupMax  time.Duration
	metricsURL string
	serverPid  int
}

// scaleCellSeq numbers the cells run by this process: run IDs are per annotator and domain on
// the one dev server, so each cell has annotators of its own (sc<n>x<k>).
var scaleCellSeq atomic.Int64

func scaleOnce(b *testing.B, cell scaleCell, env scaleEnv) scaleRow {
	ctx := context.Background()
	row := scaleRow{cell: cell}
	row.machineBusyBefore = busyOver(b, 5*time.Second)
	setup := time.Now()
	seq := scaleCellSeq.Add(1)
	spec := map[string]map[labels.Domain]int{}
	keys := map[string]string{}
	fkeys := map[string]fake.Key{}
	var pairs []runs.Pair
	var pools []string
	for k := 0; len(pairs) < cell.runs; k++ {
		id := fmt.Sprintf("sc%dx%d", seq, k)
		spec[id] = map[labels.Domain]int{}
		keys[id] = "scale-key-" + id
		fkeys["scale-key-"+id] = fake.Key{} // no limit at the fake
		pools = append(pools, "annotator-"+id)
		for _, d := range labels.Domains {
			if len(pairs) < cell.runs {
				spec[id][d] = scaleSamples
				pairs = append(pairs, runs.Pair{Annotator: id, Domain: d})
			}
		}
	}
	row.annotators = len(spec)
	dsn, db, app := scaleSchema(b)
	f, err := fake.Start(fake.Options{Latency: env.latency, Keys: fkeys})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	g := netGlobal(f.URL(), map[string]any{"max_concurrent_activities": env.slots, "batch_size": 10,
		"heartbeat_timeout_seconds": 30, "request_timeout_seconds": 10, "stream_idle_timeout_seconds": 5})
	s := newStackOn(b, dsn, g, spec, scaleSamples, nil, keys)
	// Registered before the workers start, so it runs once they are killed: a worker still
	// reserving would start a terminated pool again (update-with-start).
	b.Cleanup(func() {
		bounded(len(pools), scaleStartParallel, func(i int) {
			_ = server.Client().TerminateWorkflow(context.Background(), contract.QuotaID(pools[i]), "", "scale benchmark cell ended")
		})
	})
	var workers []int
	for range cell.workers {
		workers = append(workers, s.startWorker().Process.Pid)
	}
	waitPollerCount(b, s.taskQueue, cell.workers)
	// Registered after the workers, so it runs before they are killed: the runs end, many at
	// a time (the harness then finds them ended).
	b.Cleanup(func() {
		bounded(len(pairs), scaleStartParallel, func(i int) {
			_ = server.Client().TerminateWorkflow(context.Background(), pairs[i].ID(), "", "scale benchmark cell ended")
		})
	})
	row.setup = time.Since(setup)

	// Start every run, scaleStartParallel at a time.
	t0 := time.Now()
	results := make([]runs.Result, len(pairs))
	bounded(len(pairs), scaleStartParallel, func(i int) { results[i] = s.ctl.Start(ctx, pairs[i]) })
	for _, r := range results {
		if r.Outcome != runs.Started {
			b.Fatalf("start %s: %s %s", r.Run, r.Outcome, r.Detail)
		}
	}
	row.startTook = time.Since(t0)

	// Warm-up: until every run has stored (each has had a batch), at least scaleMinWarmup.
	t1 := time.Now()
	for {
		time.Sleep(time.Second)
		row.warmStoring = queryIntTB(b, db, `SELECT COUNT(DISTINCT (annotator, domain)) FROM annotations`)
		if (row.warmStoring >= cell.runs && time.Since(t1) >= scaleMinWarmup) || time.Since(t1) >= env.warmupMax {
			break
		}
	}
	row.warmup = time.Since(t1)

	// The window.
	pg0 := pgCPU()
	var commits0, rollbacks0 int64
	pgStatDB(b, db, &commits0, &rollbacks0)
	calls0 := frontendCalls(b, env.metricsURL)
	w0 := make([]time.Duration, len(workers))
	for i, pid := range workers {
		w0[i] = procCPU(b, pid)
	}
	srv0, test0 := procCPU(b, env.serverPid), procCPU(b, os.Getpid())
	busy0, all0 := machineCPU(b)
	s0 := lastSeq(b, s)
	f.ResetStats()
	start := time.Now()
	sctx, stopSampling := context.WithCancel(ctx)
	var sampled sync.WaitGroup
	var inFlightSum float64
	var inFlightN int
	pgSums := map[string]float64{}
	pgN := 0
	sampled.Go(func() {
		t := time.NewTicker(scaleSample)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
			inFlightSum += float64(f.Stats().InFlight)
			inFlightN++
			if counts, err := pgBackends(sctx, db, app); err == nil {
				for k, v := range counts {
					pgSums[k] += float64(v)
				}
				pgN++
			}
		}
	})
	time.Sleep(env.window)
	s1 := lastSeq(b, s)
	row.window = time.Since(start)
	busy1, all1 := machineCPU(b)
	srv1, test1 := procCPU(b, env.serverPid), procCPU(b, os.Getpid())
	for i, pid := range workers {
		row.workerCPU = append(row.workerCPU, 100*(procCPU(b, pid)-w0[i]).Seconds()/row.window.Seconds())
		row.workerHWM = append(row.workerHWM, vmHWM(b, pid))
		row.workerRSS = append(row.workerRSS, vmRSS(pid))
	}
	calls1 := frontendCalls(b, env.metricsURL)
	pg1 := pgCPU()
	var commits1, rollbacks1 int64
	pgStatDB(b, db, &commits1, &rollbacks1)
	st := f.Stats()
	for i, tt := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_ACTIVITY, enumspb.TASK_QUEUE_TYPE_WORKFLOW} {
		row.backlog[i] = backlog(b, s.taskQueue, tt)
	}
	stopSampling()
	sampled.Wait()

	share := func(d time.Duration) float64 { return 100 * d.Seconds() / row.window.Seconds() }
	row.serverCPU, row.testCPU = share(srv1-srv0), share(test1-test0)
	row.serverRSS = vmRSS(env.serverPid)
	var pgd time.Duration
	for pid, c := range pg1 {
		pgd += c - pg0[pid] // a backend that started in the window counts from zero
	}
	row.pgCPU = share(pgd)
	if all1 > all0 {
		row.machineBusy = 100 * float64(busy1-busy0) / float64(all1-all0)
		row.otherCPU = max(0, row.machineBusy*float64(runtime.NumCPU())-row.workersCPU()-row.serverCPU-row.pgCPU-row.testCPU)
	}
	row.pgCommitsPerS = float64(commits1-commits0) / row.window.Seconds()
	row.pgRollbacks = float64(rollbacks1-rollbacks0) / row.window.Seconds()
	row.stored = s1 - s0
	row.runsStoring = queryIntTB(b, db, fmt.Sprintf(`SELECT COUNT(DISTINCT (annotator, domain)) FROM annotations WHERE seq > %d AND seq <= %d`, s0, s1))
	row.notOK = queryIntTB(b, db, fmt.Sprintf(`SELECT COUNT(*) FROM annotations WHERE seq > %d AND seq <= %d AND status <> 'ok'`, s0, s1))
	for _, ks := range st.ByKey {
		row.calls += ks.Accepted
		row.badCalls += ks.RateLimited + ks.Rejected + ks.Faulted
	}
	row.maxInFlight = st.MaxInFlight
	if inFlightN > 0 {
		row.inFlight = inFlightSum / float64(inFlightN)
	}
	row.pgBackends = map[string]float64{}
	for k, v := range pgSums {
		row.pgBackends[k] = v / float64(max(pgN, 1))
	}
	row.frontend = map[string]int64{}
	for op, v := range calls1 {
		if d := v - calls0[op]; d > 0 {
			row.frontend[op] = d
			row.frontendTotal += d
		}
	}
	if row.stored == 0 {
		b.Fatalf("%s: nothing stored in the %s window", cell, row.window)
	}
	if row.badCalls > 0 || row.notOK > 0 {
		b.Errorf("%s: %d calls refused or faulted by the fake, %d annotations not ok: the cell measures more than the happy path", cell, row.badCalls, row.notOK)
	}
	if row.runsStoring < cell.runs {
		b.Logf("%s: only %d of %d runs stored during the window", cell, row.runsStoring, cell.runs)
	}
	fmt.Fprintf(os.Stderr, "%s: %.1f annotations/s (%d in %s) by %d/%d runs; start %s, warm-up %s (%d runs had stored); workers CPU %s, max RSS %s; dev server %.1f%%; PostgreSQL %.1f%% (%.0f commits/s; backends %s); test process %.1f%%; other %.1f%%; machine %.1f%% busy (%.1f%% before the cell); fake: %d calls, %.1f in flight (max %d) of %d slots; %d batches completed (%.1f annotations each); backlog: activity %s, workflow %s\n",
		cell, row.rate(), row.stored, row.window.Round(time.Millisecond), row.runsStoring, cell.runs,
		row.startTook.Round(100*time.Millisecond), row.warmup.Round(100*time.Millisecond), row.warmStoring,
		fmtPercents(row.workerCPU), fmtMiBs(row.workerHWM), row.serverCPU, row.pgCPU, row.pgCommitsPerS, fmtBackends(row.pgBackends),
		row.testCPU, row.otherCPU, row.machineBusy, row.machineBusyBefore, row.calls, row.inFlight, row.maxInFlight, cell.workers*env.slots,
		row.batches(), float64(row.stored)/float64(max(row.batches(), 1)), row.backlog[0], row.backlog[1])
	return row
}

// backlog reads the server's statistics of one type of the task queue.
func backlog(b *testing.B, taskQueue string, tt enumspb.TaskQueueType) queueStats {
	d, err := server.Client().WorkflowService().DescribeTaskQueue(context.Background(), &workflowservice.DescribeTaskQueueRequest{
		Namespace: "default", TaskQueue: &taskqueuepb.TaskQueue{Name: taskQueue}, TaskQueueType: tt, ReportStats: true})
	if err != nil {
		b.Fatalf("describe %s: %v", taskQueue, err)
	}
	st := d.GetStats()
	return queueStats{count: st.GetApproximateBacklogCount(), age: st.GetApproximateBacklogAge().AsDuration(), dispatch: st.GetTasksDispatchRate()}
}

func (q queueStats) String() string {
	return fmt.Sprintf("%d, oldest %s, %.1f/s", q.count, q.age.Round(100*time.Millisecond), q.dispatch)
}

// bounded calls f(0..n-1), at most par at a time.
func bounded(n, par int, f func(i int)) {
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

// waitPollerCount waits until n workers poll both of the task queue's task types.
func waitPollerCount(b *testing.B, taskQueue string, n int) {
	waitFor(b, time.Minute, fmt.Sprintf("%d workers to poll %s", n, taskQueue), func() (bool, string) {
		for _, tt := range []enumspb.TaskQueueType{enumspb.TASK_QUEUE_TYPE_WORKFLOW, enumspb.TASK_QUEUE_TYPE_ACTIVITY} {
			d, err := server.Client().DescribeTaskQueue(context.Background(), taskQueue, tt)
			if err != nil {
				return false, err.Error()
			}
			ids := map[string]bool{}
			for _, p := range d.GetPollers() {
				ids[p.GetIdentity()] = true
			}
			if len(ids) < n {
				return false, fmt.Sprintf("%d %s pollers", len(ids), tt)
			}
		}
		return true, ""
	})
}

// scaleSchema is postgresSchema for a benchmark: a schema of the cell's own, dropped at
// cleanup. Its DSN also names the connections (application_name), so the window can tell the
// cell's backends from any other test's.
func scaleSchema(b *testing.B) (dsn string, db *sql.DB, app string) {
	base := os.Getenv(testPostgresEnv)
	switch base {
	case "off":
		b.Skipf("%s=off", testPostgresEnv)
	case "":
		base = defaultTestPostgres
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		b.Fatalf("%s must be a postgres:// URL or off (%v)", testPostgresEnv, err)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { admin.Close() })
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := "mha_e2e_sc_" + hex.EncodeToString(rnd[:])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		b.Fatalf("PostgreSQL at %s: %v (start it, point %s at another server, or set %s=off)",
			u.Redacted(), err, testPostgresEnv, testPostgresEnv)
	}
	b.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			b.Errorf("drop the benchmark's schema: %v", err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("application_name", schema)
	u.RawQuery = q.Encode()
	// The benchmark's own connection has no application_name of the cell: its queries are
	// not counted among the cell's backends.
	q.Del("application_name")
	own := *u
	own.RawQuery = q.Encode()
	if db, err = sql.Open("pgx", own.String()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return u.String(), db, schema
}

func queryIntTB(b *testing.B, db *sql.DB, query string) int {
	var n int
	if err := db.QueryRowContext(context.Background(), query).Scan(&n); err != nil {
		b.Fatalf("%s: %v", query, err)
	}
	return n
}

// pgStatDB reads the database's committed and rolled back transactions so far (every
// client's: the cell's are most of them).
func pgStatDB(b *testing.B, db *sql.DB, commits, rollbacks *int64) {
	err := db.QueryRowContext(context.Background(),
		`SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()`).Scan(commits, rollbacks)
	if err != nil {
		b.Fatal(err)
	}
}

// pgBackends counts the cell's backends that are not idle, by what they do: running
// ("CPU"), waiting for the client inside a transaction ("idle in transaction", the seq row
// locked meanwhile), or waiting for an event ("Lock:transactionid", "IO:WALSync", ...).
func pgBackends(ctx context.Context, db *sql.DB, app string) (map[string]int, error) {
	rows, err := db.QueryContext(ctx, `SELECT CASE WHEN state <> 'active' THEN state
			WHEN wait_event_type IS NULL THEN 'CPU' ELSE wait_event_type || ':' || wait_event END, COUNT(*)
		FROM pg_stat_activity WHERE application_name = $1 AND state IS NOT NULL AND state <> 'idle' GROUP BY 1`, app)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, rows.Err()
}

// pgCPU is the CPU time of every PostgreSQL process on the machine, by pid (the server is
// local; a backend that ends in between loses its share).
func pgCPU() map[int]time.Duration {
	out := map[int]time.Duration{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		open, closing := strings.IndexByte(string(data), '('), strings.LastIndexByte(string(data), ')')
		if open < 0 || closing < open || string(data[open+1:closing]) != "postgres" {
			continue
		}
		f := strings.Fields(string(data[closing+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		out[pid] = time.Duration(u+s) * time.Second / userHZ
	}
	return out
}

// vmRSS is process pid's resident set size now, in kB (0 when unreadable).
func vmRSS(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return kb
		}
	}
	return 0
}

// busyOver is the machine's busy % of all cores over d.
func busyOver(b *testing.B, d time.Duration) float64 {
	b0, a0 := machineCPU(b)
	time.Sleep(d)
	b1, a1 := machineCPU(b)
	if a1 <= a0 {
		return 0
	}
	return 100 * float64(b1-b0) / float64(a1-a0)
}

func fmtPercents(p []float64) string {
	parts := make([]string, len(p))
	for i, v := range p {
		parts[i] = fmt.Sprintf("%.1f%%", v)
	}
	return strings.Join(parts, " + ")
}

func fmtMiBs(kb []int) string {
	parts := make([]string, len(kb))
	for i, v := range kb {
		parts[i] = fmt.Sprintf("%.0f MiB", float64(v)/1024)
	}
	return strings.Join(parts, " + ")
}

// fmtBackends lists the mean backends by state, largest first.
func fmtBackends(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(m[b], m[a]) })
	var parts []string
	for _, k := range keys {
		if m[k] >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "none busy"
	}
	return strings.Join(parts, ", ")
}

// topOps lists the frontend operations with the most requests per annotation.
func topOps(r scaleRow, n int) string {
	ops := make([]string, 0, len(r.frontend))
	for op := range r.frontend {
		ops = append(ops, op)
	}
	slices.SortFunc(ops, func(a, b string) int { return cmp.Compare(r.frontend[b], r.frontend[a]) })
	var parts []string
	for _, op := range ops[:min(n, len(ops))] {
		parts = append(parts, fmt.Sprintf("%s %.2f", op, float64(r.frontend[op])/float64(r.stored)))
	}
	return strings.Join(parts, ", ")
}

func scaleReport(rows []scaleRow, latency time.Duration, slots int, window, took time.Duration) string {
	var t strings.Builder
	fmt.Fprintf(&t, "\nScale: fake provider (gemini wire, stream on) at a fixed %s per call; max_concurrent_activities %d per worker (call-slot ceiling %d/%s = %.0f annotations/s per worker); batch_size 10; one key and one quota pool per annotator (6 runs each), limits never reached (100000/min, fake unlimited); store PostgreSQL (a schema per cell, synchronous_commit as the server has it); every run's target %d; window %s; %d cores; whole benchmark %s\n\n",
		latency, slots, slots, latency, float64(slots)/latency.Seconds(), scaleSamples, window, runtime.NumCPU(), took.Round(time.Second))
	fmt.Fprintln(&t, "| runs | workers | annotators/pools | start | warm-up | annotations/s | per run/s | runs storing | workers CPU | workers max RSS | workers RSS at end | dev server CPU | dev server RSS | PostgreSQL CPU | test process (fake) CPU | other CPU | machine busy (before) | calls in flight / slots | PG commits/s | PG backends (mean) | frontend req/annotation | batches/s (annotations each) | activity backlog at end | workflow backlog at end |")
	fmt.Fprintln(&t, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		fmt.Fprintf(&t, "| %d | %d | %d | %s | %s | %.1f | %.3f | %d | %s | %s | %s | %.1f%% | %.0f MiB | %.1f%% | %.1f%% | %.1f%% | %.1f%% (%.1f%%) | %.1f / %d (max %d) | %.0f | %s | %.2f | %.1f (%.1f) | %s | %s |\n",
			r.cell.runs, r.cell.workers, r.annotators, r.startTook.Round(100*time.Millisecond), r.warmup.Round(100*time.Millisecond),
			r.rate(), r.rate()/float64(r.cell.runs), r.runsStoring, fmtPercents(r.workerCPU), fmtMiBs(r.workerHWM), fmtMiBs(r.workerRSS),
			r.serverCPU, float64(r.serverRSS)/1024, r.pgCPU, r.testCPU, r.otherCPU, r.machineBusy, r.machineBusyBefore,
			r.inFlight, r.cell.workers*slots, r.maxInFlight, r.pgCommitsPerS, fmtBackends(r.pgBackends), float64(r.frontendTotal)/float64(r.stored),
			float64(r.batches())/r.window.Seconds(), float64(r.stored)/float64(max(r.batches(), 1)), r.backlog[0], r.backlog[1])
	}

	fmt.Fprintln(&t, "\nCost per annotation (CPU-ms of each process per annotation stored in the window)")
	fmt.Fprintln(&t)
	fmt.Fprintln(&t, "| runs | workers | workers | dev server | PostgreSQL | test process (fake) | frontend requests per annotation (top 5) |")
	fmt.Fprintln(&t, "| --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		fmt.Fprintf(&t, "| %d | %d | %.2f | %.2f | %.2f | %.2f | %s |\n", r.cell.runs, r.cell.workers, r.perAnnotation(r.workersCPU()),
			r.perAnnotation(r.serverCPU), r.perAnnotation(r.pgCPU), r.perAnnotation(r.testCPU), topOps(r, 5))
	}

	// Growth from each run count to the next, per worker count: ratio (and exponent k in
	// metric ∝ runs^k).
	fmt.Fprintln(&t, "\nGrowth with the number of runs: ratio of the larger cell to the smaller (k: exponent, metric ∝ runs^k)")
	fmt.Fprintln(&t)
	fmt.Fprintln(&t, "| workers | runs | annotations/s | workers CPU | workers max RSS (sum) | dev server CPU | PostgreSQL CPU | workers CPU-ms/annotation | dev server CPU-ms/annotation | frontend req/annotation |")
	fmt.Fprintln(&t, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	byWorkers := map[int][]scaleRow{}
	var wcs []int
	for _, r := range rows {
		if byWorkers[r.cell.workers] == nil {
			wcs = append(wcs, r.cell.workers)
		}
		byWorkers[r.cell.workers] = append(byWorkers[r.cell.workers], r)
	}
	for _, w := range wcs {
		rs := byWorkers[w]
		slices.SortFunc(rs, func(a, b scaleRow) int { return cmp.Compare(a.cell.runs, b.cell.runs) })
		for i := 1; i < len(rs); i++ {
			a, c := rs[i-1], rs[i]
			x := float64(c.cell.runs) / float64(a.cell.runs)
			g := func(va, vc float64) string {
				if va <= 0 || vc <= 0 {
					return "–"
				}
				return fmt.Sprintf("×%.2f (k %.2f)", vc/va, math.Log(vc/va)/math.Log(x))
			}
			fmt.Fprintf(&t, "| %d | %d→%d | %s | %s | %s | %s | %s | %s | %s | %s |\n", w, a.cell.runs, c.cell.runs,
				g(a.rate(), c.rate()), g(a.workersCPU(), c.workersCPU()), g(float64(a.sumHWM()), float64(c.sumHWM())),
				g(a.serverCPU, c.serverCPU), g(a.pgCPU, c.pgCPU),
				g(a.perAnnotation(a.workersCPU()), c.perAnnotation(c.workersCPU())), g(a.perAnnotation(a.serverCPU), c.perAnnotation(c.serverCPU)),
				g(float64(a.frontendTotal)/float64(a.stored), float64(c.frontendTotal)/float64(c.stored)))
		}
	}
	// Two workers against one at the same run count.
	fmt.Fprintln(&t, "\nTwo workers against one: annotations/s ratio at the same run count")
	for _, r := range rows {
		if r.cell.workers != 2 {
			continue
		}
		for _, o := range rows {
			if o.cell.workers == 1 && o.cell.runs == r.cell.runs {
				fmt.Fprintf(&t, "- runs=%d: %.1f → %.1f /s (×%.2f); dev server CPU %.1f%% → %.1f%%\n", r.cell.runs, o.rate(), r.rate(), r.rate()/o.rate(), o.serverCPU, r.serverCPU)
			}
		}
	}

	// The largest cell: most runs, then most workers.
	big := slices.MaxFunc(rows, func(a, b scaleRow) int {
		return cmp.Or(cmp.Compare(a.cell.runs, b.cell.runs), cmp.Compare(a.cell.workers, b.cell.workers))
	})
	fmt.Fprintf(&t, "\nWhat limits the largest cell (%s):\n", big.cell)
	cores := float64(100 * runtime.NumCPU())
	fmt.Fprintf(&t, "- call slots: %.1f calls in flight on average of %d (%.0f%%); the ceiling %d/%s×%d workers = %.0f/s against %.1f/s measured\n",
		big.inFlight, big.cell.workers*slots, 100*big.slotUse(slots), slots, latency, big.cell.workers, float64(big.cell.workers*slots)/latency.Seconds(), big.rate())
	fmt.Fprintf(&t, "- machine: %.1f%% of %d cores busy (%.0f of %.0f core-%%): workers %.0f%%, dev server %.0f%%, PostgreSQL %.0f%%, test process (fake) %.0f%%, other processes %.0f%%; %.1f%% busy in the 5 s before the cell\n",
		big.machineBusy, runtime.NumCPU(), big.machineBusy*float64(runtime.NumCPU()), cores, big.workersCPU(), big.serverCPU, big.pgCPU, big.testCPU, big.otherCPU, big.machineBusyBefore)
	fmt.Fprintf(&t, "- PostgreSQL: %.0f commits/s; the cell's backends not idle, mean %.2f: %s\n", big.pgCommitsPerS, big.pgActive(), fmtBackends(big.pgBackends))
	fmt.Fprintf(&t, "- task queue at the window's end: activity backlog %s; workflow backlog %s; %.1f batches/s completed, %.1f annotations each\n",
		big.backlog[0], big.backlog[1], float64(big.batches())/big.window.Seconds(), float64(big.stored)/float64(max(big.batches(), 1)))
	fmt.Fprintf(&t, "- runs: %d of %d stored during the window (%.3f annotations/s per run; one batch per run at a time)\n", big.runsStoring, big.cell.runs, big.rate()/float64(big.cell.runs))
	// Every rule that holds, in order: the first is the verdict.
	var found []string
	if big.slotUse(slots) >= 0.85 {
		found = append(found, "the workers' call slots (max_concurrent_activities / latency)")
	}
	if big.machineBusy >= 90 {
		shares := []struct {
			name string
			cpu  float64
		}{{"the workers", big.workersCPU()}, {"the Temporal dev server", big.serverCPU}, {"PostgreSQL", big.pgCPU},
			{"the test process (fake provider)", big.testCPU}, {"other processes on the machine", big.otherCPU}}
		slices.SortFunc(shares, func(a, b struct {
			name string
			cpu  float64
		}) int {
			return cmp.Compare(b.cpu, a.cpu)
		})
		found = append(found, fmt.Sprintf("CPU: the machine's %d cores are saturated (largest shares: %s %.0f%%, %s %.0f%%)",
			runtime.NumCPU(), shares[0].name, shares[0].cpu, shares[1].name, shares[1].cpu))
	}
	if w := big.pgMean("Lock:transactionid") + big.pgMean("Lock:tuple"); w >= 1 {
		found = append(found, fmt.Sprintf("PostgreSQL writes: %.1f writers on average queue for the annotation_seq row lock, held %.2f of the time by a transaction waiting for its worker (idle in transaction)",
			w, big.pgMean("idle in transaction")))
	}
	if len(found) == 0 {
		found = append(found, "none of the rules holds: the runs' own serial path (one batch per run, a synchronous heartbeat and a reservation per call)")
	}
	fmt.Fprintf(&t, "- verdict (rules: slot use ≥ 85%% → call slots; machine ≥ 90%% busy → CPU; ≥ 1 writer waiting on a row lock → PostgreSQL writes): %s\n", found[0])
	for _, f := range found[1:] {
		fmt.Fprintf(&t, "- also: %s\n", f)
	}
	return t.String()
}
