package providertest

import (
	"cmp"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/llm"
)

// Case is a reply a server may send, and what a client must make of it: with Kind "", a
// response with Text; else an error of Kind whose StatusCode is the reply's status.
type Case struct {
	Name   string
	Status int // 0 means 200
	Header map[string]string
	Body   string // the reply; streamed, a 200 reply is this one event, unless Events are set
	Events []string

	Kind       llm.Kind
	Text       string
	Message    string        // when set, the error's message
	Shows      string        // a part of the error's message
	RetryAfter time.Duration // give or take Tolerance
	Tolerance  time.Duration
	// ResetAt checks the reset of a daily quota, against the time the request was sent; nil
	// means the error has none.
	ResetAt func(t *testing.T, at, sent time.Time)
}

// Replies runs each case against a whole and a streamed client of p. An error reply is the
// same for both.
func Replies(t *testing.T, p Provider, cases []Case) {
	Modes(t, func(t *testing.T, stream bool) {
		for _, c := range cases {
			t.Run(c.Name, func(t *testing.T) {
				status := cmp.Or(c.Status, http.StatusOK)
				h := Respond(status, c.Header, c.Body)
				if stream && status == http.StatusOK {
					events := c.Events
					if events == nil {
						events = []string{c.Body}
					}
					h = Stream(p.Sep, events...)
				}
				srv := NewServer(t, h)
				sent := time.Now()
				resp, err := p.client(t, srv.URL, stream).Complete(context.Background(), llm.Request{Prompt: "p"})
				if c.Kind == "" {
					if err != nil || resp.Text != c.Text {
						t.Fatalf("Complete = %+v, %v; want text %q", resp, err, c.Text)
					}
					return
				}
				e := p.WantKind(t, err, c.Kind)
				if e.StatusCode != status {
					t.Errorf("StatusCode = %d, want %d", e.StatusCode, status)
				}
				if d := e.RetryAfter - c.RetryAfter; d > c.Tolerance || d < -c.Tolerance {
					t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, c.RetryAfter)
				}
				if c.ResetAt != nil {
					c.ResetAt(t, e.ResetAt, sent)
				} else if !e.ResetAt.IsZero() {
					t.Errorf("ResetAt = %v, want none", e.ResetAt)
				}
				if c.Message != "" && e.Message != c.Message {
					t.Errorf("Message = %q, want %q", e.Message, c.Message)
				}
				if !strings.Contains(e.Message, c.Shows) {
					t.Errorf("Message = %q, want it to show %q", e.Message, c.Shows)
				}
			})
		}
	})
}
