package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder is a committer's backend that records the groups it was given; all blocks on
// hold until the test lets it go.
type recorder struct {
	mu      sync.Mutex
	groups  [][]string // sample IDs of each all() call
	ones    []string   // sample IDs written alone
	hold    chan struct{}
	entered chan struct{} // told each time all or one begins, if set
	failAll bool
	failOne string // the sample whose lone write fails
}

func (r *recorder) all(_ context.Context, rows []*pendingWrite) error {
	r.enter()
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, w := range rows {
		ids = append(ids, w.a.SampleID)
	}
	r.groups = append(r.groups, ids)
	if r.failAll {
		return errors.New("group failed")
	}
	return nil
}

func (r *recorder) one(_ context.Context, w *pendingWrite) error {
	r.enter()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ones = append(r.ones, w.a.SampleID)
	if w.a.SampleID == r.failOne {
		return fmt.Errorf("sample %q is not stored", w.a.SampleID)
	}
	return nil
}

func (r *recorder) enter() {
	if r.entered != nil {
		r.entered <- struct{}{}
	}
	<-r.hold
}

// writeAsync starts a write of sample id and returns where its outcome arrives.
func writeAsync(c *committer, ctx context.Context, id string) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := c.write(ctx, Annotation{SampleID: id}, time.Now(), nil)
		ch <- err
	}()
	return ch
}

// waitQueued waits until n rows wait in the committer's queue.
func waitQueued(t *testing.T, c *committer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(c.writes) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d rows queued, want %d", len(c.writes), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRowsQueuedDuringACommitShareTheNextTransaction(t *testing.T) {
	r := &recorder{hold: make(chan struct{}), entered: make(chan struct{}, 10)}
	c := newCommitter(r.all, r.one)
	defer c.close()
	ctx := context.Background()

	first := writeAsync(c, ctx, "s0")
	<-r.entered // s0, alone, is being written: the next rows queue behind it
	var rest []<-chan error
	for i := 1; i <= 5; i++ {
		rest = append(rest, writeAsync(c, ctx, fmt.Sprintf("s%d", i)))
	}
	waitQueued(t, c, 5)
	close(r.hold)
	for _, ch := range append([]<-chan error{first}, rest...) {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"s0"}; !slices.Equal(r.ones, want) {
		t.Errorf("rows written alone = %v, want %v", r.ones, want)
	}
	if len(r.groups) != 1 || len(r.groups[0]) != 5 {
		t.Fatalf("groups = %v, want the five queued rows in one", r.groups)
	}
}

func TestAFailedGroupIsWrittenRowByRowSoOnlyTheBadRowFails(t *testing.T) {
	hold := make(chan struct{})
	close(hold)
	r := &recorder{hold: hold, failAll: true, failOne: "bad"}
	c := newCommitter(r.all, r.one)
	defer c.close()
	rows := []*pendingWrite{}
	for _, id := range []string{"a", "bad", "b"} {
		rows = append(rows, &pendingWrite{ctx: context.Background(), a: Annotation{SampleID: id}, done: make(chan struct{})})
	}
	c.commit(rows)
	for _, w := range rows {
		<-w.done
		if got := w.err != nil; got != (w.a.SampleID == "bad") {
			t.Errorf("%s: error %v", w.a.SampleID, w.err)
		}
	}
	if want := []string{"a", "bad", "b"}; !slices.Equal(r.ones, want) {
		t.Errorf("rows written alone = %v, want %v", r.ones, want)
	}
}

func TestARowWhoseWriterGaveUpIsLeftOut(t *testing.T) {
	hold := make(chan struct{})
	close(hold)
	r := &recorder{hold: hold}
	c := newCommitter(r.all, r.one)
	defer c.close()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	rows := []*pendingWrite{
		{ctx: context.Background(), a: Annotation{SampleID: "kept"}, done: make(chan struct{})},
		{ctx: gone, a: Annotation{SampleID: "gone"}, done: make(chan struct{})},
	}
	c.commit(rows)
	if !errors.Is(rows[1].err, context.Canceled) {
		t.Errorf("the abandoned row's error = %v, want context.Canceled", rows[1].err)
	}
	if want := []string{"kept"}; !slices.Equal(r.ones, want) {
		t.Errorf("rows written = %v, want %v", r.ones, want)
	}
}

func TestCloseWritesWhatWasHandedOverAndRefusesTheRest(t *testing.T) {
	r := &recorder{hold: make(chan struct{}), entered: make(chan struct{}, 10)}
	c := newCommitter(r.all, r.one)
	ctx := context.Background()
	first := writeAsync(c, ctx, "s0")
	<-r.entered
	second := writeAsync(c, ctx, "s1")
	waitQueued(t, c, 1)
	closed := make(chan struct{})
	go func() { c.close(); close(closed) }()
	close(r.hold)
	<-closed
	for _, ch := range []<-chan error{first, second} {
		if err := <-ch; err != nil {
			t.Errorf("a row handed over before close: %v", err)
		}
	}
	if _, err := c.write(ctx, Annotation{SampleID: "late"}, time.Now(), nil); !errors.Is(err, errStoreClosed) {
		t.Errorf("a write after close = %v, want %v", err, errStoreClosed)
	}
	if got := append(slices.Clone(r.ones), slices.Concat(r.groups...)...); len(got) != 2 {
		t.Errorf("rows written = %v, want s0 and s1", got)
	}
}
