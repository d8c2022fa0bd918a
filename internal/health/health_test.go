package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, method, path string) (int, Report) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	var rep Report
	if method == http.MethodGet && rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
		if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
			t.Fatalf("%s %s: body %q: %v", method, path, rec.Body.String(), err)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
	}
	return rec.Code, rep
}

func TestEndpointsAnswerWithTheirChecks(t *testing.T) {
	var wedged, unreachable atomic.Bool
	h := &Handler{
		Live: []Check{{Name: "slots", Run: func(context.Context) error {
			if wedged.Load() {
				return errors.New("all wedged")
			}
			return nil
		}}},
		Ready: []Check{{Name: "temporal", Run: func(context.Context) error {
			if unreachable.Load() {
				return errors.New("unreachable")
			}
			return nil
		}}, {Name: "polling", Run: func(context.Context) error { return nil }}},
	}
	if code, rep := get(t, h, http.MethodGet, "/healthz"); code != http.StatusOK || !rep.OK || rep.Checks["slots"] != "ok" {
		t.Fatalf("/healthz = %d %+v; want 200 ok", code, rep)
	}
	if code, rep := get(t, h, http.MethodGet, "/readyz"); code != http.StatusOK || !rep.OK || rep.Checks["temporal"] != "ok" || rep.Checks["polling"] != "ok" {
		t.Fatalf("/readyz = %d %+v; want 200 ok", code, rep)
	}
	wedged.Store(true)
	if code, rep := get(t, h, http.MethodGet, "/healthz"); code != http.StatusServiceUnavailable || rep.OK || rep.Checks["slots"] != "all wedged" {
		t.Fatalf("/healthz = %d %+v; want 503 with the reason", code, rep)
	}
	if code, _ := get(t, h, http.MethodGet, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d; liveness must not fail readiness", code)
	}
	unreachable.Store(true)
	if code, rep := get(t, h, http.MethodGet, "/readyz"); code != http.StatusServiceUnavailable || rep.Checks["temporal"] != "unreachable" || rep.Checks["polling"] != "ok" {
		t.Fatalf("/readyz = %d %+v; want 503 naming temporal only", code, rep)
	}
	if code, _ := get(t, h, http.MethodHead, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("HEAD /readyz = %d; want 503", code)
	}
	if code, _ := get(t, h, http.MethodPost, "/healthz"); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz = %d; want 405", code)
	}
	if code, _ := get(t, h, http.MethodGet, "/metrics"); code != http.StatusNotFound {
		t.Fatalf("/metrics = %d; want 404", code)
	}
}

func TestChecksGetTheTimeout(t *testing.T) {
	h := &Handler{Timeout: 50 * time.Millisecond, Ready: []Check{{Name: "slow", Run: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}}}}
	start := time.Now()
	code, rep := get(t, h, http.MethodGet, "/readyz")
	if code != http.StatusServiceUnavailable || rep.Checks["slow"] != context.DeadlineExceeded.Error() {
		t.Fatalf("/readyz = %d %+v; want 503 with the deadline", code, rep)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a check past its timeout took %s", d)
	}
}

func TestServeListensUntilClosed(t *testing.T) {
	s, err := Serve("127.0.0.1:0", &Handler{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + s.Addr().String()
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz with no checks = %d; want 200", resp.StatusCode)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get(url + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("still serving after Close")
	}
	if _, err := Serve("127.0.0.1:bad", &Handler{}, nil); err == nil {
		t.Fatal("Serve on a bad address: want an error")
	}
}
