// Package health serves a process's /healthz and /readyz for orchestrators: each runs its
// checks and answers 200 when all pass, 503 with the failing checks' reasons otherwise.
//
// Liveness (/healthz) should fail only when a restart helps: the process is wedged.
// Readiness (/readyz) fails while the process cannot do its work (a dependency is
// unreachable, it is starting or stopping); an orchestrator waits instead of restarting.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Check is one named condition; Run returns nil when it holds, or what is wrong. Run gets a
// context that ends after the handler's timeout.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// Handler answers GET /healthz with the Live checks and GET /readyz with the Ready checks.
type Handler struct {
	Live    []Check
	Ready   []Check
	Timeout time.Duration // for all checks of one request; 0 = 3 s
}

// Report is the JSON body of both endpoints: ok, and each check's "ok" or reason.
type Report struct {
	OK     bool              `json:"ok"`
	Checks map[string]string `json:"checks"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var checks []Check
	switch r.URL.Path {
	case "/healthz":
		checks = h.Live
	case "/readyz":
		checks = h.Ready
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	rep := Run(ctx, checks)
	code := http.StatusOK
	if !rep.OK {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method == http.MethodGet {
		_ = json.NewEncoder(w).Encode(rep)
	}
}

// Run runs checks one after another and reports them.
func Run(ctx context.Context, checks []Check) Report {
	rep := Report{OK: true, Checks: make(map[string]string, len(checks))}
	for _, c := range checks {
		if err := c.Run(ctx); err != nil {
			rep.OK = false
			rep.Checks[c.Name] = err.Error()
		} else {
			rep.Checks[c.Name] = "ok"
		}
	}
	return rep
}

// Server is a running health endpoint.
type Server struct {
	srv  *http.Server
	addr net.Addr
	done chan struct{}
}

// Serve listens on addr (host:port; port 0 picks a free one) and serves h until Close.
func Serve(addr string, h http.Handler, logger *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health: listen on %s: %w", addr, err)
	}
	s := &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, addr: ln.Addr(), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && logger != nil {
			logger.Error("health endpoint stopped", "error", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops serving, letting requests in progress finish within a second.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = s.srv.Close()
	}
	<-s.done
	return err
}
