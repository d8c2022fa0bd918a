package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/runs"
)

// applyConfigLocked adopts cfg: the runs it names (in its order), their enabled flags and
// targets, and its pools. It queues a status read for the runs new to the hub and returns them.
func (h *Hub) applyConfigLocked(cfg *config.Config) []string {
	pairs, _ := (&runs.Controller{Config: cfg}).Select(runs.Selector{All: true})
	var added []string
	order := make([]string, 0, len(pairs))
	keep := make(map[string]bool, len(pairs))
	for _, p := range pairs {
		id := p.ID()
		order = append(order, id)
		keep[id] = true
		var ds config.DomainSettings
		if a, ok := cfg.Annotator(p.Annotator); ok {
			ds = a.Domains[p.Domain]
		}
		r, ok := h.runs[id]
		if !ok {
			r = &runState{pair: p, doc: contract.Status{WorkflowID: id, Annotator: p.Annotator, Domain: string(p.Domain),
				Status: statusUnknown, Target: ds.TargetCount, DatasetSize: h.datasetSize}}
			h.runs[id] = r
			h.pending[id] = true
			added = append(added, id)
		}
		if r.doc.Status == runs.StatusNotStarted && r.doc.Target != ds.TargetCount {
			// A run without a workflow has the config's target; its counts are the store's.
			r.doc.Target, r.dirty = ds.TargetCount, true
		}
		r.enabled = ds.Enabled
		h.emitRunLocked(r)
	}
	for id := range h.runs {
		if !keep[id] {
			delete(h.runs, id)
			delete(h.pending, id)
		}
	}
	pools := runs.Pools(cfg)
	if !slices.Equal(pools, h.pools) {
		signal(h.qwake)
	}
	h.cfg, h.order, h.pools = cfg, order, pools
	return added
}

// emitRunLocked pushes r when its view changed since it was last pushed.
func (h *Hub) emitRunLocked(r *runState) {
	data, err := json.Marshal(h.view(r))
	if err != nil || bytes.Equal(data, r.sent) {
		return
	}
	r.sent = data
	h.broadcastLocked(event{typ: TypeRun, seq: h.seq, data: data})
}

func (h *Hub) controllerLocked() *runs.Controller {
	return &runs.Controller{Client: h.tc, Config: h.cfg, Store: h.o.Store, Namespace: h.o.Namespace, TaskQueue: h.o.TaskQueue}
}

// readStatuses reads the runs' statuses, Parallelism at a time, and waits for them.
func (h *Hub) readStatuses(ctx context.Context, ids []string) {
	h.mu.Lock()
	ctl := h.controllerLocked()
	h.mu.Unlock()
	sem := make(chan struct{}, h.o.Parallelism)
	var wg sync.WaitGroup
	for _, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			h.readStatus(ctx, ctl, id)
		})
	}
	wg.Wait()
}

// statusTimeout bounds one status read: the SDK retries an unavailable server until the
// context ends, and the initial load must not wait forever for one run.
const statusTimeout = 10 * time.Second

// readStatus reads one run's status document and pushes it if it changed.
func (h *Hub) readStatus(ctx context.Context, ctl *runs.Controller, id string) {
	h.mu.Lock()
	r := h.runs[id]
	h.mu.Unlock()
	if r == nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, statusTimeout)
	st, err := ctl.Status(sctx, r.pair)
	cancel()
	if ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.runs[id] != r {
		return // dropped from the config meanwhile
	}
	if err != nil {
		r.stale = true
		if !r.loaded {
			r.doc.LastError = "status unavailable: " + err.Error()
			h.emitRunLocked(r)
		}
		if h.warn.allow("status") {
			h.log.Warn("Reading a run's status failed; retrying later", "run", id, "error", err)
		}
		return
	}
	prev := r.doc
	r.doc, r.loaded, r.stale = st, true, false
	if r.storeCounts {
		// The hub's recount is at most a second old, the run's own counts lag a batch behind;
		// recount anyway, since a redo or delete lowers counts without a change in the feed.
		r.doc.Completed, r.doc.OK, r.doc.Malformed, r.doc.Errors, r.doc.Blocked =
			prev.Completed, prev.OK, prev.Malformed, prev.Errors, prev.Blocked
		r.dirty = true
	}
	if r.rateKnown {
		r.doc.SamplesPerMinute = prev.SamplesPerMinute
	}
	if r.lastProgress.IsZero() {
		r.lastProgress = st.LastHeartbeat
	}
	h.emitRunLocked(r)
}

// refreshLoop reads the statuses Refresh asked for, Parallelism at a time, never two reads
// of one run at once (the older answer could land last).
func (h *Hub) refreshLoop(ctx context.Context) {
	sem := make(chan struct{}, h.o.Parallelism)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		}
		h.mu.Lock()
		var ids []string
		for _, id := range h.order {
			if h.pending[id] && !h.inflight[id] {
				ids = append(ids, id)
				h.inflight[id] = true
				delete(h.pending, id)
			}
		}
		ctl := h.controllerLocked()
		h.mu.Unlock()
		for _, id := range ids {
			wg.Go(func() {
				select {
				case sem <- struct{}{}:
					h.readStatus(ctx, ctl, id)
					<-sem
				case <-ctx.Done():
				}
				h.mu.Lock()
				delete(h.inflight, id)
				again := h.pending[id]
				h.mu.Unlock()
				if again {
					signal(h.wake)
				}
			})
		}
	}
}

// VisibilityQuery lists the runs whose status changed, that started or that closed at or
// after since. SQL visibility keeps a far-future CloseTime for open workflows, so CloseTime
// alone would list every open run.
func VisibilityQuery(since time.Time) string {
	t := since.UTC().Format(time.RFC3339Nano)
	return fmt.Sprintf("WorkflowType = '%s' AND (%s >= '%s' OR StartTime >= '%s' OR (ExecutionStatus != 'Running' AND CloseTime >= '%s'))",
		contract.AnnotationRunName, contract.RunChangedAtKey.GetName(), t, t, t)
}

// listTimeout bounds one visibility listing (the client retries unavailable servers within it).
const listTimeout = 10 * time.Second

func (h *Hub) listChanged(ctx context.Context, since time.Time) ([]*workflowpb.WorkflowExecutionInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	var out []*workflowpb.WorkflowExecutionInfo
	var token []byte
	for {
		resp, err := h.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: h.o.Namespace, PageSize: 1000, NextPageToken: token, Query: VisibilityQuery(since)})
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetExecutions()...)
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}

// recordKey is what of a run's visibility record shows that its status changed.
func recordKey(info *workflowpb.WorkflowExecutionInfo) string {
	f := info.GetSearchAttributes().GetIndexedFields()
	return strings.Join([]string{string(f[contract.RunChangedAtKey.GetName()].GetData()),
		string(f[contract.RunStatusKey.GetName()].GetData()), info.GetStatus().String(),
		strconv.FormatInt(info.GetCloseTime().AsTime().UnixNano(), 10)}, "|")
}

// visibilityLoop is the run-state change feed: every VisibilityPoll it lists the runs that
// changed since the last listing (one call, whatever the number of runs) and reads the status
// of those whose record differs from the one it last saw. Each listing reaches back
// VisibilityOverlap before the previous one, for records that became visible late and for
// clock skew. A namespace without RunChangedAt refuses the query: then every run is read every
// FallbackRefresh, and the query is tried again as often.
func (h *Hub) visibilityLoop(ctx context.Context, cursor time.Time) {
	fallback := false
	var lastFull time.Time
	seen := map[string]string{} // workflow id/run id → record key, of the last listing
	every(ctx, h.o.VisibilityPoll, nil, func() {
		now := time.Now()
		if fallback && now.Sub(lastFull) < h.o.FallbackRefresh {
			return
		}
		infos, err := h.listChanged(ctx, cursor)
		var invalid *serviceerror.InvalidArgument
		switch {
		case errors.As(err, &invalid):
			if !fallback {
				h.log.Warn("Temporal visibility refuses the run change query (is the RunChangedAt search attribute registered?); reading every run's status every "+
					h.o.FallbackRefresh.String()+" instead", "error", err)
				fallback = true
			}
			lastFull = now
			h.Refresh()
			return
		case err != nil:
			if ctx.Err() == nil && h.warn.allow("visibility") {
				h.log.Warn("Listing changed runs failed; retrying", "error", err)
			}
			return
		case fallback:
			h.log.Info("Temporal visibility answers the run change query again; following it")
			fallback = false
			h.Refresh() // whatever changed since the last full read
		}
		cursor = now.Add(-h.o.VisibilityOverlap)
		next := make(map[string]string, len(infos))
		var ids []string
		for _, info := range infos {
			ex := info.GetExecution()
			k, key := ex.GetWorkflowId()+"/"+ex.GetRunId(), recordKey(info)
			next[k] = key
			if seen[k] != key && !slices.Contains(ids, ex.GetWorkflowId()) {
				ids = append(ids, ex.GetWorkflowId())
			}
		}
		seen = next
		if len(ids) > 0 {
			h.Refresh(ids...)
		}
	})
}

// configLoop re-reads the config and the dataset size every ConfigPoll, and retries the
// status reads that failed every FallbackRefresh.
func (h *Hub) configLoop(ctx context.Context) {
	var retried time.Time
	every(ctx, h.o.ConfigPoll, nil, func() {
		cfg, err := h.o.Config()
		if err != nil {
			if h.warn.allow("config") {
				h.log.Warn("Reading the config failed; keeping the previous one", "error", err)
			}
			return
		}
		size, serr := h.o.Store.CountSamples(ctx)
		h.mu.Lock()
		if serr == nil && size != h.datasetSize {
			h.datasetSize = size
			for _, r := range h.runs {
				r.doc.DatasetSize, r.dirty = size, true
			}
		}
		h.applyConfigLocked(cfg)
		if time.Since(retried) >= h.o.FallbackRefresh {
			retried = time.Now()
			for id, r := range h.runs {
				if r.stale {
					h.pending[id] = true
				}
			}
		}
		h.mu.Unlock()
		signal(h.wake)
	})
}

// countLoop recounts, from the store, the runs that stored annotations since the last round,
// and updates the rates; a run's counts thus change at most once per CountInterval.
func (h *Hub) countLoop(ctx context.Context) {
	type job struct {
		r     *runState
		limit int
		c     contract.Counts
		err   error
	}
	every(ctx, h.o.CountInterval, nil, func() {
		var jobs []*job
		h.mu.Lock()
		for _, id := range h.order {
			r := h.runs[id]
			if !r.dirty {
				continue
			}
			r.dirty = false
			limit, size := r.doc.Target, h.datasetSize
			if size <= 0 {
				size = r.doc.DatasetSize
			}
			if size > 0 {
				limit = min(limit, size)
			}
			if limit > 0 {
				jobs = append(jobs, &job{r: r, limit: limit})
			}
		}
		h.mu.Unlock()
		for _, j := range jobs {
			j.c, j.err = h.o.Store.CountAnnotations(ctx, j.r.pair.Annotator, string(j.r.pair.Domain), j.limit)
		}
		now := time.Now()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, j := range jobs {
			if j.err != nil {
				j.r.dirty = true
				if ctx.Err() == nil && h.warn.allow("count") {
					h.log.Warn("Counting a run's annotations failed; retrying", "run", j.r.pair.ID(), "error", j.err)
				}
				continue
			}
			d := &j.r.doc
			d.Completed, d.OK, d.Malformed, d.Errors, d.Blocked = j.c.Total(), j.c.OK, j.c.Malformed, j.c.Error, j.c.Blocked
			j.r.storeCounts = true
		}
		// The rate over the last minute, or over the time the hub has watched if shorter.
		span := min(max(now.Sub(h.started), 10*time.Second), time.Minute)
		for _, id := range h.order {
			r := h.runs[id]
			if !r.rateKnown {
				continue
			}
			i := 0
			for i < len(r.window) && now.Sub(r.window[i]) > time.Minute {
				i++
			}
			r.window = r.window[i:]
			r.doc.SamplesPerMinute = round1(float64(len(r.window)) / span.Minutes())
			h.emitRunLocked(r)
		}
		for _, j := range jobs {
			h.emitRunLocked(j.r)
		}
	})
}
