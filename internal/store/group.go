package store

import (
	"context"
	"errors"
	"sync"
	"time"
)

// committer makes concurrent annotation writes share transactions (group commit). A writer
// hands its row to the store's committer and waits for the commit of the transaction that
// holds it; while one transaction commits, the next writers' rows queue, and the next
// transaction takes them all. A busy worker's lanes used to queue for the single write
// connection (SQLite) or the seq counter's row lock (PostgreSQL) one commit at a time, and
// the wait was the largest part of a sample's time with a fast provider.
//
// A writer still returns only once its row is committed, so nothing acknowledged is lost at a
// crash. A group is written all or nothing; when it fails, each of its rows is written alone,
// so a bad row fails alone, with its own error.
type committer struct {
	// all writes rows in one transaction, all or none; one writes a single row, with the
	// error that row deserves.
	all func(ctx context.Context, rows []*pendingWrite) error
	one func(ctx context.Context, w *pendingWrite) error

	writes chan *pendingWrite
	quit   chan struct{}
	start  sync.Once
	wg     sync.WaitGroup
	// mu orders writes' hand-overs before close: a row handed over is always written.
	mu     sync.RWMutex
	closed bool
}

// maxGroup bounds the rows of one transaction, so a long queue is committed in steps and its
// first writers need not wait for the last.
const maxGroup = 256

// errStoreClosed answers writes that reach a closed store.
var errStoreClosed = errors.New("store: closed")

// pendingWrite is one writer's row and, once written, its outcome.
type pendingWrite struct {
	ctx    context.Context
	a      Annotation
	now    time.Time
	halt   *haltCheck // a batch whose halt record the write's transaction reads, if set
	halted bool
	err    error
	done   chan struct{}
}

// haltCheck names a batch, for BatchHalted.
type haltCheck struct{ workflowID, key string }

func newCommitter(all func(context.Context, []*pendingWrite) error, one func(context.Context, *pendingWrite) error) *committer {
	return &committer{all: all, one: one, writes: make(chan *pendingWrite, maxGroup), quit: make(chan struct{})}
}

// write stores a, as checked by the caller, and returns once it is committed or has failed,
// with, when halt is set, whether that batch's halt record was there in the write's
// transaction. A writer whose ctx ends first gets ctx's error, and its row may still be
// committed, as a commit whose reply is lost would be.
func (c *committer) write(ctx context.Context, a Annotation, now time.Time, halt *haltCheck) (bool, error) {
	w := &pendingWrite{ctx: ctx, a: a, now: now, halt: halt, done: make(chan struct{})}
	if err := c.handOver(w); err != nil {
		return false, err
	}
	select {
	case <-w.done:
		return w.halted, w.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func (c *committer) handOver(w *pendingWrite) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return errStoreClosed
	}
	c.start.Do(func() {
		c.wg.Add(1)
		go c.run()
	})
	select {
	case c.writes <- w:
		return nil
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}

// close stops the committer once the rows handed to it are written; later writes fail.
func (c *committer) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.quit)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *committer) run() {
	defer c.wg.Done()
	for {
		var rows []*pendingWrite
		select {
		case w := <-c.writes:
			rows = append(rows, w)
		case <-c.quit:
			// Rows queued before the store closed are still written: their writers wait.
			for {
				select {
				case w := <-c.writes:
					c.commit([]*pendingWrite{w})
				default:
					return
				}
			}
		}
	more:
		for len(rows) < maxGroup {
			select {
			case w := <-c.writes:
				rows = append(rows, w)
			default:
				break more
			}
		}
		c.commit(rows)
	}
}

// commit writes rows, a group in one transaction, each alone if the group fails, and answers
// their writers. Rows whose writers gave up are left out.
func (c *committer) commit(rows []*pendingWrite) {
	live := rows[:0:0]
	for _, w := range rows {
		if err := w.ctx.Err(); err != nil {
			w.err = err
			close(w.done)
			continue
		}
		live = append(live, w)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := groupContext(live)
	defer cancel()
	if len(live) == 1 || c.all(ctx, live) != nil {
		for _, w := range live {
			w.err = c.one(ctx, w)
		}
	}
	for _, w := range live {
		close(w.done)
	}
}

// groupContext is the context a group is written under: it carries no writer's cancellation
// (the others still want their rows), and ends at the latest of the writers' deadlines, if
// each has one.
func groupContext(rows []*pendingWrite) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, w := range rows {
		d, ok := w.ctx.Deadline()
		if !ok {
			return context.WithCancel(context.Background())
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.Background(), latest)
}
