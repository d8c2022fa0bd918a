// Package events is the api's live view of the platform: it follows the store's change feed
// and the runs' status changes (through Temporal visibility), keeps every run's status
// document and every quota pool's state, and pushes the changes to WebSocket clients. The
// REST handlers serve its snapshot, so a read costs no Temporal call.
//
// It keeps nothing another api process would not rebuild: event ids carry the store sequence
// number delivered so far, so a client resumes on any process.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uber-go/tally/v4"
	"go.temporal.io/sdk/client"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// Store is what the hub reads from the store.
type Store interface {
	Changes(ctx context.Context, after int64, limit int) ([]store.Change, error)
	LastSeq(ctx context.Context) (int64, error)
	CountAnnotations(ctx context.Context, annotator, domain string, limit int) (contract.Counts, error)
	CountSamples(ctx context.Context) (int, error)
}

// Options configure a Hub. Zero durations take the defaults named beside them.
type Options struct {
	Store    Store
	Temporal client.Client
	// Config returns the current config; it is called again every ConfigPoll, so enabled
	// flags, targets and new runs show up while the api runs.
	Config func() (*config.Config, error)
	// Quota reads a pool's state (runs.QuotaClient.State); nil reads it through Temporal.
	Quota     func(ctx context.Context, pool string) (contract.QuotaStatus, bool, error)
	Namespace string
	TaskQueue string // of the runs; only handed to runs.Controller
	// WebUIBase is the Temporal Web UI's address (http://127.0.0.1:8233), for the runs' links;
	// empty: no links.
	WebUIBase string
	// OriginPatterns are the origins allowed to open the WebSocket besides the api's own
	// (see websocket.AcceptOptions).
	OriginPatterns []string
	Logger         *slog.Logger
	// Scope counts the hub's Temporal calls by operation and holds the run gauges (gauges.go);
	// nil counts the calls only in TemporalCalls.
	Scope tally.Scope

	StorePoll         time.Duration // 25 ms: the store's change feed
	VisibilityPoll    time.Duration // 500 ms: the runs that changed, from Temporal visibility
	VisibilityOverlap time.Duration // 10 s: how far back each visibility listing reaches again
	FallbackRefresh   time.Duration // 10 s: every run's status, without RunChangedAt
	ConfigPoll        time.Duration // 3 s
	CountInterval     time.Duration // 1 s: recounts and rates of the runs that stored something
	QuotaPoll         time.Duration // 1 s, while clients are connected
	QuotaIdle         time.Duration // 30 s: pools keep being polled this long after a REST read
	PingInterval      time.Duration // 15 s
	WriteTimeout      time.Duration // 10 s: one message to one client
	SlowGrace         time.Duration // 1 s: a too slow client's write in flight gets this long
	ClientBuffer      int           // 1024 events per client
	MaxReplay         int           // 5000 annotations; a client that missed more gets a state
	Parallelism       int           // 8 status reads at once
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.StorePoll, 25*time.Millisecond)
	def(&o.VisibilityPoll, 500*time.Millisecond)
	def(&o.VisibilityOverlap, 10*time.Second)
	def(&o.FallbackRefresh, 10*time.Second)
	def(&o.ConfigPoll, 3*time.Second)
	def(&o.CountInterval, time.Second)
	def(&o.QuotaPoll, time.Second)
	def(&o.QuotaIdle, 30*time.Second)
	def(&o.PingInterval, 15*time.Second)
	def(&o.WriteTimeout, 10*time.Second)
	def(&o.SlowGrace, time.Second)
	if o.ClientBuffer <= 0 {
		o.ClientBuffer = 1024
	}
	if o.MaxReplay <= 0 {
		o.MaxReplay = 5000
	}
	if o.Parallelism <= 0 {
		o.Parallelism = 8
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Scope == nil {
		o.Scope = tally.NoopScope
	}
}

// Run is a run as the api shows it: its status document plus what the api adds.
type Run struct {
	contract.Status
	Enabled bool `json:"enabled"`
	// LastProgress is when its newest annotation was stored.
	LastProgress time.Time `json:"last_progress,omitzero"`
	WebUI        string    `json:"web_ui,omitempty"`
}

// QuotaView is a pool's state; Started is false while its workflow has not started.
type QuotaView struct {
	contract.QuotaStatus
	Started bool `json:"started"`
}

// Overview sums up the runs.
type Overview struct {
	Runs      int            `json:"runs"`
	ByStatus  map[string]int `json:"by_status"`
	Completed int            `json:"completed"`
	// Target sums the targets (within the dataset) of the runs that are enabled or have a
	// workflow.
	Target           int     `json:"target"`
	SamplesPerMinute float64 `json:"samples_per_minute"`
	ETASeconds       int     `json:"eta_seconds,omitempty"` // absent when nothing progresses
	LastEventID      string  `json:"last_event_id"`
}

// Event types.
const (
	TypeState      = "state"
	TypeAnnotation = "annotation"
	TypeRun        = "run"
	TypeQuota      = "quota"
)

// Event is one WebSocket message.
type Event struct {
	ID   string          `json:"id"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// State is the data of a state event.
type State struct {
	Runs     []Run       `json:"runs"`
	Quota    []QuotaView `json:"quota"`
	Overview Overview    `json:"overview"`
}

// Annotation is the data of an annotation event.
type Annotation struct {
	Seq       int64     `json:"seq"`
	Run       string    `json:"run"`
	Annotator string    `json:"annotator"`
	Domain    string    `json:"domain"`
	SampleID  string    `json:"sample_id"`
	Label     string    `json:"label"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

// statusUnknown is a run whose status could not be read yet.
const statusUnknown = "unknown"

// Hub keeps the live state and its subscribers. Build it with New and start it with Run.
type Hub struct {
	o     Options
	log   *slog.Logger
	tc    client.Client // counts its calls; nil without Temporal
	calls atomic.Int64
	warn  logEvery
	quota func(ctx context.Context, pool string) (contract.QuotaStatus, bool, error)

	ready chan struct{} // closed once the initial state is loaded
	done  chan struct{} // closed when Run's context ends
	wake  chan struct{} // a status refresh was asked for
	qwake chan struct{} // a quota read was asked for
	ctr   atomic.Uint64 // per-process event counter, the second part of event ids
	// quotaReadAt is when a REST read last asked for the pools (unix ns).
	quotaReadAt atomic.Int64
	clientsWG   sync.WaitGroup
	onSlow      func() // tests: called when a client is dropped for being slow

	mu          sync.Mutex // guards the fields below; events are broadcast under it
	cfg         *config.Config
	order       []string // run ids in config order
	runs        map[string]*runState
	pools       []string
	pool        map[string]*poolState
	qround      chan struct{} // closed and replaced after each quota round
	qpolled     time.Time
	datasetSize int
	seq         int64 // the highest store seq broadcast
	started     time.Time
	clients     map[*subscriber]struct{}
	closed      bool
	pending     map[string]bool // runs to refresh
	inflight    map[string]bool // runs being refreshed
}

type runState struct {
	pair         runs.Pair
	doc          contract.Status
	loaded       bool // doc came from a status read
	stale        bool // the last status read failed; retried every FallbackRefresh
	enabled      bool
	lastProgress time.Time
	storeCounts  bool        // doc's counts are the store's, recounted by the hub
	dirty        bool        // annotations stored since the last recount
	window       []time.Time // when its annotations of the last minute arrived
	rateKnown    bool        // the hub saw annotations of it, so it knows its rate
	sent         []byte      // data of its last run event, to push changes only
}

type poolState struct {
	view QuotaView
	key  []byte // view without the fields that move with the clock alone
}

// New returns a hub; nothing runs until Run.
func New(o Options) *Hub {
	o.defaults()
	h := &Hub{o: o, log: o.Logger.With("component", "events"), ready: make(chan struct{}), done: make(chan struct{}),
		wake: make(chan struct{}, 1), qwake: make(chan struct{}, 1), qround: make(chan struct{}),
		runs: map[string]*runState{}, pool: map[string]*poolState{}, clients: map[*subscriber]struct{}{},
		pending: map[string]bool{}, inflight: map[string]bool{}}
	if o.Temporal != nil {
		h.tc = countingClient{Client: o.Temporal, count: h.countCall}
	}
	switch {
	case o.Quota != nil:
		h.quota = func(ctx context.Context, pool string) (contract.QuotaStatus, bool, error) {
			h.countCall("quota")
			return o.Quota(ctx, pool)
		}
	case h.tc != nil:
		qc := &runs.QuotaClient{Client: h.tc}
		h.quota = qc.State
	}
	return h
}

// countCall counts one Temporal call, in all and on /metrics by operation.
func (h *Hub) countCall(operation string) {
	h.calls.Add(1)
	h.o.Scope.Tagged(map[string]string{"operation": operation}).Counter("api_events_temporal_calls_total").Inc(1)
}

// TemporalCalls is how many Temporal calls the hub has made.
func (h *Hub) TemporalCalls() int64 { return h.calls.Load() }

// Ready reports whether the initial state is loaded.
func (h *Hub) Ready() bool {
	select {
	case <-h.ready:
		return true
	default:
		return false
	}
}

// Run loads the initial state, then follows the store and Temporal until ctx ends, when it
// closes every client (waiting for their close handshakes) and returns nil.
func (h *Hub) Run(ctx context.Context) error {
	if h.o.Store == nil || h.o.Config == nil || h.tc == nil {
		return errors.New("events: Store, Temporal and Config are required")
	}
	defer func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		close(h.done)
		h.clientsWG.Wait()
	}()
	start := time.Now()
	if err := h.load(ctx); err != nil {
		return nil // ctx ended while loading
	}
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){h.tailLoop, h.refreshLoop, h.configLoop, h.countLoop, h.quotaLoop, h.gaugeLoop} {
		wg.Go(func() { loop(ctx) })
	}
	wg.Go(func() { h.visibilityLoop(ctx, start.Add(-h.o.VisibilityOverlap)) })
	wg.Wait()
	return nil
}

// load reads the initial state, retrying what fails until ctx ends.
func (h *Hub) load(ctx context.Context) error {
	retry := func(what string, f func() error) error {
		for {
			err := f()
			if err == nil || ctx.Err() != nil {
				return ctx.Err()
			}
			h.log.Warn("Loading the initial state: "+what+" failed, retrying", "error", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
	var cfg *config.Config
	if err := retry("config", func() (err error) { cfg, err = h.o.Config(); return err }); err != nil {
		return err
	}
	// The feed starts here: every annotation stored from now on is pushed.
	var seq int64
	if err := retry("store", func() (err error) { seq, err = h.o.Store.LastSeq(ctx); return err }); err != nil {
		return err
	}
	var size int
	if err := retry("store", func() (err error) { size, err = h.o.Store.CountSamples(ctx); return err }); err != nil {
		return err
	}
	h.mu.Lock()
	h.seq, h.datasetSize, h.started = seq, size, time.Now()
	ids := h.applyConfigLocked(cfg)
	pools := slices.Clone(h.pools)
	h.mu.Unlock()
	h.readStatuses(ctx, ids)
	h.readPools(ctx, pools)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	h.mu.Lock()
	for _, id := range ids {
		delete(h.pending, id) // the refreshes queued by applyConfigLocked are done
	}
	h.mu.Unlock()
	close(h.ready)
	h.log.Info("Live state loaded", "runs", len(ids), "pools", len(pools), "seq", seq)
	return nil
}

// Runs returns every configured run, in config order.
func (h *Hub) Runs() []Run {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.runsLocked()
}

func (h *Hub) runsLocked() []Run {
	out := make([]Run, 0, len(h.order))
	for _, id := range h.order {
		out = append(out, h.view(h.runs[id]))
	}
	return out
}

// RunByID returns one run by workflow id (annotation-1-urgency).
func (h *Hub) RunByID(id string) (Run, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.runs[id]
	if !ok {
		return Run{}, false
	}
	return h.view(r), true
}

// Quota returns every pool's state. A read keeps the pools polled for QuotaIdle; when they
// were not polled lately it waits (briefly) for a fresh read.
func (h *Hub) Quota() []QuotaView {
	h.quotaReadAt.Store(time.Now().UnixNano())
	h.mu.Lock()
	fresh := time.Since(h.qpolled) < 2*h.o.QuotaPoll
	round := h.qround
	h.mu.Unlock()
	if !fresh && h.Ready() {
		signal(h.qwake)
		select {
		case <-round:
		case <-h.done:
		case <-time.After(3 * time.Second):
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.quotaLocked()
}

func (h *Hub) quotaLocked() []QuotaView {
	out := make([]QuotaView, 0, len(h.pools))
	for _, p := range h.pools {
		if ps, ok := h.pool[p]; ok {
			out = append(out, ps.view)
		} else {
			out = append(out, QuotaView{QuotaStatus: contract.QuotaStatus{Pool: p}})
		}
	}
	return out
}

// Overview sums up the runs.
func (h *Hub) Overview() Overview {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.overviewLocked()
}

func (h *Hub) overviewLocked() Overview {
	ov := Overview{ByStatus: map[string]int{}, LastEventID: encodeID(h.seq, h.ctr.Load())}
	for _, id := range h.order {
		r := h.runs[id]
		ov.Runs++
		ov.ByStatus[r.doc.Status]++
		if !r.enabled && r.doc.Status == runs.StatusNotStarted {
			continue
		}
		target := r.doc.Target
		if r.doc.DatasetSize > 0 {
			target = min(target, r.doc.DatasetSize)
		}
		ov.Target += target
		ov.Completed += min(r.doc.Completed, target)
		ov.SamplesPerMinute += r.doc.SamplesPerMinute
	}
	ov.SamplesPerMinute = round1(ov.SamplesPerMinute)
	if left := ov.Target - ov.Completed; ov.SamplesPerMinute > 0 && left > 0 {
		ov.ETASeconds = int(float64(left) / ov.SamplesPerMinute * 60)
	}
	return ov
}

// Refresh reads the status of the runs named (every run when none is) again and pushes what
// changed; the control handlers call it so a control shows without waiting for visibility.
func (h *Hub) Refresh(ids ...string) {
	h.mu.Lock()
	if len(ids) == 0 {
		ids = h.order
	}
	for _, id := range ids {
		if _, ok := h.runs[id]; ok {
			h.pending[id] = true
		}
	}
	h.mu.Unlock()
	signal(h.wake)
}

// view is r as clients see it.
func (h *Hub) view(r *runState) Run {
	v := Run{Status: r.doc, Enabled: r.enabled, LastProgress: r.lastProgress}
	if h.o.WebUIBase != "" && r.doc.Status != runs.StatusNotStarted {
		ns := h.o.Namespace
		if ns == "" {
			ns = "default" // the client's default
		}
		v.WebUI = fmt.Sprintf("%s/namespaces/%s/workflows/%s", strings.TrimSuffix(h.o.WebUIBase, "/"), ns, r.pair.ID())
	}
	return v
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

// every runs f every d until ctx ends, and also when wake (which may be nil) fires.
func every(ctx context.Context, d time.Duration, wake <-chan struct{}, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		f()
	}
}

// logEvery logs a failure that repeats at most once a minute per key.
type logEvery struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (l *logEvery) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if time.Since(l.last[key]) < time.Minute {
		return false
	}
	l.last[key] = time.Now()
	return true
}
