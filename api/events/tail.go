package events

import (
	"context"
	"encoding/json"
	"time"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/store"
)

// tailBatch is the most changes one poll reads. It stays below the default client buffer, so
// a burst (catching up after a store hiccup) does not overflow clients that keep up.
const tailBatch = 1000

// tailLoop follows the store's change feed: every StorePoll one indexed query for the
// annotations stored since the last one, from any worker.
func (h *Hub) tailLoop(ctx context.Context) {
	h.mu.Lock()
	after := h.seq
	h.mu.Unlock()
	every(ctx, h.o.StorePoll, nil, func() {
		changes, err := h.o.Store.Changes(ctx, after, tailBatch)
		if err != nil {
			if ctx.Err() == nil && h.warn.allow("changes") {
				h.log.Warn("Reading the store's change feed failed; retrying", "error", err)
			}
			return
		}
		if len(changes) > 0 {
			h.deliver(changes)
			after = changes[len(changes)-1].Seq
		}
	})
}

func annotationData(c store.Change) []byte {
	data, _ := json.Marshal(Annotation{Seq: c.Seq, Run: contract.RunID(c.Annotator, labels.Domain(c.Domain)),
		Annotator: c.Annotator, Domain: c.Domain, SampleID: c.SampleID, Label: c.Label, Status: c.Status,
		CreatedAt: c.CreatedAt.UTC()})
	return data
}

// deliver broadcasts the changes and notes their runs for the next recount.
func (h *Hub) deliver(changes []store.Change) {
	data := make([][]byte, len(changes))
	for i, c := range changes {
		data[i] = annotationData(c)
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, c := range changes {
		h.seq = c.Seq
		h.broadcastLocked(event{typ: TypeAnnotation, seq: c.Seq, annotation: true, data: data[i]})
		if r := h.runs[contract.RunID(c.Annotator, labels.Domain(c.Domain))]; r != nil {
			r.dirty, r.rateKnown = true, true
			r.window = append(r.window, now)
			if c.CreatedAt.After(r.lastProgress) {
				r.lastProgress = c.CreatedAt.UTC()
			}
		}
	}
}
