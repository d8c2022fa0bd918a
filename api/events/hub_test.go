package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.temporal.io/api/serviceerror"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

func TestEventIDsCarryTheSeqAndSortInOrder(t *testing.T) {
	ids := []string{encodeID(0, 1), encodeID(0, 2), encodeID(9, 3), encodeID(10, 4), encodeID(300, 5)}
	if !slices.IsSorted(ids) {
		t.Fatalf("ids do not sort: %v", ids)
	}
	for _, want := range []int64{0, 9, 300, 1 << 40} {
		if got, ok := parseID(encodeID(want, 77)); !ok || got != want {
			t.Errorf("parseID(encodeID(%d)) = %d, %v", want, got, ok)
		}
	}
	for _, bad := range []string{"", "12", "zzzzzzzzzzzzzzzz-0000000000000001", encodeID(1, 1) + "0"} {
		if _, ok := parseID(bad); ok {
			t.Errorf("parseID(%q) accepted it", bad)
		}
	}
}

func TestVisibilityQueryListsChangedStartedAndClosedRuns(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 890000000, time.FixedZone("x", 3600))
	want := "WorkflowType = 'AnnotationRun' AND (RunChangedAt >= '2026-03-04T04:06:07.89Z' OR StartTime >= '2026-03-04T04:06:07.89Z'" +
		" OR (ExecutionStatus != 'Running' AND CloseTime >= '2026-03-04T04:06:07.89Z'))"
	if got := VisibilityQuery(at); got != want {
		t.Fatalf("VisibilityQuery =\n%s\nwant\n%s", got, want)
	}
}

func TestNewClientGetsTheStateFirst(t *testing.T) {
	e := newEnv(t)
	e.tc.set("annotation-1-urgency", contract.StatusRunning, time.Now().Add(-time.Hour))
	e.quota.set(contract.QuotaStatus{Pool: "pool-1", RequestsPerMinute: 10, CallsToday: 3})
	e.store.add("1", labels.Therapeutic, 2, "TA-1")
	h := e.hub(nil, nil)
	c := dial(t, h.url, true)
	ev := c.next()
	if ev.Type != TypeState {
		t.Fatalf("first event is %s, want state", ev.Type)
	}
	if seq, ok := parseID(ev.ID); !ok || seq != 2 {
		t.Fatalf("state id %q: seq %d, want the store's last seq 2", ev.ID, seq)
	}
	st := decode[State](t, ev.Data)
	var ids []string
	for _, r := range st.Runs {
		ids = append(ids, r.WorkflowID)
	}
	want := []string{"annotation-1-urgency", "annotation-1-therapeutic", "annotation-1-intensity", "annotation-1-adjunct",
		"annotation-1-modality", "annotation-1-redressal"}
	if !slices.Equal(ids, want) {
		t.Fatalf("runs %v, want config order %v", ids, want)
	}
	if r := st.Runs[0]; r.Status.Status != contract.StatusRunning || !r.Enabled || r.WebUI != "http://ui/namespaces/default/workflows/annotation-1-urgency" {
		t.Errorf("running run: %+v", r)
	}
	if r := st.Runs[1]; r.Status.Status != runs.StatusNotStarted || r.Completed != 2 || r.WebUI != "" {
		t.Errorf("run without a workflow: %+v, want not_started with the store's 2 annotations and no link", r)
	}
	if len(st.Quota) != 1 || !st.Quota[0].Started || st.Quota[0].CallsToday != 3 {
		t.Errorf("quota %+v", st.Quota)
	}
	if st.Overview.Runs != 6 || st.Overview.ByStatus[runs.StatusNotStarted] != 5 || st.Overview.Target != 60 || st.Overview.Completed != 2 {
		t.Errorf("overview %+v", st.Overview)
	}
	if !h.Ready() {
		t.Error("Ready() is false after a client got the state")
	}
	if r, ok := h.RunByID("annotation-1-urgency"); !ok || r.Status.Status != contract.StatusRunning {
		t.Errorf("RunByID = %+v, %v", r, ok)
	}
}

func TestStoredAnnotationReachesConnectedClient(t *testing.T) {
	e := newEnv(t)
	h := e.hub(nil, nil)
	c := dial(t, h.url, true)
	c.until(TypeState, nil)
	e.store.add("1", labels.Urgency, 1, "LEVEL_2")
	ev := c.until(TypeAnnotation, nil)
	a := decode[Annotation](t, ev.Data)
	if a.Seq != 1 || a.Run != "annotation-1-urgency" || a.Annotator != "1" || a.Domain != "urgency" || a.SampleID != "s1" ||
		a.Label != "LEVEL_2" || a.Status != "ok" || a.CreatedAt.IsZero() {
		t.Fatalf("annotation event %s", ev.Data)
	}
	if seq, _ := parseID(ev.ID); seq != 1 {
		t.Fatalf("annotation id %s carries seq %d, want 1", ev.ID, seq)
	}
	// Its run is recounted and pushed, with the annotation's time as its last progress.
	ev = c.until(TypeRun, func(d json.RawMessage) bool {
		r := decode[Run](t, d)
		return r.WorkflowID == "annotation-1-urgency" && r.Completed == 1
	})
	r := decode[Run](t, ev.Data)
	if !r.LastProgress.Equal(a.CreatedAt) || r.SamplesPerMinute <= 0 {
		t.Errorf("run after an annotation: last_progress %v (want %v), samples_per_minute %v", r.LastProgress, a.CreatedAt, r.SamplesPerMinute)
	}
	if ov := h.Overview(); ov.Completed != 1 || ov.SamplesPerMinute <= 0 || ov.ETASeconds <= 0 {
		t.Errorf("overview %+v", ov)
	}
}

func TestChangedRunIsRefreshedAndUnchangedRunIsNotQueried(t *testing.T) {
	e := newEnv(t)
	long := time.Now().Add(-time.Hour)
	e.tc.set("annotation-1-urgency", contract.StatusRunning, long)
	e.tc.set("annotation-1-therapeutic", contract.StatusRunning, long)
	h := e.hub(nil, nil)
	c := dial(t, h.url, true)
	c.until(TypeState, nil)
	if n, m := e.tc.describeCount("annotation-1-urgency"), e.tc.describeCount("annotation-1-therapeutic"); n != 1 || m != 1 {
		t.Fatalf("initial load described the runs %d and %d times, want once each", n, m)
	}

	e.tc.set("annotation-1-urgency", contract.StatusPaused, time.Now())
	sent := time.Now()
	c.until(TypeRun, func(d json.RawMessage) bool {
		r := decode[Run](t, d)
		return r.WorkflowID == "annotation-1-urgency" && r.Status.Status == contract.StatusPaused
	})
	if took := time.Since(sent); took > time.Second {
		t.Errorf("the change took %s to reach the client, want under 1s", took)
	}
	// Later listings still show the change (overlap) but do not read it again, and never read
	// the unchanged run.
	lists, calls := e.tc.listCount(), h.TemporalCalls()
	for e.tc.listCount() < lists+5 {
		select {
		case <-e.tc.listed:
		case <-time.After(wait):
			t.Fatal("the hub stopped listing changed runs")
		}
	}
	if n := e.tc.describeCount("annotation-1-urgency"); n != 2 {
		t.Errorf("changed run described %d times, want 2 (load, change)", n)
	}
	if n := e.tc.describeCount("annotation-1-therapeutic"); n != 1 {
		t.Errorf("unchanged run described %d times, want only at load", n)
	}
	// While idle, the only Temporal calls are the listings.
	if calls, lists := h.TemporalCalls()-calls, int64(e.tc.listCount()-lists); calls != lists {
		t.Errorf("idle: %d Temporal calls for %d listings", calls, lists)
	}
}

func TestRefreshPushesARunWithoutWaitingForVisibility(t *testing.T) {
	e := newEnv(t)
	e.tc.set("annotation-1-urgency", contract.StatusRunning, time.Now().Add(-time.Hour))
	h := e.hub(func(o *Options) { o.VisibilityPoll = time.Hour }, nil)
	c := dial(t, h.url, true)
	c.until(TypeState, nil)
	// A control changed the run; its record shows nothing yet.
	e.tc.set("annotation-1-urgency", contract.StatusStopped, time.Now().Add(-time.Hour))
	h.Refresh("annotation-1-urgency")
	c.until(TypeRun, func(d json.RawMessage) bool { return decode[Run](t, d).Status.Status == contract.StatusStopped })
	if r, _ := h.RunByID("annotation-1-urgency"); r.Status.Status != contract.StatusStopped {
		t.Errorf("RunByID after the refresh: %s", r.Status.Status)
	}
}

func TestVisibilityFallbackReadsEveryRunPeriodically(t *testing.T) {
	e := newEnv(t)
	e.tc.listErr = serviceerror.NewInvalidArgument("invalid query: column name 'RunChangedAt' is not a valid search attribute")
	e.tc.set("annotation-1-urgency", contract.StatusRunning, time.Now().Add(-time.Hour))
	var logs syncBuffer
	h := e.hub(func(o *Options) {
		o.FallbackRefresh = 30 * time.Millisecond
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	}, nil)
	c := dial(t, h.url, true)
	c.until(TypeState, nil)
	e.tc.set("annotation-1-urgency", contract.StatusWaitingQuota, time.Now().Add(-time.Hour))
	c.until(TypeRun, func(d json.RawMessage) bool { return decode[Run](t, d).Status.Status == contract.StatusWaitingQuota })
	// Every run is read in each round, the unchanged ones too.
	for e.tc.describeCount("annotation-1-redressal") < 4 {
		select {
		case <-e.tc.described:
		case <-time.After(wait):
			t.Fatal("the fallback does not read every run again")
		}
	}
	if n := strings.Count(logs.String(), "refuses the run change query"); n != 1 {
		t.Errorf("the fallback was logged %d times, want once:\n%s", n, logs.String())
	}
	// Once the query is answered, the hub follows the feed again.
	e.tc.mu.Lock()
	e.tc.listErr = nil
	e.tc.mu.Unlock()
	e.tc.set("annotation-1-urgency", contract.StatusPaused, time.Now())
	c.until(TypeRun, func(d json.RawMessage) bool { return decode[Run](t, d).Status.Status == contract.StatusPaused })
	deadline := time.After(wait)
	for !strings.Contains(logs.String(), "answers the run change query again") {
		select {
		case <-e.tc.listed:
		case <-deadline:
			t.Fatal("no log of the feed coming back")
		}
	}
}

func TestSlowClientIsDroppedWhileOthersGetEveryEvent(t *testing.T) {
	e := newEnv(t)
	dropped := make(chan struct{}, 1)
	h := e.hub(func(o *Options) {
		o.ClientBuffer = 16
		o.SlowGrace = 20 * time.Millisecond
	}, func(h *Hub) { h.onSlow = func() { signal(dropped) } })
	slow := dial(t, h.url, false) // never reads
	good := dial(t, h.url, true)
	good.until(TypeState, nil)
	// Large annotations fill the slow client's socket buffers, then its event buffer.
	label := strings.Repeat("x", 64<<10)
	var want []int64
	got := map[int64]bool{}
	receive := func() {
		t.Helper()
		for !got[want[len(want)-1]] {
			ev := good.next()
			if ev.Type == TypeAnnotation {
				a := decode[Annotation](t, ev.Data)
				if got[a.Seq] {
					t.Fatalf("annotation %d delivered twice", a.Seq)
				}
				got[a.Seq] = true
			}
		}
	}
	deadline := time.After(30 * time.Second)
	for done := false; !done; {
		want = append(want, e.store.add("1", labels.Urgency, 8, label)...)
		receive()
		select {
		case <-dropped:
			done = true
		case <-deadline:
			t.Fatalf("the slow client was not dropped after %d annotations", len(want))
		default:
		}
	}
	t.Logf("slow client dropped after %d annotations", len(want))
	// The dropped client's connection ends; the good one keeps receiving.
	slow.startReading()
	select {
	case <-slow.done:
		t.Logf("slow client ended with %v", slow.err)
		if code := websocket.CloseStatus(slow.err); code != StatusTooSlow && code != -1 {
			t.Errorf("slow client closed with %v", slow.err)
		}
	case <-time.After(wait):
		t.Fatal("the slow client's connection was not closed")
	}
	want = append(want, e.store.add("1", labels.Urgency, 8, "short")...)
	receive()
	for _, s := range want {
		if !got[s] {
			t.Errorf("the good client missed annotation %d", s)
		}
	}
}

func TestReconnectWithSinceGetsExactlyTheMissedAnnotations(t *testing.T) {
	e := newEnv(t)
	e.quota.set(contract.QuotaStatus{Pool: "pool-1", RequestsPerMinute: 10})
	h := e.hub(nil, nil)
	c := dial(t, h.url, true)
	c.until(TypeState, nil)
	e.store.add("1", labels.Urgency, 3, "L")
	last := c.until(TypeAnnotation, func(d json.RawMessage) bool { return decode[Annotation](t, d).Seq == 3 }).ID
	c.conn.Close(websocket.StatusNormalClosure, "")

	missed := e.store.add("1", labels.Intensity, 7, "L")
	// Some may still be on their way to the hub's feed when the client resumes.
	r := dial(t, h.url+"?since="+last, true)
	live := e.store.add("1", labels.Adjunct, 2, "L")
	var seqs []int64
	var runsSeen, pools int
	first := r.next()
	if first.Type != TypeAnnotation {
		t.Fatalf("a resuming client got %s first, want the missed annotations", first.Type)
	}
	for ev := first; ; ev = r.next() {
		switch ev.Type {
		case TypeAnnotation:
			seqs = append(seqs, decode[Annotation](t, ev.Data).Seq)
		case TypeRun:
			runsSeen++
		case TypeQuota:
			pools++
		case TypeState:
			t.Fatal("a resuming client that missed little got a state")
		}
		// The replay ends with every pool, after every run.
		if len(seqs) > 0 && seqs[len(seqs)-1] == live[len(live)-1] && pools > 0 {
			break
		}
	}
	if want := append(missed, live...); !slices.Equal(seqs, want) {
		t.Fatalf("resumed client got annotations %v, want exactly %v", seqs, want)
	}
	if runsSeen < 6 || pools != 1 {
		t.Errorf("resumed client got %d run and %d quota events, want every run and pool", runsSeen, pools)
	}
}

func TestReconnectAfterMissingTooMuchGetsAState(t *testing.T) {
	e := newEnv(t)
	h := e.hub(func(o *Options) { o.MaxReplay = 5 }, nil)
	c := dial(t, h.url, true)
	last := c.until(TypeState, nil).ID
	c.conn.Close(websocket.StatusNormalClosure, "")
	e.store.add("1", labels.Urgency, 6, "L")
	r := dial(t, h.url+"?since="+last, true)
	ev := r.next()
	if ev.Type != TypeState {
		t.Fatalf("first event %s, want state", ev.Type)
	}
	if seq, _ := parseID(ev.ID); seq > 6 {
		t.Fatalf("state id %s", ev.ID)
	}
	// Its id is a valid resume point: nothing is replayed twice after it.
	e.store.add("1", labels.Urgency, 1, "L")
	a := decode[Annotation](t, r.until(TypeAnnotation, nil).Data)
	if seq, _ := parseID(ev.ID); a.Seq <= seq {
		t.Fatalf("after a state at seq %d came annotation %d", seq, a.Seq)
	}
}

func TestTwoHubsOverOneStoreDeliverTheSameAnnotations(t *testing.T) {
	e := newEnv(t)
	h1, h2 := e.hub(nil, nil), e.hub(nil, nil)
	c1, c2 := dial(t, h1.url, true), dial(t, h2.url, true)
	c1.until(TypeState, nil)
	c2.until(TypeState, nil)
	e.store.add("1", labels.Urgency, 5, "A")
	e.store.add("1", labels.Modality, 5, "B")
	collect := func(c *wsClient, n int) ([]string, string) {
		var out []string
		var last string
		for len(out) < n {
			ev := c.until(TypeAnnotation, nil)
			out = append(out, string(ev.Data))
			last = ev.ID
		}
		return out, last
	}
	got1, last1 := collect(c1, 10)
	got2, _ := collect(c2, 10)
	if !slices.Equal(got1, got2) {
		t.Fatalf("hubs differ:\n%v\n%v", got1, got2)
	}
	// An id from one process resumes on the other.
	c1.conn.Close(websocket.StatusNormalClosure, "")
	missed := e.store.add("1", labels.Redressal, 3, "C")
	r := dial(t, h2.url+"?since="+last1, true)
	var seqs []int64
	for len(seqs) < 3 {
		seqs = append(seqs, decode[Annotation](t, r.until(TypeAnnotation, nil).Data).Seq)
	}
	if !slices.Equal(seqs, missed) {
		t.Fatalf("resumed on the other hub: %v, want %v", seqs, missed)
	}
}

func TestQuotaIsPushedOnlyWhenItChanges(t *testing.T) {
	e := newEnv(t)
	e.quota.set(contract.QuotaStatus{Pool: "pool-1", RequestsPerMinute: 10})
	h := e.hub(func(o *Options) { o.QuotaPoll = 10 * time.Millisecond }, nil)
	c := dial(t, h.url, true)
	c.until(TypeState, nil)
	e.quota.set(contract.QuotaStatus{Pool: "pool-1", RequestsPerMinute: 10, CallsThisMinute: 4})
	ev := c.until(TypeQuota, nil)
	if q := decode[QuotaView](t, ev.Data); q.CallsThisMinute != 4 || !q.Started {
		t.Fatalf("quota event %s", ev.Data)
	}
	// Reads whose only difference is the passing "free now" slot push nothing.
	for n := e.quota.count(); e.quota.count() < n+5; {
		select {
		case <-e.quota.called:
		case <-time.After(wait):
			t.Fatal("the pools are not polled while a client is connected")
		}
	}
	e.quota.set(contract.QuotaStatus{Pool: "pool-1", RequestsPerMinute: 10, CallsThisMinute: 5})
	if q := decode[QuotaView](t, c.until(TypeQuota, nil).Data); q.CallsThisMinute != 5 {
		t.Fatalf("the quota event after the unchanged reads is %+v, want the next change", q)
	}
	if q := h.Quota(); len(q) != 1 || q[0].CallsThisMinute != 5 {
		t.Errorf("Quota() = %+v", q)
	}
}

func TestConfigChangesReachClients(t *testing.T) {
	e := newEnv(t)
	h := e.hub(nil, nil)
	c := dial(t, h.url, true)
	c.until(TypeState, nil)
	cfg := testConfig("1", "2")
	a := cfg.Annotators[0]
	a.Domains[labels.Urgency] = config.DomainSettings{Enabled: false, TargetCount: 40}
	e.cfg.Store(cfg)
	c.until(TypeRun, func(d json.RawMessage) bool {
		r := decode[Run](t, d)
		return r.WorkflowID == "annotation-1-urgency" && !r.Enabled && r.Target == 40
	})
	c.until(TypeRun, func(d json.RawMessage) bool {
		r := decode[Run](t, d)
		return r.WorkflowID == "annotation-2-redressal" && r.Status.Status == runs.StatusNotStarted
	})
	if n := len(h.Runs()); n != 12 {
		t.Errorf("%d runs after adding an annotator, want 12", n)
	}
}

func TestStoppingTheHubClosesClientsCleanly(t *testing.T) {
	e := newEnv(t)
	h := e.hub(nil, nil)
	c := dial(t, h.url, true)
	c.until(TypeState, nil)
	h.stop()
	select {
	case <-c.done:
		if code := websocket.CloseStatus(c.err); code != websocket.StatusGoingAway {
			t.Fatalf("closed with %v, want going away", c.err)
		}
	case <-time.After(wait):
		t.Fatal("the client was not closed")
	}
}

func TestClientWaitsForTheInitialState(t *testing.T) {
	e := newEnv(t)
	calls := make(chan struct{})
	release := make(chan struct{})
	var first sync.Once
	h := e.hub(func(o *Options) {
		o.Config = func() (*config.Config, error) {
			first.Do(func() {
				calls <- struct{}{}
				<-release
			})
			return e.cfg.Load(), nil
		}
	}, nil)
	<-calls // the initial load is blocked
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	if h.Ready() {
		t.Fatal("ready before the initial state was loaded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	connected := make(chan *websocket.Conn, 1)
	go func() {
		conn, _, err := websocket.Dial(ctx, h.url, nil)
		if err != nil {
			t.Error(err)
		}
		connected <- conn
	}()
	close(release)
	released = true
	conn := <-connected
	if conn == nil {
		return
	}
	defer conn.CloseNow()
	_, data, err := conn.Read(ctx)
	if err != nil || decode[Event](t, bytes.SplitN(data, []byte("\n"), 2)[0]).Type != TypeState {
		t.Fatalf("first message %s, %v", data, err)
	}
}

func TestRunFailsWithoutItsDependencies(t *testing.T) {
	if err := New(Options{}).Run(context.Background()); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("Run without store and Temporal: %v", err)
	}
}

func TestThousandIdleRunsCostOnlyTheListings(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for i := range 167 {
		ids = append(ids, strconv.Itoa(i+1))
	}
	cfg := testConfig(ids...)
	e.cfg.Store(cfg)
	long := time.Now().Add(-time.Hour)
	for _, a := range cfg.Annotators {
		for _, d := range labels.Domains {
			e.tc.set(contract.RunID(a.ID, d), contract.StatusRunning, long)
		}
	}
	h := e.hub(nil, nil)
	c := dial(t, h.url, true)
	if st := decode[State](t, c.until(TypeState, nil).Data); len(st.Runs) != 1002 || st.Overview.ByStatus[contract.StatusRunning] != 1002 {
		t.Fatalf("state of %d runs, by status %v", len(st.Runs), st.Overview.ByStatus)
	}
	// The connected client watches the 167 pools too: their one read after the load is not
	// the runs' cost, whenever it falls.
	calls, lists, quota := h.TemporalCalls(), e.tc.listCount(), e.quota.count()
	for e.tc.listCount() < lists+10 {
		select {
		case <-e.tc.listed:
		case <-time.After(wait):
			t.Fatal("the hub stopped listing changed runs")
		}
	}
	runCalls := h.TemporalCalls() - calls - int64(e.quota.count()-quota)
	if lists := int64(e.tc.listCount() - lists); runCalls != lists {
		t.Errorf("1002 idle runs: %d Temporal calls for the runs during %d listings, want only the listings", runCalls, lists)
	}
}

// The store's own interface is what the hub reads.
var _ Store = store.Store(nil)

func TestAnnotationsReachClientsWellUnder100ms(t *testing.T) {
	e := newEnv(t)
	h := e.hub(func(o *Options) { o.StorePoll = 0 }, nil) // the default poll
	c := dial(t, h.url, true)
	c.until(TypeState, nil)
	var lat []time.Duration
	for range 40 {
		time.Sleep(rand.N(50 * time.Millisecond)) // stores fall anywhere between two polls
		seq := e.store.add("1", labels.Urgency, 1, "L")[0]
		start := time.Now()
		c.until(TypeAnnotation, func(d json.RawMessage) bool { return decode[Annotation](t, d).Seq == seq })
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	p95 := lat[len(lat)*95/100]
	t.Logf("store to client: median %s, p95 %s", lat[len(lat)/2], p95)
	if p95 > 100*time.Millisecond {
		t.Errorf("p95 latency %s, want well under 100ms", p95)
	}
}

func TestSQLiteChangeFeedReachesClients(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir()+"/feed.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ImportSamples(ctx, []store.Sample{{ID: "a", Text: "x"}, {ID: "b", Text: "y"}}); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	h := e.hub(func(o *Options) { o.Store = st }, nil)
	c := dial(t, h.url, true)
	c.until(TypeState, nil)
	put := func(id, status string) Annotation {
		t.Helper()
		if err := st.UpsertAnnotation(ctx, store.Annotation{Annotator: "1", Domain: "urgency", SampleID: id, Label: "LEVEL_1", Status: status}); err != nil {
			t.Fatal(err)
		}
		return decode[Annotation](t, c.until(TypeAnnotation, func(d json.RawMessage) bool { return decode[Annotation](t, d).SampleID == id }).Data)
	}
	first := put("a", store.StatusError)
	put("b", store.StatusOK)
	again := put("a", store.StatusOK) // a replaced annotation shows again, under a new seq
	if again.Seq <= first.Seq || again.Status != store.StatusOK {
		t.Fatalf("replaced annotation: %+v after %+v", again, first)
	}
	c.until(TypeRun, func(d json.RawMessage) bool {
		r := decode[Run](t, d)
		return r.WorkflowID == "annotation-1-urgency" && r.Completed == 2 && r.OK == 2 && r.Errors == 0
	})
}

func TestResumingFromAnotherDatabaseGetsAState(t *testing.T) {
	e := newEnv(t)
	h := e.hub(nil, nil)
	c := dial(t, h.url+"?since="+encodeID(5000, 1), true)
	if ev := c.next(); ev.Type != TypeState {
		t.Fatalf("an id beyond the store resumed with %s, want a state", ev.Type)
	}
	e.store.add("1", labels.Urgency, 1, "L")
	if a := decode[Annotation](t, c.until(TypeAnnotation, nil).Data); a.Seq != 1 {
		t.Fatalf("annotation %d, want 1", a.Seq)
	}
}
