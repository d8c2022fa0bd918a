package events

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/mhannotator/mha/internal/contract"
)

// quotaActive reports whether someone watches the pools: a connected client, or a REST read
// within QuotaIdle. Nobody watching, the pools cost nothing.
func (h *Hub) quotaActive() bool {
	h.mu.Lock()
	n := len(h.clients)
	h.mu.Unlock()
	return n > 0 || time.Since(time.Unix(0, h.quotaReadAt.Load())) < h.o.QuotaIdle
}

// quotaLoop reads every pool's state every QuotaPoll while someone watches, and at once when
// a reader or a config change asks.
func (h *Hub) quotaLoop(ctx context.Context) {
	t := time.NewTicker(h.o.QuotaPoll)
	defer t.Stop()
	for {
		force := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.qwake:
			force = true
		}
		if !force && !h.quotaActive() {
			continue
		}
		h.mu.Lock()
		pools := append([]string(nil), h.pools...)
		h.mu.Unlock()
		h.readPools(ctx, pools)
	}
}

// readPools reads the pools at once (a pool without a worker takes a query timeout) and
// pushes those whose state changed.
func (h *Hub) readPools(ctx context.Context, pools []string) {
	type result struct {
		st  contract.QuotaStatus
		ok  bool
		err error
	}
	res := make([]result, len(pools))
	var wg sync.WaitGroup
	for i, p := range pools {
		wg.Go(func() {
			qctx, cancel := context.WithTimeout(ctx, statusTimeout)
			defer cancel()
			res[i].st, res[i].ok, res[i].err = h.quota(qctx, p)
		})
	}
	wg.Wait()
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, p := range pools {
		if r := res[i]; r.err != nil {
			if ctx.Err() == nil && h.warn.allow("quota "+p) {
				h.log.Warn("Reading a quota pool's state failed; retrying", "pool", p, "error", r.err)
			}
			continue
		}
		v := QuotaView{QuotaStatus: res[i].st, Started: res[i].ok}
		if v.Pool == "" {
			v.Pool = p
		}
		key := quotaKey(v, now)
		if ps, ok := h.pool[p]; ok && bytes.Equal(ps.key, key) {
			continue
		}
		h.pool[p] = &poolState{view: v, key: key}
		if data, err := json.Marshal(v); err == nil {
			h.broadcastLocked(event{typ: TypeQuota, seq: h.seq, data: data})
		}
	}
	h.qpolled = now
	close(h.qround)
	h.qround = make(chan struct{})
}

// quotaKey is v without what moves with the clock alone: a next free slot already passed
// means "free now", however long ago it was.
func quotaKey(v QuotaView, now time.Time) []byte {
	if !v.NextFreeSlot.After(now) {
		v.NextFreeSlot = time.Time{}
	}
	b, _ := json.Marshal(v)
	return b
}
