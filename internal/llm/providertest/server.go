// Package providertest holds what the tests of the LLM providers share: a recording test
// server and its handlers, and the tests that every provider must pass, run against a
// Provider that describes one. Only tests import it.
package providertest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Received is what a Server saw of a request.
type Received struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   map[string]any // the JSON body
}

// Server serves a handler and records each request.
type Server struct {
	*httptest.Server
	mu       sync.Mutex
	requests []Received
}

type releaseKey struct{}

// NewServer starts a server that answers with handler, and closes it when the test ends.
func NewServer(t *testing.T, handler http.HandlerFunc) *Server {
	t.Helper()
	s := &Server{}
	release := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		json.Unmarshal(raw, &body)
		s.mu.Lock()
		s.requests = append(s.requests, Received{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
		s.mu.Unlock()
		handler(w, r.WithContext(context.WithValue(r.Context(), releaseKey{}, release)))
	}))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(release) }) // runs first, so no handler keeps Close waiting
	return s
}

// Last returns the last request the server got.
func (s *Server) Last(t *testing.T) Received {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		t.Fatal("the server got no request")
	}
	return s.requests[len(s.requests)-1]
}

// Hang blocks a handler of a Server until the client goes away or the test ends.
func Hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-r.Context().Value(releaseKey{}).(chan struct{}):
	}
}

// Respond answers with status, headers and body.
func Respond(status int, header map[string]string, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// Stream answers with each of events as the data of one server-sent event whose lines end in
// sep, flushing after each.
func Stream(sep string, events ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, data := range events {
			io.WriteString(w, "data: "+data+sep+sep)
			w.(http.Flusher).Flush()
		}
	}
}

// ResetConnection answers with a TCP reset.
func ResetConnection(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
}
