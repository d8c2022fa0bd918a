package e2e

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm/fake"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// These tests run the real worker against the fake provider (Gemini wire format, streamed)
// with faults injected, and check that every run still completes with exactly one stored
// annotation per sample.

func startFake(t *testing.T, opts fake.Options) *fake.Server {
	t.Helper()
	f, err := fake.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// netGlobal is a gemini setup with short timeouts, so faults cost seconds.
func netGlobal(baseURL string, more map[string]any) map[string]any {
	g := map[string]any{"provider": "gemini", "base_url": baseURL, "model_name": "gemini-test",
		"heartbeat_timeout_seconds": 3, "request_timeout_seconds": 2, "stream_idle_timeout_seconds": 1,
		"max_restart_attempts": 10, "requests_per_minute": 100000, "requests_per_day": 100000000}
	for k, v := range more {
		g[k] = v
	}
	return g
}

// match is the prompt substring of generated sample i (1-based), for aiming a fault.
func match(i int) string { return fmt.Sprintf("(sample %d)", i) }

// storedTimes returns when each of p's annotations was stored, in order.
func (s *stack) storedTimes(p runs.Pair) []time.Time {
	s.t.Helper()
	var out []time.Time
	err := s.store.Export(context.Background(), store.Filter{Annotator: p.Annotator, Domain: string(p.Domain)}, func(r store.ExportRow) error {
		out = append(out, r.CreatedAt)
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// longestGap is the longest time between two stored annotations: what the worst fault cost.
func longestGap(times []time.Time) time.Duration {
	var gap time.Duration
	for i := 1; i < len(times); i++ {
		gap = max(gap, times[i].Sub(times[i-1]))
	}
	return gap
}

func (s *stack) runToCompletion(ps ...runs.Pair) {
	s.t.Helper()
	if out, code := s.starter("start", "--all"); code != 0 {
		s.t.Fatalf("start exited %d: %s", code, out)
	}
	for _, p := range ps {
		st := s.waitStatus(p, contract.StatusCompleted, 2*time.Minute)
		if n := s.stored(p); st.Completed != st.Target || n != st.Target {
			s.t.Fatalf("%s: status %+v, store %d; want exactly the target", p.ID(), st, n)
		}
	}
}

func TestHungCallsAreCutAndTheRunCompletes(t *testing.T) {
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-h": {}}})
	for _, i := range []int{4, 11, 17} {
		f.Inject(fake.Fault{Kind: fake.Hang, Times: 1, Match: match(i)})
	}
	s := newStackWith(t, netGlobal(f.URL(), nil), map[string]map[labels.Domain]int{"nh": {labels.Urgency: 20}}, 20, nil, map[string]string{"nh": "key-h"})
	p := runs.Pair{Annotator: "nh", Domain: labels.Urgency}
	s.startWorker()
	s.runToCompletion(p)
	st := f.Stats()
	gap := longestGap(s.storedTimes(p))
	t.Logf("hang recovery: longest gap %s = %.2f × heartbeat timeout; fake requests %d for 20 annotations, duplicates %d",
		gap.Round(time.Millisecond), gap.Seconds()/3, st.Requests, st.Duplicates)
	if st.Duplicates != 0 || st.Requests != 20+3 {
		t.Fatalf("fake saw %d requests (%d duplicates); want 20 answered + the 3 that hung", st.Requests, st.Duplicates)
	}
	// Cut by the request deadline and asked again in place: within 1.2 heartbeat timeouts.
	if gap > 3600*time.Millisecond {
		t.Fatalf("a hang cost %s; want at most 1.2 × the 3 s heartbeat timeout", gap)
	}
}

func TestStalledStreamsAreCutAndTheRunCompletes(t *testing.T) {
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-s": {}}, ChunkCount: 4})
	for _, i := range []int{3, 9} {
		f.Inject(fake.Fault{Kind: fake.StallStream, Times: 1, Match: match(i), After: 2})
	}
	s := newStackWith(t, netGlobal(f.URL(), nil), map[string]map[labels.Domain]int{"ns": {labels.Therapeutic: 15}}, 15, nil, map[string]string{"ns": "key-s"})
	p := runs.Pair{Annotator: "ns", Domain: labels.Therapeutic}
	s.startWorker()
	s.runToCompletion(p)
	if st := f.Stats(); st.Duplicates != 0 || st.Requests != 15+2 {
		t.Fatalf("fake saw %d requests (%d duplicates); want 15 + the 2 stalled", st.Requests, st.Duplicates)
	}
	t.Logf("stalled streams: longest gap %s", longestGap(s.storedTimes(p)).Round(time.Millisecond))
}

func TestInvalidKeyFailsAtOnceAndAFixedKeyCompletesAfterReset(t *testing.T) {
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"right-key": {}}})
	s := newStackWith(t, netGlobal(f.URL(), nil), map[string]map[labels.Domain]int{"nk": {labels.Intensity: 10}}, 10, nil, map[string]string{"nk": "wrong-key"})
	p := runs.Pair{Annotator: "nk", Domain: labels.Intensity}
	s.startWorker()
	s.startAll()
	st := s.waitStatus(p, contract.StatusFailed, time.Minute)
	if !strings.Contains(st.LastError, "API key") || !strings.Contains(st.LastError, "invalid_key") || strings.Contains(st.LastError, "wrong-key") {
		t.Fatalf("failed status says %q; want the invalid-key error, without the key", st.LastError)
	}
	if n := f.Stats().ByKey["wrong-key"].Requests; n > 2 || st.Restarts != 0 {
		t.Fatalf("the bad key was tried %d times (restarts %d); want no retry storm (at most 2)", n, st.Restarts)
	}
	s.writeKeys(map[string]string{"nk": "right-key"})
	if out, code := s.starter("reset", "--annotator", "nk"); code != 0 {
		t.Fatalf("reset exited %d: %s", code, out)
	}
	st = s.waitStatus(p, contract.StatusCompleted, time.Minute)
	if st.Completed != 10 || s.stored(p) != 10 {
		t.Fatalf("after the fix: status %+v, store %d", st, s.stored(p))
	}
	replay(t, p.ID())
}

func TestServerErrorStormThenRecovery(t *testing.T) {
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-5": {}}})
	f.Inject(fake.Fault{Kind: fake.ServerError, Status: 500, Times: 3})
	f.Inject(fake.Fault{Kind: fake.Overloaded, Times: 2})
	f.Inject(fake.Fault{Kind: fake.ResetConnection, Times: 1})
	s := newStackWith(t, netGlobal(f.URL(), nil), map[string]map[labels.Domain]int{"n5": {labels.Modality: 12}}, 12, nil, map[string]string{"n5": "key-5"})
	p := runs.Pair{Annotator: "n5", Domain: labels.Modality}
	s.startWorker()
	s.runToCompletion(p)
	if st := f.Stats(); st.Duplicates != 0 || st.Requests != 12+6 {
		t.Fatalf("fake saw %d requests (%d duplicates); want 12 + the 6 failed", st.Requests, st.Duplicates)
	}
}

func TestMoreHangsThanSlotsLeaveTheWorkerFreeSlots(t *testing.T) {
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-d": {}}})
	// Six hangs across three runs, on a worker with two activity slots.
	for _, i := range []int{2, 3, 5, 7, 8, 9} {
		f.Inject(fake.Fault{Kind: fake.Hang, Times: 1, Match: match(i)})
	}
	s := newStackWith(t, netGlobal(f.URL(), map[string]any{"max_concurrent_activities": 2}),
		map[string]map[labels.Domain]int{"nd": {labels.Urgency: 10, labels.Adjunct: 10, labels.Modality: 10}}, 10, nil, map[string]string{"nd": "key-d"})
	s.startWorker()
	s.runToCompletion(runs.Pair{Annotator: "nd", Domain: labels.Urgency}, runs.Pair{Annotator: "nd", Domain: labels.Adjunct},
		runs.Pair{Annotator: "nd", Domain: labels.Modality})
	if st := f.Stats(); st.Duplicates != 0 || st.Requests != 30+6 {
		t.Fatalf("fake saw %d requests (%d duplicates); want 30 + the 6 hung", st.Requests, st.Duplicates)
	}
}

func TestSafetyBlocksAreStoredAndTheRunContinues(t *testing.T) {
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-b": {}}})
	f.Inject(fake.Fault{Kind: fake.SafetyBlockPrompt, Times: 1, Match: match(4)})
	f.Inject(fake.Fault{Kind: fake.SafetyFinish, Times: 1, Match: match(6)})
	s := newStackWith(t, netGlobal(f.URL(), nil), map[string]map[labels.Domain]int{"nb": {labels.Redressal: 10}}, 10, nil, map[string]string{"nb": "key-b"})
	p := runs.Pair{Annotator: "nb", Domain: labels.Redressal}
	s.startWorker()
	s.runToCompletion(p)
	st := s.status(p)
	if st.Blocked != 2 || st.OK != 8 {
		t.Fatalf("status %+v; want 2 blocked and 8 ok", st)
	}
	if n := f.Stats().Requests; n != 10 {
		t.Fatalf("fake saw %d requests; blocked samples must not be retried (want 10)", n)
	}
}

// blackholeProxy forwards TCP to target until Blackhole, after which the connections it
// already has stop forwarding without closing: what a NAT or load balancer does when it
// forgets an idle connection. New connections work.
type blackholeProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []*proxyConn
}

type proxyConn struct {
	client, server net.Conn
	dead           chan struct{}
}

func startProxy(t *testing.T, target string) *blackholeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{ln: ln, target: target}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.client.Close()
			c.server.Close()
		}
	})
	go p.serve()
	return p
}

func (p *blackholeProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pc := &proxyConn{client: c, server: s, dead: make(chan struct{})}
		p.mu.Lock()
		p.conns = append(p.conns, pc)
		p.mu.Unlock()
		go pc.pipe(c, s)
		go pc.pipe(s, c)
	}
}

// pipe copies until the connection is blackholed; then it reads and drops everything.
func (pc *proxyConn) pipe(from, to net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if err != nil {
			return
		}
		select {
		case <-pc.dead:
			continue
		default:
		}
		if _, err := to.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *blackholeProxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		close(c.dead)
	}
	p.conns = nil
}

func TestSilentlyDroppedKeepAliveCostsAtMostOneRequestDeadline(t *testing.T) {
	// Slow answers, so the run is still going when it is paused.
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"key-k": {}}, Latency: 150 * time.Millisecond})
	proxy := startProxy(t, f.URL()[len("http://"):])
	// One call slot: one sample at a time, over one pooled connection.
	s := newStackWith(t, netGlobal("http://"+proxy.ln.Addr().String(), map[string]any{"batch_size": 2, "max_concurrent_activities": 1}),
		map[string]map[labels.Domain]int{"nx": {labels.Urgency: 12}}, 12, nil, map[string]string{"nx": "key-k"})
	p := runs.Pair{Annotator: "nx", Domain: labels.Urgency}
	s.startWorker()
	s.startAll()
	waitFor(t, time.Minute, "4 stored annotations", func() (bool, string) { n := s.stored(p); return n >= 4, fmt.Sprint(n) })
	if out, code := s.starter("pause", "--annotator", "nx"); code != 0 {
		t.Fatalf("pause exited %d: %s", code, out)
	}
	s.waitStatus(p, contract.StatusPaused, 30*time.Second)
	before := s.stored(p)
	if before >= 12 {
		t.Fatal("the run finished before it was paused; the test proves nothing")
	}
	// Between requests, the pooled keep-alive connection dies without a FIN or RST.
	proxy.Blackhole()
	resumed := time.Now()
	if out, code := s.starter("resume", "--annotator", "nx"); code != 0 {
		t.Fatalf("resume exited %d: %s", code, out)
	}
	waitFor(t, time.Minute, "the next stored annotation", func() (bool, string) { n := s.stored(p); return n > before, fmt.Sprint(n) })
	cost := time.Since(resumed)
	t.Logf("dropped keep-alive cost %s (request timeout 2s)", cost.Round(time.Millisecond))
	// One request deadline (2s), the batch retry's backoff (1s) and the run's own overhead.
	if cost > 4500*time.Millisecond {
		t.Fatalf("the dropped connection cost %s; want at most about one request deadline", cost)
	}
	s.waitStatus(p, contract.StatusCompleted, time.Minute)
	if st := f.Stats(); st.Duplicates != 0 || s.stored(p) != 12 {
		t.Fatalf("store %d, fake duplicates %d; want 12 and none", s.stored(p), st.Duplicates)
	}
}

func TestSixRunsOnOnePoolFinishWithoutA429(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a minute of real time: the limit is per minute")
	}
	// Three annotators with keys of one project share the pool and the provider's budget.
	f := startFake(t, fake.Options{Keys: map[string]fake.Key{"project-key": {RPM: 60}}})
	extra := map[string]map[string]any{"q1": {"quota_pool": "proj"}, "q2": {"quota_pool": "proj"}, "q3": {"quota_pool": "proj"}}
	keys := map[string]string{"q1": "project-key", "q2": "project-key", "q3": "project-key"}
	spec := map[string]map[labels.Domain]int{}
	var pairs []runs.Pair
	for _, a := range []string{"q1", "q2", "q3"} {
		spec[a] = map[labels.Domain]int{labels.Urgency: 15, labels.Intensity: 15}
		pairs = append(pairs, runs.Pair{Annotator: a, Domain: labels.Urgency}, runs.Pair{Annotator: a, Domain: labels.Intensity})
	}
	s := newStackWith(t, netGlobal(f.URL(), map[string]any{"requests_per_minute": 60, "heartbeat_timeout_seconds": 10, "request_timeout_seconds": 5}),
		spec, 15, extra, keys)
	s.startWorker()
	start := time.Now()
	s.runToCompletion(pairs...)
	elapsed := time.Since(start)
	st := f.Stats().ByKey["project-key"]
	t.Logf("90 calls at 60/min in %s: accepted %d, 429s %d", elapsed.Round(time.Millisecond), st.Accepted, st.RateLimited)
	if st.RateLimited != 0 || st.Accepted != 90 {
		t.Fatalf("fake accepted %d and answered %d 429s; want 90 and none", st.Accepted, st.RateLimited)
	}
	if elapsed < 60*time.Second {
		t.Fatalf("90 calls at 60/min took only %s: the limit was not applied", elapsed)
	}
	replay(t, contract.QuotaID("proj"))
}
