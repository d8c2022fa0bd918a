package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// This file is what the soak (TestSoak) and the waste benchmark (P6, BenchmarkWaste) share: 30
// runs on the real worker against the fake provider with faults, a worker killed with SIGKILL
// on a random schedule, and a ledger that accounts for every provider call.
//
// The ledger is built from how the fake counts. Every generate request lands in exactly one of
// Accepted (a normal reply, paid for), Faulted (an injected fault), RateLimited or Rejected;
// every accepted request is later Answered or Abandoned (its client left first). A stored row
// is ok only from an answered call, and blocked or malformed only from a faulted one (a safety
// block, or malformed replies re-asked until max_retries). So, once nothing is in flight:
//
//	calls − rows = (faulted − fault rows) + rate limited + rejected + abandoned + (answered − ok rows)
//
// The last two terms are paid calls that did not become the stored row ("paid lost"). The
// platform may lose a paid call only when something fails under it, so the chaos accounts for
// every one of them where it happens: before each kill (and the server restart) the fake holds
// its answers (fake.Hold), the replies already on their way are stored, and the paid calls
// still open are exactly those lost to the kill. Paid calls lost anywhere else (while the
// worker ran and nothing failed: a pause, a stop, a re-asked stored sample, two attempts on
// one sample) are "unexplained" and fail the ledger.

// chaosSettings shape one chaos run.
type chaosSettings struct {
	prefix  string // annotator IDs are prefix1..prefix5: unique on a shared server
	samples int    // per run
	seed    uint64
}

// chaosFaultRate of the calls get one of chaosFaults at random: hangs (a silent call, a
// stalled stream), connection resets, 5xx and overloaded, per-minute 429s, safety blocks
// (stored as blocked) and malformed replies (re-asked).
const chaosFaultRate = 0.08

var chaosFaults = []fake.FaultKind{fake.Hang, fake.StallStream, fake.ResetConnection, fake.ServerError, fake.Overloaded,
	fake.RateLimitMinute, fake.SafetyBlockPrompt, fake.SafetyFinish, fake.Malformed}

// stormRetry is the retry delay the 429s of a storm name.
const stormRetry = 2 * time.Second

// chaos is one chaos run: its stack, fake provider, worker and accounts.
type chaos struct {
	tb     testing.TB
	cs     chaosSettings
	s      *stack
	f      *fake.Server
	pairs  []runs.Pair
	rng    *rand.Rand
	worker *exec.Cmd
	out    io.Writer // the event log and the ledger

	// settled is the paid loss already accounted for; budget the paid calls that were open
	// at the server restart and may still turn out lost.
	settled paidLoss
	budget  int
	acct    accounts
	storm   *stormStart
}

// paidLoss splits the paid calls that did not become the stored row: abandoned before the
// answer, or answered and never stored (answered − ok rows).
type paidLoss struct{ abandoned, unstored int }

func (p paidLoss) total() int { return p.abandoned + p.unstored }

// accounts are what the chaos did and where the paid loss happened.
type accounts struct {
	kills, restarts, storms         int
	atKills, atRestart, unexplained int // paid calls lost
	stormCalls, stormMinimum        int
	failed                          []string // runs the drain found failed, and why
}

// stormStart is how things stood when the 429 storm going on began.
type stormStart struct {
	at       time.Time
	faulted  int
	inFlight int
}

// newChaos starts the fake provider (one key per annotator) and a stack of 5 annotators × the
// six domains; odd annotators use the gemini wire format, even ones openai.
func newChaos(tb testing.TB, cs chaosSettings, out io.Writer) *chaos {
	tb.Helper()
	keys := map[string]string{}
	fkeys := map[string]fake.Key{}
	spec := map[string]map[labels.Domain]int{}
	var pairs []runs.Pair
	for i := 1; i <= 5; i++ {
		a := fmt.Sprintf("%s%d", cs.prefix, i)
		keys[a] = "key-" + a
		fkeys["key-"+a] = fake.Key{}
		spec[a] = map[labels.Domain]int{}
		for _, d := range labels.Domains {
			spec[a][d] = cs.samples
			pairs = append(pairs, runs.Pair{Annotator: a, Domain: d})
		}
	}
	f, err := fake.Start(fake.Options{Keys: fkeys, Latency: 200 * time.Millisecond, Jitter: 200 * time.Millisecond,
		Seed: int64(cs.seed), FaultRate: chaosFaultRate, RandomFaults: chaosFaults})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	extra := map[string]map[string]any{}
	for i := 2; i <= 5; i += 2 {
		extra[fmt.Sprintf("%s%d", cs.prefix, i)] = map[string]any{"provider": "openai", "base_url": f.URL()}
	}
	// The provider's latency and six call slots pace the runs (about 15 calls a second), so
	// they last the chaos window. Timeouts leave room for a busy machine: a late heartbeat
	// must not look like a fault.
	g := netGlobal(f.URL(), map[string]any{"model_name": "chaos-model", "batch_size": 5, "max_concurrent_activities": 6,
		"heartbeat_timeout_seconds": 10, "request_timeout_seconds": 4, "stream_idle_timeout_seconds": 2,
		"max_retry_backoff_seconds": 5})
	s := newStackWith(tb, g, spec, cs.samples, extra, keys)
	return &chaos{tb: tb, cs: cs, s: s, f: f, pairs: pairs, rng: rand.New(rand.NewPCG(cs.seed, 0xc4a05)), out: out}
}

func (c *chaos) logf(format string, args ...any) {
	fmt.Fprintf(c.out, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// between is a random duration in [lo, hi).
func (c *chaos) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(c.rng.Int64N(int64(hi-lo)))
}

// chaosSamples is how many samples each run gets so that the runs last about window when
// rate annotations are stored a second in all.
func chaosSamples(window time.Duration, rate float64) int {
	return max(10, int(window.Seconds()*rate/30))
}

func (c *chaos) startWorker() { c.worker = c.s.startWorker() }

// basics are the chaos every run has: worker kills, and one 429 storm.
func (c *chaos) basics(window time.Duration) []*chaosEvent {
	return []*chaosEvent{c.killer(6*time.Second, max(15*time.Second, window/20)), c.stormer(window/10, window*9/10, 4*time.Second)}
}

// run starts every run through the starter, as a person would, fires events until window
// has passed, then brings every run to completion within drain and returns the ledger.
func (c *chaos) run(window, drain time.Duration, events ...*chaosEvent) ledger {
	c.tb.Helper()
	c.startWorker()
	if out, code := c.s.starter("start", "--all"); code != 0 {
		c.tb.Fatalf("start exited %d: %s", code, out)
	}
	c.unleash(time.Now().Add(window), events...)
	c.logf("chaos over: %d kills, %d restarts, %d storms; draining", c.acct.kills, c.acct.restarts, c.acct.storms)
	c.revive(c.pairs)
	c.awaitCompleted(drain)
	return c.finish()
}

// rows counts the stored annotations of the chaos runs by status.
func (c *chaos) rows() store.Counts {
	c.tb.Helper()
	stats, err := c.s.store.Stats(context.Background(), store.Filter{})
	if err != nil {
		c.tb.Fatal(err)
	}
	var n store.Counts
	for _, st := range stats {
		n.OK += st.Counts.OK
		n.Malformed += st.Counts.Malformed
		n.Error += st.Counts.Error
		n.Blocked += st.Counts.Blocked
	}
	return n
}

// loss is the paid loss now. Replies on their way (answered, not yet stored) count in it
// until they are stored.
func (c *chaos) loss() paidLoss {
	st := c.f.Stats()
	return paidLoss{abandoned: st.Abandoned, unstored: st.Answered - c.rows().OK}
}

// quiesce holds the fake's answers and waits until the replies already answered are stored:
// then the paid calls still open are exactly the ones held. The loss since the last account,
// beyond what the restart's open calls explain, is unexplained.
func (c *chaos) quiesce() {
	c.f.Hold()
	abandoned := c.f.Stats().Abandoned // later abandons are the coming event's
	var now paidLoss
	settled := func() bool {
		now = paidLoss{abandoned: abandoned, unstored: c.loss().unstored}
		return now.total()-c.settled.total() <= c.budget
	}
	if !eventually(15*time.Second, settled) {
		c.logf("quiesce: %d paid calls lost while nothing failed (abandoned %d, answered and not stored %d, restart budget %d)",
			now.total()-c.settled.total()-c.budget, now.abandoned-c.settled.abandoned, now.unstored-c.settled.unstored, c.budget)
	}
	c.account(now)
}

// account books the loss from c.settled to now: first against the restart's open calls, the
// rest as unexplained.
func (c *chaos) account(now paidLoss) {
	d := now.total() - c.settled.total()
	used := min(max(d, 0), c.budget)
	c.budget -= used
	c.acct.atRestart += used
	c.acct.unexplained += d - used
	c.settled = now
}

// eventually polls cond every 100 ms until it holds (true) or timeout passes (false).
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// kill SIGKILLs the worker with the fake holding every answer, books the paid calls it had
// open, and starts a new worker.
func (c *chaos) kill() {
	c.tb.Helper()
	c.quiesce()
	before := c.settled
	_ = c.worker.Process.Signal(syscall.SIGKILL)
	_ = c.worker.Wait()
	// The fake ends a call when its client goes; the worker was every call's client.
	waitFor(c.tb, time.Minute, "the fake to see the killed worker's calls end", func() (bool, string) {
		st := c.f.Stats()
		return st.InFlight == 0, fmt.Sprintf("%d in flight", st.InFlight)
	})
	c.settled = c.loss()
	c.acct.atKills += c.settled.total() - before.total()
	c.acct.kills++
	c.f.Release()
	c.logf("kill %d: SIGKILL with %d paid calls open", c.acct.kills, c.settled.total()-before.total())
	c.startWorker()
}

// restart runs restart (the Temporal server's) with the fake holding every answer, so the
// paid calls open through the restart are known: they may be lost, and no others.
func (c *chaos) restart(restart func()) {
	c.tb.Helper()
	c.quiesce()
	took := time.Now()
	restart()
	st := c.f.Stats()
	// Abandoned while held (a request timeout ran out): lost to the restart already.
	c.acct.atRestart += st.Abandoned - c.settled.abandoned
	c.settled.abandoned = st.Abandoned
	open := sumKeys(st).Accepted - st.Answered - st.Abandoned
	c.budget += open
	c.acct.restarts++
	c.f.Release()
	c.logf("server restart in %s with %d paid calls open", time.Since(took).Round(100*time.Millisecond), open)
}

// toggleStorm starts a provider-wide 429 storm, or ends the one going on.
func (c *chaos) toggleStorm() {
	st := c.f.Stats()
	faulted := sumKeys(st).Faulted
	if c.storm == nil {
		c.f.Inject(fake.Fault{Kind: fake.RateLimitMinute, RetryAfter: stormRetry})
		c.storm = &stormStart{at: time.Now(), faulted: faulted, inFlight: st.InFlight}
		c.logf("429 storm begins (%d calls in flight)", st.InFlight)
		return
	}
	c.f.ClearFaults() // the storm is the only queued fault
	took := time.Since(c.storm.at)
	calls := faulted - c.storm.faulted
	// The least a client can do: the calls already in flight, then one probe per retry delay
	// for each of the five quota pools.
	least := c.storm.inFlight + 5*int((took+stormRetry-1)/stormRetry)
	c.acct.storms++
	c.acct.stormCalls += calls
	c.acct.stormMinimum += min(calls, least)
	c.storm = nil
	c.logf("429 storm ends after %s: %d calls answered 429 (least possible %d)", took.Round(100*time.Millisecond), calls, least)
}

// chaosEvent is one kind of chaos on a random schedule: fire does it and returns the wait until it
// fires again (0: never).
type chaosEvent struct {
	next time.Time
	fire func() time.Duration
}

// unleash fires events on their schedules until end, or until every sample is stored.
func (c *chaos) unleash(end time.Time, events ...*chaosEvent) {
	for {
		var e *chaosEvent
		for _, x := range events {
			if !x.next.IsZero() && (e == nil || x.next.Before(e.next)) {
				e = x
			}
		}
		if e == nil || e.next.After(end) || c.rows().Total() == len(c.pairs)*c.cs.samples {
			break // nothing left to upset
		}
		time.Sleep(time.Until(e.next))
		if d := e.fire(); d > 0 {
			e.next = time.Now().Add(d)
		} else {
			e.next = time.Time{}
		}
	}
	if c.storm != nil {
		c.toggleStorm()
	}
}

// killer kills the worker every lo..hi.
func (c *chaos) killer(lo, hi time.Duration) *chaosEvent {
	return &chaosEvent{next: time.Now().Add(c.between(lo, hi)), fire: func() time.Duration {
		c.kill()
		return c.between(lo, hi)
	}}
}

// stormer starts one 429 storm of length d within [lo, hi) from now.
func (c *chaos) stormer(lo, hi, d time.Duration) *chaosEvent {
	return &chaosEvent{next: time.Now().Add(c.between(lo, hi)), fire: func() time.Duration {
		c.toggleStorm()
		if c.storm != nil {
			return d
		}
		return 0
	}}
}

// awaitCompleted waits until every run has completed. Every few seconds it brings back the
// runs that cannot finish on their own, through the starter: paused ones are resumed, failed
// ones reset, stopped ones started again.
func (c *chaos) awaitCompleted(timeout time.Duration) {
	c.tb.Helper()
	open := c.pairs
	last, deadline := time.Now(), time.Now().Add(timeout)
	waitFor(c.tb, timeout, "every run to complete", func() (bool, string) {
		// One describe a poll while the first open run runs: watching costs the worker nothing.
		for len(open) > 0 {
			d, err := server.Client().DescribeWorkflowExecution(context.Background(), open[0].ID(), "")
			if err != nil || d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING ||
				c.s.status(open[0]).Status != contract.StatusCompleted {
				break
			}
			open = open[1:]
		}
		if len(open) > 0 && time.Since(last) > 3*time.Second {
			c.revive(open)
			last = time.Now()
		}
		if len(open) > 0 && time.Until(deadline) < time.Second {
			return false, c.openRuns(open) // the statuses, for the timeout's message
		}
		return len(open) == 0, fmt.Sprintf("%d open", len(open))
	})
}

// revive resumes, resets or starts again the runs of open that wait for a person.
func (c *chaos) revive(open []runs.Pair) {
	actions := map[string]string{contract.StatusPaused: "resume", contract.StatusFailed: "reset", contract.StatusStopped: "start"}
	for _, p := range open {
		st := c.s.status(p)
		if action, ok := actions[st.Status]; ok {
			c.logf("drain: %s is %s (%s): starter %s", p.ID(), st.Status, st.LastError, action)
			if st.Status == contract.StatusFailed {
				c.acct.failed = append(c.acct.failed, p.ID()+": "+st.LastError)
			}
			c.s.starter(action, "--annotator", p.Annotator, "--domain", string(p.Domain))
		}
	}
}

// openRuns describes the first few runs of open.
func (c *chaos) openRuns(open []runs.Pair) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d open", len(open))
	for i, p := range open {
		if i == 5 {
			b.WriteString(" …")
			break
		}
		st := c.s.status(p)
		fmt.Fprintf(&b, "; %s %s %d/%d %s", p.ID(), st.Status, st.Completed, st.Target, st.LastError)
	}
	return b.String()
}

// finish waits until the fake has nothing in flight, books the last of the loss and returns
// the ledger.
func (c *chaos) finish() ledger {
	c.tb.Helper()
	waitFor(c.tb, time.Minute, "the fake to have nothing in flight", func() (bool, string) {
		st := c.f.Stats()
		return st.InFlight == 0, fmt.Sprintf("%d in flight", st.InFlight)
	})
	c.account(c.loss())
	st := c.f.Stats()
	l := ledger{requests: st.Requests, duplicates: st.Duplicates, answered: st.Answered, abandoned: st.Abandoned,
		maxInFlight: st.MaxInFlight, rows: c.rows(), accounts: c.acct}
	all := sumKeys(st)
	l.accepted, l.faulted, l.rateLimited, l.rejected = all.Accepted, all.Faulted, all.RateLimited, all.Rejected
	l.calls = l.accepted + l.faulted + l.rateLimited + l.rejected
	c.checkRows(&l)
	return l
}

// sumKeys adds up the counters of every key.
func sumKeys(st fake.Stats) fake.KeyStats {
	var all fake.KeyStats
	for _, ks := range st.ByKey {
		all.Requests += ks.Requests
		all.Accepted += ks.Accepted
		all.RateLimited += ks.RateLimited
		all.Rejected += ks.Rejected
		all.Faulted += ks.Faulted
	}
	return all
}

// checkRows counts, from the stored rows, the annotations missing, repeated or beyond the
// targets, and the re-asks behind the stored ones.
func (c *chaos) checkRows(l *ledger) {
	c.tb.Helper()
	want := map[string]bool{}
	for _, p := range c.pairs {
		for i := 1; i <= c.cs.samples; i++ {
			want[fmt.Sprintf("%s/%s/E-%04d", p.Annotator, p.Domain, i)] = true
		}
	}
	seen := map[string]int{}
	err := c.s.store.Export(context.Background(), store.Filter{}, func(r store.ExportRow) error {
		k := r.Annotator + "/" + r.Domain + "/" + r.SampleID
		seen[k]++
		l.reasks += max(r.Attempt-1, 0)
		return nil
	})
	if err != nil {
		c.tb.Fatal(err)
	}
	for k, n := range seen {
		switch {
		case !want[k]:
			l.extra += n
		case n > 1:
			l.repeated += n - 1
		}
	}
	for k := range want {
		if seen[k] == 0 {
			l.missing++
		}
	}
}

// ledger is where every provider call went.
type ledger struct {
	requests                       int // everything the fake received, model listings included
	calls                          int // generate requests
	accepted, answered, abandoned  int
	faulted, rateLimited, rejected int
	duplicates, maxInFlight        int
	rows                           store.Counts
	reasks                         int // re-asks after malformed replies, behind the stored rows
	missing, repeated, extra       int
	accounts
}

func (l ledger) faultRows() int    { return l.rows.Malformed + l.rows.Blocked + l.rows.Error }
func (l ledger) paidLost() int     { return l.abandoned + l.answered - l.rows.OK }
func (l ledger) wastedFaults() int { return l.faulted - l.faultRows() }

// minimum is the fewest calls the stored rows could have cost under the same failures: one
// per row, each injected fault that did not end in a row, the least a 429 storm costs, and
// the paid calls open at a kill or the restart.
func (l ledger) minimum() int {
	return l.rows.Total() + l.wastedFaults() - l.stormCalls + l.stormMinimum + l.atKills + l.atRestart
}

// print writes the ledger as a table.
func (l ledger) print(w io.Writer) {
	row := func(what string, n int, note string) { fmt.Fprintf(w, "| %-44s | %7d | %s |\n", what, n, note) }
	fmt.Fprintf(w, "\n| ledger | calls | |\n| --- | ---: | --- |\n")
	row("requests the fake received", l.requests, "generate calls, and model listings")
	row("generate calls", l.calls, "accepted + faulted + rate limited + rejected")
	row("  accepted (paid)", l.accepted, fmt.Sprintf("answered %d + abandoned %d", l.answered, l.abandoned))
	row("  faulted (injected)", l.faulted, fmt.Sprintf("of which 429-storm calls %d (least possible %d, %d storms)", l.stormCalls, l.stormMinimum, l.storms))
	row("  rate limited by the fake's quota", l.rateLimited, "")
	row("  rejected", l.rejected, "")
	row("stored rows", l.rows.Total(), fmt.Sprintf("ok %d, blocked %d, malformed %d, error %d", l.rows.OK, l.rows.Blocked, l.rows.Malformed, l.rows.Error))
	row("  missing / repeated / beyond the target", l.missing+l.repeated+l.extra, fmt.Sprintf("%d / %d / %d", l.missing, l.repeated, l.extra))
	row("re-asks after malformed replies", l.reasks, "behind stored rows (a row's attempt − 1)")
	row("calls beyond one per stored row", l.calls-l.rows.Total(), "=")
	row("  injected faults that stored no row", l.wastedFaults(), "hangs, stalls, resets, 5xx, overloaded, 429s, malformed re-asked")
	row("  + rate limited + rejected", l.rateLimited+l.rejected, "")
	row("  + paid calls lost", l.paidLost(), fmt.Sprintf("abandoned %d + answered and not stored %d", l.abandoned, l.answered-l.rows.OK))
	row("paid calls lost", l.paidLost(), "=")
	row("  open at worker kills", l.atKills, fmt.Sprintf("%d SIGKILLs", l.kills))
	row("  open at the server restart", l.atRestart, fmt.Sprintf("%d restarts", l.restarts))
	row("  unexplained (lost while nothing failed)", l.unexplained, "must be 0")
	row("duplicates (paid work repeated)", l.duplicates, "at most the paid calls lost")
	row("fake: most calls in flight at once", l.maxInFlight, "")
	for _, f := range l.failed {
		fmt.Fprintf(w, "\nreset at the drain, having failed: %s", f)
	}
	fmt.Fprintf(w, "\nminimum calls %d (rows + faults that stored no row − storm calls + storms' least + paid calls open at kills and the restart); actual/minimum %.4f\n",
		l.minimum(), l.ratio())
}

func (l ledger) ratio() float64 { return float64(l.calls) / float64(max(l.minimum(), 1)) }

// problems lists what does not add up.
func (l ledger) problems() []string {
	var p []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			p = append(p, fmt.Sprintf(format, args...))
		}
	}
	check(l.accepted == l.answered+l.abandoned, "accepted %d ≠ answered %d + abandoned %d: paid calls still open", l.accepted, l.answered, l.abandoned)
	check(l.calls-l.rows.Total() == l.wastedFaults()+l.rateLimited+l.rejected+l.paidLost(),
		"calls − rows (%d) ≠ wasted faults %d + rate limited %d + rejected %d + paid lost %d", l.calls-l.rows.Total(), l.wastedFaults(), l.rateLimited, l.rejected, l.paidLost())
	check(l.answered >= l.rows.OK, "%d ok rows from %d answered calls", l.rows.OK, l.answered)
	check(l.faulted >= l.faultRows(), "%d blocked/malformed/error rows from %d faulted calls", l.faultRows(), l.faulted)
	check(l.missing == 0 && l.repeated == 0 && l.extra == 0, "stored rows: %d missing, %d repeated, %d beyond the target", l.missing, l.repeated, l.extra)
	check(l.rateLimited == 0 && l.rejected == 0, "%d calls rate limited by the fake's quota and %d rejected; want none", l.rateLimited, l.rejected)
	check(l.paidLost() == l.atKills+l.atRestart+l.unexplained, "paid lost %d ≠ at kills %d + at the restart %d + unexplained %d", l.paidLost(), l.atKills, l.atRestart, l.unexplained)
	check(l.unexplained == 0, "%d paid calls lost while nothing failed", l.unexplained)
	check(len(l.failed) == 0, "%d runs failed and waited for a person, though every fault here is transient: %s", len(l.failed), strings.Join(l.failed, "; "))
	check(l.duplicates <= l.paidLost(), "%d duplicates but only %d paid calls lost: stored work was paid for again", l.duplicates, l.paidLost())
	return p
}
