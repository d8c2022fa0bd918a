package providertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/fake"
)

// BatchTurnaround is how long the batches of StartBatchFake take.
const BatchTurnaround = 200 * time.Millisecond

// StartBatchFake starts a fake server that accepts key (unless opts name the keys) and runs
// batches over BatchTurnaround (unless opts set one), closed when the test ends.
func StartBatchFake(t *testing.T, key string, opts fake.Options) *fake.Server {
	t.Helper()
	if opts.Keys == nil {
		opts.Keys = map[string]fake.Key{key: {}}
	}
	if opts.BatchTurnaround == 0 {
		opts.BatchTurnaround = BatchTurnaround
	}
	srv, err := fake.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// BatchSamples are n keyed requests whose prompts differ, each naming its key so that a fault
// can pick it out.
func BatchSamples(n int) []llm.BatchRequest {
	reqs := make([]llm.BatchRequest, n)
	for i := range reqs {
		key := fmt.Sprintf("sample-%02d", i+1)
		reqs[i] = llm.BatchRequest{Key: key, Request: llm.Request{
			Prompt: "Classify the urgency of this text and end with <<LEVEL_N>>.\nText (" + key + "): I can't sleep and I feel hopeless.",
		}}
	}
	return reqs
}

// WaitFinal polls batch id until it ends, and returns the states it went through, without
// repeats.
func WaitFinal(t *testing.T, c llm.Batcher, id string) (llm.Batch, []llm.BatchState) {
	t.Helper()
	var seen []llm.BatchState
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := c.GetBatch(context.Background(), id)
		if err != nil {
			t.Fatalf("GetBatch(%s): %v", id, err)
		}
		if len(seen) == 0 || seen[len(seen)-1] != b.State {
			seen = append(seen, b.State)
		}
		if b.State.Final() {
			return b, seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s still %s after 10s (states %v)", id, b.State, seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ByKey indexes results, failing on a key that comes twice.
func ByKey(t *testing.T, results []llm.BatchResult) map[string]llm.BatchResult {
	t.Helper()
	m := map[string]llm.BatchResult{}
	for _, r := range results {
		if _, dup := m[r.Key]; dup {
			t.Fatalf("key %s has two results", r.Key)
		}
		m[r.Key] = r
	}
	return m
}

// Clock is a settable fake.Options.Now.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock is a Clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock on by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
