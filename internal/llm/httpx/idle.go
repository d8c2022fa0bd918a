package httpx

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/mhannotator/mha/internal/llm"
)

// idleReader cuts a body that goes quiet. The timer closes the body rather than waiting for
// a read to return: a read from a dead connection never returns on its own.
type idleReader struct {
	r          io.ReadCloser
	idle       time.Duration
	onProgress func()
	timer      *time.Timer
	stalled    atomic.Bool
}

// NewIdleReader returns a reader of r that fails with an Unavailable *llm.Error ("stream
// stalled: no data for 20s") when no byte arrives for idle, counted from its creation and
// from every read that returned data. onProgress, when not nil, is called for every read
// that returned data, from the reading goroutine. Closing the reader closes r.
func NewIdleReader(r io.ReadCloser, idle time.Duration, onProgress func()) io.ReadCloser {
	ir := &idleReader{r: r, idle: idle, onProgress: onProgress}
	ir.timer = time.AfterFunc(idle, func() {
		ir.stalled.Store(true)
		r.Close()
	})
	return ir
}

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if ir.stalled.Load() {
		return 0, ir.stallError()
	}
	if n > 0 {
		ir.timer.Reset(ir.idle)
		if ir.onProgress != nil {
			ir.onProgress()
		}
	}
	return n, err
}

func (ir *idleReader) Close() error {
	ir.timer.Stop()
	return ir.r.Close()
}

func (ir *idleReader) stallError() error {
	return &llm.Error{Kind: llm.Unavailable, Message: fmt.Sprintf("stream stalled: no data for %s", ir.idle), Err: llm.ErrStalled}
}
