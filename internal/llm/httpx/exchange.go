package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/mhannotator/mha/internal/llm"
)

// Reply size limits: a label needs a few kilobytes, and these only stop a runaway server from
// filling memory.
const (
	maxReply      = 32 << 20
	maxErrorReply = 1 << 20
)

// Exchange is a provider's part in one call: its request, and how to take in the reply. E is
// the provider's error object, which an error reply holds as {"error": E}.
type Exchange[E any] struct {
	URL    string
	Header http.Header
	Body   any  // the request, sent as JSON
	Stream bool // read a 200 reply as a server-sent event stream with Event, else whole with Whole

	// Refused classifies a reply whose status is not 200 by its status, its headers and its
	// error object; or, when the body holds none, by snippet: the body, redacted and shortened.
	Refused func(status int, h http.Header, e *E, snippet string) *llm.Error
	// Whole takes in a whole 200 reply.
	Whole func(data []byte) error
	// Event takes in the data of one event of a streamed reply, or a bare JSON line (see
	// SSE.Next). done ends the stream before the server closes it.
	Event func(data []byte, bare bool) (done bool, err error)
}

// Do sends x's request through c and hands the reply to x: the error reply to Refused, whose
// error it returns, and a 200 reply to Whole or Event, whose first error it returns. A failure
// to send the request or read the reply is returned classified (see the package comment).
func Do[E any](ctx context.Context, c *Client, x Exchange[E]) error {
	body, err := json.Marshal(x.Body)
	if err != nil {
		return &llm.Error{Kind: llm.BadRequest, Provider: c.Provider, Err: err}
	}
	call, err := c.Post(ctx, x.URL, x.Header, body)
	if err != nil {
		return err
	}
	defer call.Close()
	switch {
	case call.Response.StatusCode != http.StatusOK:
		data, err := call.ReadAll(maxErrorReply)
		if err != nil {
			return err
		}
		if e := ErrorObject[E](data); e != nil {
			return x.Refused(call.Response.StatusCode, call.Response.Header, e, "")
		}
		return x.Refused(call.Response.StatusCode, call.Response.Header, nil, Snippet(data, c.Key.Reveal()))
	case x.Stream:
		return call.events(x.Event)
	default:
		data, err := call.ReadAll(maxReply)
		if err != nil {
			return err
		}
		return x.Whole(data)
	}
}

// events hands the events of the reply's stream to take until the stream ends, or take is done
// or fails.
func (call *Call) events(take func(data []byte, bare bool) (done bool, err error)) error {
	events := NewSSE(call.Stream())
	for {
		data, bare, err := events.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return call.Fail(err)
		}
		if done, err := take(data, bare); done || err != nil {
			return err
		}
	}
}

// ErrorObject returns the E of data that is {"error": E}, or nil when data is not JSON or holds
// no error object.
func ErrorObject[E any](data []byte) *E {
	var body struct {
		Error *E `json:"error"`
	}
	if json.Unmarshal(data, &body) != nil {
		return nil
	}
	return body.Error
}

// Decode reads data, a 200 reply or one event of a streamed one, as the JSON of a T. Data that
// is not, such as a proxy's page or a cut reply, is an Unavailable error: trying again may fix
// it.
func Decode[T any](c *Client, data []byte) (*T, error) {
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, &llm.Error{Kind: llm.Unavailable, Provider: c.Provider, StatusCode: http.StatusOK,
			Message: "reply is not valid JSON: " + Snippet(data, c.Key.Reveal()), Err: err}
	}
	return v, nil
}
