package events

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"

	"github.com/mhannotator/mha/internal/store"
)

// StatusTooSlow closes the WebSocket of a client that fell ClientBuffer events behind; it
// reconnects with since and resumes.
const StatusTooSlow = websocket.StatusTryAgainLater

// event is one broadcast event, marshalled once for every client.
type event struct {
	typ string
	// seq is the store seq delivered when the event was made; an annotation's own seq.
	seq        int64
	annotation bool
	data       []byte
}

// subscriber is one WebSocket client.
type subscriber struct {
	ch   chan event
	slow chan struct{} // closed when the hub dropped it for falling behind
	// cancelWrites ends a write stuck on a client that does not read.
	cancelWrites context.CancelFunc
}

// broadcastLocked hands ev to every client without ever waiting: a client whose buffer is
// full is dropped, so one slow client never slows the hub or the others.
func (h *Hub) broadcastLocked(ev event) {
	for c := range h.clients {
		select {
		case c.ch <- ev:
		default:
			delete(h.clients, c)
			close(c.slow)
			time.AfterFunc(h.o.SlowGrace, c.cancelWrites)
			if h.onSlow != nil {
				h.onSlow()
			}
		}
	}
}

// encodeID makes an event id: the store seq every annotation up to which the client has had,
// then a per-process counter; both fixed-width hex, so ids sort as strings in delivery order.
func encodeID(seq int64, n uint64) string { return fmt.Sprintf("%016x-%016x", seq, n) }

// parseID returns the store seq of an event id.
func parseID(id string) (int64, bool) {
	if len(id) != 33 || id[16] != '-' {
		return 0, false
	}
	seq, err := strconv.ParseUint(id[:16], 16, 63)
	return int64(seq), err == nil
}

// ServeWS is GET /api/ws: the live event stream (see API.md, "Live events"). A client sends
// ?since=<the last event id it saw> to resume.
func (h *Hub) ServeWS(w http.ResponseWriter, r *http.Request) {
	select {
	case <-h.ready:
	case <-h.done:
		http.Error(w, "the event hub has stopped", http.StatusServiceUnavailable)
		return
	case <-r.Context().Done():
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: h.o.OriginPatterns})
	if err != nil {
		h.log.Debug("WebSocket refused", "error", err)
		return
	}
	since, resume := parseID(r.URL.Query().Get("since"))
	ctx, cancel := context.WithCancel(conn.CloseRead(r.Context()))
	defer cancel()
	wctx, cancelWrites := context.WithCancel(ctx)
	defer cancelWrites()
	c := &subscriber{ch: make(chan event, h.o.ClientBuffer), slow: make(chan struct{}), cancelWrites: cancelWrites}

	// Subscribe and take the snapshot at once: every event after the snapshot is in c.ch.
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		conn.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	h.clientsWG.Add(1)
	defer func() {
		cancel() // ends the ping goroutine before Run may return
		h.clientsWG.Done()
	}()
	h.clients[c] = struct{}{}
	snap := State{Runs: h.runsLocked(), Quota: h.quotaLocked(), Overview: h.overviewLocked()}
	seq := h.seq
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.clients, c)
		h.mu.Unlock()
	}()
	go h.ping(ctx, cancel, conn)

	s := &sender{h: h, conn: conn, ctx: wctx, floor: seq}
	err = s.start(ctx, snap, since, resume)
	if err == nil {
		err = s.flush()
	}
	if err != nil {
		conn.CloseNow()
		return
	}
	for {
		select {
		case <-c.slow:
			s.closeSlow()
			return
		default:
		}
		select {
		case <-h.done:
			conn.Close(websocket.StatusGoingAway, "server shutting down")
			return
		case <-ctx.Done():
			conn.CloseNow()
			return
		case <-c.slow:
			s.closeSlow()
			return
		case ev := <-c.ch:
			// Whatever else is queued goes in the same frame: one write per frame is most of
			// the cost of an event, and a client that fell behind catches up in few frames.
			err := s.queue(ev)
		drain:
			for err == nil && len(s.buf) < frameBytes {
				select {
				case ev := <-c.ch:
					err = s.queue(ev)
				default:
					break drain
				}
			}
			if err == nil {
				err = s.flush()
			}
			if err != nil {
				conn.CloseNow()
				return
			}
		}
	}
}

// frameBytes is where a frame stops taking more queued events.
const frameBytes = 64 << 10

// queue adds a live event to the frame being built, unless the client already has it.
func (s *sender) queue(ev event) error {
	if ev.annotation && ev.seq <= s.floor {
		return nil // replayed already, or the client had it
	}
	return s.send(ev.typ, ev.seq, ev.data)
}

// ping checks the client every PingInterval; one that does not answer within it is cut.
func (h *Hub) ping(ctx context.Context, cancel context.CancelFunc, conn *websocket.Conn) {
	t := time.NewTicker(h.o.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, pcancel := context.WithTimeout(ctx, h.o.PingInterval)
		err := conn.Ping(pctx)
		pcancel()
		if err != nil {
			cancel()
			return
		}
	}
}

// sender writes one client's messages.
type sender struct {
	h    *Hub
	conn *websocket.Conn
	ctx  context.Context
	// floor: the client has had every annotation with a seq up to it.
	floor int64
	buf   []byte
}

// send adds an event to the frame being built, as one line; a full frame is written at once.
func (s *sender) send(typ string, seq int64, data []byte) error {
	if seq > s.floor && typ == TypeAnnotation {
		s.floor = seq
	}
	id := encodeID(max(seq, s.floor), s.h.ctr.Add(1))
	if len(s.buf) > 0 {
		s.buf = append(s.buf, '\n')
	}
	s.buf = append(s.buf, `{"id":"`...)
	s.buf = append(s.buf, id...)
	s.buf = append(s.buf, `","type":"`...)
	s.buf = append(s.buf, typ...)
	s.buf = append(s.buf, `","data":`...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, '}')
	if len(s.buf) >= frameBytes {
		return s.flush()
	}
	return nil
}

// flush writes the frame built so far: its events, one JSON object per line.
func (s *sender) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.h.o.WriteTimeout)
	defer cancel()
	err := s.conn.Write(ctx, websocket.MessageText, s.buf)
	s.buf = s.buf[:0]
	return err
}

func (s *sender) closeSlow() {
	s.conn.Close(StatusTooSlow, "too slow: reconnect with since=<last id>")
}

// start sends what comes before the live events: the state for a new client; for a client
// resuming from since, the annotations it missed from the store's change feed (a state when it
// missed more than MaxReplay), then every run and pool.
func (s *sender) start(ctx context.Context, snap State, since int64, resume bool) error {
	if resume {
		missed, ok, err := s.h.missed(ctx, since)
		if err != nil && ctx.Err() == nil && s.h.warn.allow("replay") {
			s.h.log.Warn("Reading the annotations a client missed failed; sending it the state", "error", err)
		}
		if err == nil && ok {
			// Live annotations up to since or the last one replayed are skipped.
			s.floor = since
			for _, c := range missed {
				if err := s.send(TypeAnnotation, c.Seq, annotationData(c)); err != nil {
					return err
				}
			}
			for _, r := range snap.Runs {
				if err := s.sendJSON(TypeRun, r); err != nil {
					return err
				}
			}
			for _, q := range snap.Quota {
				if err := s.sendJSON(TypeQuota, q); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return s.sendJSON(TypeState, snap)
}

func (s *sender) sendJSON(typ string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.send(typ, s.floor, data)
}

// missed reads the annotations stored after since; ok is false when there are more than
// MaxReplay, or when since lies beyond the store (an id from another database).
func (h *Hub) missed(ctx context.Context, since int64) ([]store.Change, bool, error) {
	last, err := h.o.Store.LastSeq(ctx)
	if err != nil || since > last {
		return nil, false, err
	}
	var out []store.Change
	for {
		limit := min(tailBatch, h.o.MaxReplay+1-len(out))
		page, err := h.o.Store.Changes(ctx, since, limit)
		if err != nil {
			return nil, false, err
		}
		out = append(out, page...)
		if len(out) > h.o.MaxReplay {
			return nil, false, nil
		}
		if len(page) < limit {
			return out, true, nil
		}
		since = page[len(page)-1].Seq
	}
}
