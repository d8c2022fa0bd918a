package httpx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mhannotator/mha/internal/llm"
)

// MaxDownload bounds a reply Send reads: a batch's results or a responses file.
const MaxDownload = 1 << 30

// Send makes one request that is not a model call (the batch and file endpoints) within
// timeout, and hands a 200 reply's body to take. Another status goes to refused, the
// provider's classifier, with a 404 made a BadRequest: the batch or file named does not
// exist, and no model is at stake. A failure to send or read follows the rule of Post: the
// caller's own cancellation returns ctx.Err(), anything else is Unavailable.
func (c *Client) Send(ctx context.Context, method, url string, header http.Header, body []byte, timeout time.Duration,
	refused func(status int, h http.Header, data []byte) error, take func(io.Reader) error) error {
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fail := func(err error) error {
		if errors.Is(ctx.Err(), context.Canceled) {
			return ctx.Err()
		}
		if _, ok := llm.KindOf(err); ok {
			return err
		}
		e := &llm.Error{Kind: llm.Unavailable, Provider: c.Provider, Err: err}
		if reqCtx.Err() != nil {
			e.Message = fmt.Sprintf("no complete reply within %s", timeout)
			e.Err = fmt.Errorf("%w: %w", llm.ErrTimeout, err)
		}
		return e
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(reqCtx, method, url, rd)
	if err != nil {
		return &llm.Error{Kind: llm.BadRequest, Provider: c.Provider, Err: err}
	}
	req.Header = header
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return fail(err)
		}
		return NotFound(refused(resp.StatusCode, resp.Header, data))
	}
	if err := take(io.LimitReader(resp.Body, MaxDownload)); err != nil {
		return fail(err)
	}
	return nil
}

// NotFound makes a ModelNotFound a BadRequest (see Send).
func NotFound(err error) error {
	var e *llm.Error
	if errors.As(err, &e) && e.Kind == llm.ModelNotFound {
		out := *e
		out.Kind = llm.BadRequest
		return &out
	}
	return err
}
