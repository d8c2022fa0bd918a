package runs

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/contract"
)

// QuotaClient talks to the quota workflows: the annotate activity reserves call slots and
// reports 429s through it, and people read pool state. A pool's workflow starts with its first
// reservation (update-with-start), so nobody starts it by hand.
//
// The server takes only a few Updates in flight per workflow, so a worker's concurrent
// reservations for one pool are coalesced: at most one reserve Update per pool is in flight
// from this client, and the reservations queued meanwhile go into the next one, each as its
// own ask, in arrival order.
type QuotaClient struct {
	Client    client.Client
	TaskQueue string
	// Limits start a pool that does not exist yet when a reservation brings no limits.
	Limits contract.QuotaLimits

	mu    sync.Mutex
	queue map[string][]*ticket // by pool; a pool is in the map while its Update is in flight
}

// ticket is one queued reservation.
type ticket struct {
	ask     contract.Ask
	horizon time.Duration
	limits  contract.QuotaLimits
	done    chan reserved // buffered, so serve never waits for a caller that gave up
}

type reserved struct {
	slots          []time.Time
	exhaustedUntil time.Time
	err            error
}

// maxAsksPerUpdate bounds the asks of one Update (the workflow refuses more than 1000).
const maxAsksPerUpdate = 200

// LimitsFrom reads a pool's limits from the config.
func LimitsFrom(g config.Global) contract.QuotaLimits {
	return contract.QuotaLimits{RequestsPerMinute: g.RequestsPerMinute, RequestsPerDay: g.RequestsPerDay,
		TokensPerMinute: g.TokensPerMinute, DayZone: g.QuotaDayZone, MaxBatches: g.BatchMaxJobs, MaxEnqueuedTokens: g.BatchMaxEnqueuedTokens}
}

// Reserve asks pool for up to ask.Count call slots starting within horizon; see
// contract.ReserveRequest. The slots come in time order and may be fewer than asked. One slot
// beyond horizon is held for ask.Requester: come back for it (ask again) shortly before it,
// and do not use it before. No slot and a non-zero exhaustedUntil: the day's budget is spent
// until then. limits are the caller's config; the pool adopts them (zero: keep the pool's,
// and start a new pool with q.Limits).
//
// Judge "beyond horizon" from the time Reserve was called, not from when it returned: the
// pool judges from when it answered, which lies in between, and a held slot used without
// coming back stays held, so that its requester could be handed it twice.
func (q *QuotaClient) Reserve(ctx context.Context, pool string, ask contract.Ask, horizon time.Duration, limits contract.QuotaLimits) (slots []time.Time, exhaustedUntil time.Time, err error) {
	t := &ticket{ask: ask, horizon: horizon, limits: limits, done: make(chan reserved, 1)}
	q.mu.Lock()
	if q.queue == nil {
		q.queue = map[string][]*ticket{}
	}
	waiting, busy := q.queue[pool]
	q.queue[pool] = append(waiting, t)
	q.mu.Unlock()
	if !busy {
		go q.serve(pool)
	}
	select {
	case r := <-t.done:
		return r.slots, r.exhaustedUntil, r.err
	case <-ctx.Done():
		q.withdraw(pool, t) // the slots of an Update already sent go unused
		return nil, time.Time{}, ctx.Err()
	}
}

// withdraw takes a ticket out of the queue if its Update has not been sent yet.
func (q *QuotaClient) withdraw(pool string, t *ticket) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if waiting, ok := q.queue[pool]; ok {
		q.queue[pool] = slices.DeleteFunc(waiting, func(w *ticket) bool { return w == t })
	}
}

// serve sends the pool's queued tickets, a batch per Update, until the queue is empty. A
// batch is the longest run of tickets at the head of the queue with the same horizon, since
// a request has one.
func (q *QuotaClient) serve(pool string) {
	for {
		q.mu.Lock()
		waiting := q.queue[pool]
		if len(waiting) == 0 {
			delete(q.queue, pool)
			q.mu.Unlock()
			return
		}
		n := 1
		for n < min(len(waiting), maxAsksPerUpdate) && waiting[n].horizon == waiting[0].horizon {
			n++
		}
		batch := slices.Clone(waiting[:n])
		q.queue[pool] = waiting[n:]
		q.mu.Unlock()

		req := contract.ReserveRequest{Horizon: batch[0].horizon}
		for _, t := range batch {
			req.Asks = append(req.Asks, t.ask)
		}
		// The latest config wins: a worker that reloaded its config sends the new limits.
		start := q.Limits
		if l := batch[len(batch)-1].limits; l != (contract.QuotaLimits{}) {
			req.Limits, start = &l, l
		}
		res, err := q.update(pool, req, start)
		if err == nil && len(res.Grants) != len(batch) {
			err = fmt.Errorf("reserve quota of pool %s: %d asks answered with %d grants", pool, len(batch), len(res.Grants))
		}
		for i, t := range batch {
			if err != nil {
				t.done <- reserved{err: err}
				continue
			}
			r := reserved{slots: res.Grants[i]}
			if len(r.slots) < t.ask.Count {
				r.exhaustedUntil = res.ExhaustedUntil
			}
			t.done <- r
		}
	}
}

// reserveTimeout bounds one reserve Update, retries included.
const reserveTimeout = time.Minute

// update sends one reserve Update, starting the pool's workflow with limits if needed. The
// server can refuse or abort an Update while the workflow is busy (its task failed, it is
// continuing as new); those are retried here, so a run's batch does not fail for them. The
// retries keep the Update's ID, so one the server took before the connection failed is
// answered again instead of granting twice.
func (q *QuotaClient) update(pool string, req contract.ReserveRequest, limits contract.QuotaLimits) (contract.Reservation, error) {
	var res contract.Reservation
	err := q.send(context.Background(), pool, contract.UpdateReserve, req, limits, &res)
	return res, err
}

// send sends Update name with arg to pool's workflow (starting it with limits if needed),
// retrying what the server turns away for now under one Update ID, and reads the answer into
// out.
func (q *QuotaClient) send(ctx context.Context, pool, name string, arg any, limits contract.QuotaLimits, out any) error {
	ctx, cancel := context.WithTimeout(ctx, reserveTimeout)
	defer cancel()
	id := name + "-" + rand.Text()
	backoff := 100 * time.Millisecond
	for {
		err := q.updateOnce(ctx, pool, id, name, arg, limits, out)
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// AdmitBatch asks pool to let chunk name of tokens input tokens go to the provider; see
// contract.BatchAdmit.
func (q *QuotaClient) AdmitBatch(ctx context.Context, pool, name string, tokens int, limits contract.QuotaLimits) (contract.BatchAdmission, error) {
	req := contract.BatchAdmit{Name: name, Tokens: tokens}
	start := q.Limits
	if limits != (contract.QuotaLimits{}) {
		req.Limits, start = &limits, limits
	}
	var res contract.BatchAdmission
	err := q.send(ctx, pool, contract.UpdateBatchAdmit, req, start, &res)
	return res, err
}

// ReleaseBatch tells pool that chunk name is final at the provider; releasing it again does
// nothing.
func (q *QuotaClient) ReleaseBatch(ctx context.Context, pool, name string) error {
	var res contract.BatchAdmission
	return q.send(ctx, pool, contract.UpdateBatchRelease, name, q.Limits, &res)
}

func (q *QuotaClient) updateOnce(ctx context.Context, pool, id, name string, arg any, limits contract.QuotaLimits, out any) error {
	op := q.Client.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID:                       contract.QuotaID(pool),
		TaskQueue:                q.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            "request quota of pool " + pool,
	}, contract.QuotaName, contract.QuotaInput{Pool: pool, Limits: limits})
	h, err := q.Client.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: op,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateID:     id,
			UpdateName:   name,
			Args:         []any{arg},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err == nil {
		err = h.Get(ctx, out)
	}
	if err != nil {
		return fmt.Errorf("%s of quota pool %s: %w", name, pool, err)
	}
	return nil
}

// transient reports whether the server turned an Update away for now.
func transient(err error) bool {
	var exhausted *serviceerror.ResourceExhausted
	var unavailable *serviceerror.Unavailable
	var aborted *serviceerror.Aborted
	var multi *serviceerror.MultiOperationExecution
	return errors.As(err, &exhausted) || errors.As(err, &unavailable) || errors.As(err, &aborted) || errors.As(err, &multi)
}

// Penalize reports a provider's 429: the pool grants nothing until until.
func (q *QuotaClient) Penalize(ctx context.Context, pool string, until time.Time, by string) error {
	err := q.Client.SignalWorkflow(ctx, contract.QuotaID(pool), "", contract.SignalPenalize, contract.Penalty{Until: until, By: by})
	if err != nil {
		return fmt.Errorf("penalize pool %s: %w", pool, err)
	}
	return nil
}

// Configure applies limits to a running pool; a pool that does not run yet starts with
// them on its first reservation anyway.
func (q *QuotaClient) Configure(ctx context.Context, pool string, l contract.QuotaLimits) error {
	err := q.Client.SignalWorkflow(ctx, contract.QuotaID(pool), "", contract.SignalConfigure, l)
	var notFound *serviceerror.NotFound
	if err != nil && !errors.As(err, &notFound) {
		return fmt.Errorf("configure pool %s: %w", pool, err)
	}
	return nil
}

// State reads a pool's state; ok is false when the pool has not started yet.
func (q *QuotaClient) State(ctx context.Context, pool string) (st contract.QuotaStatus, ok bool, err error) {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	v, err := q.Client.QueryWorkflow(qctx, contract.QuotaID(pool), "", contract.QueryQuotaState)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return contract.QuotaStatus{Pool: pool}, false, nil
	}
	if err == nil {
		err = v.Get(&st)
	}
	if err != nil {
		return contract.QuotaStatus{}, false, fmt.Errorf("query pool %s: %w", pool, err)
	}
	return st, true, nil
}

// Pools lists the quota pools of the config's annotators that use a network provider.
func Pools(cfg *config.Config) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range cfg.Annotators {
		if a.Provider != config.ProviderOffline && !seen[a.QuotaPool] {
			seen[a.QuotaPool] = true
			out = append(out, a.QuotaPool)
		}
	}
	return out
}
