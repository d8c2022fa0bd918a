package providertest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/llm"
	"github.com/mhannotator/mha/internal/llm/httpx"
)

// timeouts sets a client's request and stream idle timeouts.
func timeouts(request, idle time.Duration) func(*httpx.Options) {
	return func(o *httpx.Options) { o.RequestTimeout, o.StreamIdleTimeout = request, idle }
}

// hang is a handler that never answers.
func hang(w http.ResponseWriter, r *http.Request) { Hang(r) }

// ConnectionFailures checks that p's calls end, classified, however the server fails them,
// that streamed calls report their progress, and that no error shows the key.
func ConnectionFailures(t *testing.T, p Provider) {
	t.Run("a stream that stalls is cut at the idle timeout, not the request timeout", func(t *testing.T) {
		srv := NewServer(t, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, p.frame(p.Event("<<LEV", false)))
			w.(http.Flusher).Flush()
			Hang(r)
		})
		c := p.client(t, srv.URL, true, timeouts(20*time.Second, 200*time.Millisecond))
		var chunks atomic.Int32
		ctx := llm.WithProgress(context.Background(), func() { chunks.Add(1) })
		start := time.Now()
		_, err := c.Complete(ctx, llm.Request{Prompt: "p"})
		elapsed := time.Since(start)
		e := p.WantKind(t, err, llm.Unavailable)
		if e.Message != "stream stalled: no data for 200ms" {
			t.Errorf("Message = %q", e.Message)
		}
		if elapsed > 3*time.Second {
			t.Errorf("the stalled stream ended after %v, want about 200ms", elapsed)
		}
		if chunks.Load() != 1 {
			t.Errorf("progress reported %d times, want once for the one chunk", chunks.Load())
		}
	})

	t.Run("a server that never answers is cut at the request timeout", func(t *testing.T) {
		Modes(t, func(t *testing.T, stream bool) {
			srv := NewServer(t, hang)
			c := p.client(t, srv.URL, stream, timeouts(300*time.Millisecond, 300*time.Millisecond))
			start := time.Now()
			_, err := c.Complete(context.Background(), llm.Request{Prompt: "p"})
			e := p.WantKind(t, err, llm.Unavailable)
			if !strings.Contains(e.Message, "request timeout 300ms") {
				t.Errorf("Message = %q, want it to name the request timeout", e.Message)
			}
			if elapsed := time.Since(start); elapsed > 3*time.Second {
				t.Errorf("took %v, want about 300ms", elapsed)
			}
		})
	})

	t.Run("a reset connection is unavailable", func(t *testing.T) {
		Modes(t, func(t *testing.T, stream bool) {
			srv := NewServer(t, ResetConnection)
			_, err := p.client(t, srv.URL, stream).Complete(context.Background(), llm.Request{Prompt: "p"})
			p.WantKind(t, err, llm.Unavailable)
		})
	})

	t.Run("a cancelled call returns the context's error", func(t *testing.T) {
		Modes(t, func(t *testing.T, stream bool) {
			srv := NewServer(t, func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, p.frame(p.Event("x", false)))
				w.(http.Flusher).Flush()
				Hang(r)
			})
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			_, err := p.client(t, srv.URL, stream).Complete(ctx, llm.Request{Prompt: "p"})
			if err != context.Canceled {
				t.Fatalf("err = %#v, want context.Canceled, unclassified", err)
			}
		})
	})

	t.Run("progress is reported for every chunk", func(t *testing.T) {
		const n = 5
		srv := NewServer(t, func(w http.ResponseWriter, r *http.Request) {
			for i := range n {
				io.WriteString(w, p.frame(p.Event("x", i == n-1)))
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond) // so each chunk arrives on its own
			}
			if p.Done != "" {
				io.WriteString(w, p.frame(p.Done))
			}
		})
		var chunks atomic.Int32
		ctx := llm.WithProgress(context.Background(), func() { chunks.Add(1) })
		resp, err := p.client(t, srv.URL, true).Complete(ctx, llm.Request{Prompt: "p"})
		if err != nil || resp.Text != "xxxxx" {
			t.Fatalf("Complete = %+v, %v", resp, err)
		}
		if got := chunks.Load(); got < n {
			t.Errorf("progress reported %d times for %d chunks", got, n)
		}
	})

	t.Run("the key never appears in an error", func(t *testing.T) {
		handlers := map[string]http.HandlerFunc{
			"400 echoing the key":    Respond(400, nil, p.KeyEcho),
			"401 echoing the key":    Respond(401, nil, p.KeyEcho),
			"429 echoing the key":    Respond(429, nil, p.KeyEcho),
			"500 echoing the key":    Respond(500, nil, p.KeyEcho),
			"an HTML page with it":   Respond(502, nil, "<p>bad key "+p.Key+"</p>"),
			"a 200 that is not JSON": Respond(200, nil, "key="+p.Key),
			"a mid-stream echo":      Stream(p.Sep, p.KeyEcho),
			"a reset":                ResetConnection,
			"a hang":                 hang,
		}
		for name, h := range handlers {
			t.Run(name, func(t *testing.T) {
				srv := NewServer(t, h)
				for _, stream := range []bool{false, true} {
					c := p.client(t, srv.URL, stream, timeouts(300*time.Millisecond, 300*time.Millisecond))
					_, err := c.Complete(context.Background(), llm.Request{Prompt: "p"})
					if err == nil {
						t.Fatal("want an error")
					}
					for e := err; e != nil; e = errors.Unwrap(e) {
						if strings.Contains(e.Error(), p.Key) {
							t.Errorf("the error shows the key: %v", e)
						}
					}
				}
			})
		}
	})
}
