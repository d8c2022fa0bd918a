package httpx

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/llm"
)

// Options are the settings every provider takes. Each provider's Options embed them, and say
// how it sends them.
type Options struct {
	BaseURL string        // "" means the provider's default
	APIKey  config.Secret // the provider's key
	Model   string        // used when a Request names none
	Stream  bool          // ask for a server-sent event stream
	// RequestTimeout bounds a whole call; StreamIdleTimeout the silence between two chunks of
	// a stream. Zero means DefaultRequestTimeout and DefaultStreamIdleTimeout.
	RequestTimeout    time.Duration
	StreamIdleTimeout time.Duration
	Temperature       *float64 // nil: not sent
	MaxOutputTokens   int      // 0: not sent
	// MaxConns is how many calls may run at once; it sizes the connection pool.
	MaxConns int
}

// Defaults for zero Options fields.
const (
	DefaultRequestTimeout    = 45 * time.Second
	DefaultStreamIdleTimeout = 20 * time.Second
)

// New returns the client that provider sends its calls through, configured by o, and the base
// URL of its API: o.BaseURL without a trailing slash, or defaultBase when o names none. It
// fails when that is not an absolute http or https URL.
func New(provider, defaultBase string, o Options) (*Client, string, error) {
	base := strings.TrimRight(cmp.Or(o.BaseURL, defaultBase), "/")
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "", fmt.Errorf("%s: base URL %q is not an absolute http or https URL", provider, base)
	}
	requestTimeout := cmp.Or(o.RequestTimeout, DefaultRequestTimeout)
	c := &Client{
		Provider: provider,
		Key:      o.APIKey,
		HTTP: &http.Client{Transport: NewTransport(TransportOptions{
			ResponseHeaderTimeout: requestTimeout,
			MaxIdleConnsPerHost:   o.MaxConns,
		})},
		RequestTimeout:    requestTimeout,
		StreamIdleTimeout: cmp.Or(o.StreamIdleTimeout, DefaultStreamIdleTimeout),
	}
	return c, base, nil
}

// Client sends a provider's requests. It is safe for concurrent use.
type Client struct {
	Provider string // names the provider in errors
	// Key is the API key the provider sends. Every message made from a reply body has it
	// removed, so a server that echoes it back cannot put it into an error.
	Key config.Secret
	// HTTP sends the requests. Its Timeout is best left zero: RequestTimeout does that job
	// and tells a timeout from the caller's own cancellation.
	HTTP *http.Client
	// RequestTimeout bounds a whole call, from sending the request to the last byte of the
	// reply, streamed or not.
	RequestTimeout time.Duration
	// StreamIdleTimeout bounds the silence between two chunks of a streamed reply.
	StreamIdleTimeout time.Duration
}

// Call is one request whose reply headers have arrived. Close it when done.
type Call struct {
	Response *http.Response
	client   *Client
	ctx      context.Context // the caller's
	reqCtx   context.Context // the caller's, bounded by the request timeout
	cancel   context.CancelFunc
	start    time.Time
	body     io.ReadCloser
}

// Post sends body as JSON to url with the given headers under ctx and the request timeout.
// Any status counts as a reply: judging it is the provider's job. A failure to get a reply is
// returned classified (see the package comment).
func (c *Client) Post(ctx context.Context, url string, header http.Header, body []byte) (*Call, error) {
	reqCtx, cancel := context.WithTimeout(ctx, c.RequestTimeout)
	call := &Call{client: c, ctx: ctx, reqCtx: reqCtx, cancel: cancel, start: time.Now()}
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, &llm.Error{Kind: llm.BadRequest, Provider: c.Provider, Err: err}
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		cancel()
		return nil, call.Fail(err)
	}
	call.Response = resp
	call.body = resp.Body
	return call, nil
}

// Stream returns the reply body for reading as a stream: every chunk that arrives calls the
// progress callback of the call's context (llm.WithProgress), and a silence of
// StreamIdleTimeout ends the stream with an Unavailable error.
func (call *Call) Stream() io.Reader {
	call.body = NewIdleReader(call.Response.Body, call.client.StreamIdleTimeout, llm.ProgressFrom(call.ctx))
	return call.body
}

// ReadAll reads the whole body, up to limit bytes: a reply larger than that is cut short and
// so fails to decode, rather than filling memory.
func (call *Call) ReadAll(limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(call.body, limit))
	if err != nil {
		return nil, call.Fail(err)
	}
	return data, nil
}

// Close releases the connection and the call's timer.
func (call *Call) Close() {
	call.body.Close()
	call.cancel()
}

// Fail classifies an error met while sending the request or reading its reply.
func (call *Call) Fail(err error) error {
	if errors.Is(call.ctx.Err(), context.Canceled) {
		return call.ctx.Err()
	}
	var le *llm.Error
	if errors.As(err, &le) {
		e := *le
		e.Provider = call.client.Provider
		return &e
	}
	e := &llm.Error{Kind: llm.Unavailable, Provider: call.client.Provider, Err: err}
	if call.reqCtx.Err() != nil {
		e.Message = fmt.Sprintf("no complete reply after %s (request timeout %s)",
			time.Since(call.start).Round(time.Millisecond), call.client.RequestTimeout)
		e.Err = fmt.Errorf("%w: %w", llm.ErrTimeout, err)
	}
	return e
}
