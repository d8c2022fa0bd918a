package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheckExitCodes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("temporal: unreachable"))
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	tests := []struct {
		name       string
		args       []string
		want       int
		wantStderr string
	}{
		{"a 2xx answer is healthy", []string{srv.URL + "/healthz"}, 0, ""},
		{"a 503 is unhealthy and its body is shown", []string{srv.URL + "/readyz"}, 1, "temporal: unreachable"},
		{"a server that does not answer is unhealthy", []string{closed.URL + "/healthz"}, 1, "healthcheck:"},
		{"no URL is a usage error", nil, 2, "usage"},
		{"two URLs are a usage error", []string{srv.URL, srv.URL}, 2, "usage"},
		{"a malformed URL is a usage error", []string{"http://[::1"}, 2, "healthcheck:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := run(tt.args, &stderr); got != tt.want {
				t.Errorf("run(%q) = %d, want %d; stderr: %s", tt.args, got, tt.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("run(%q) stderr %q lacks %q", tt.args, stderr.String(), tt.wantStderr)
			}
		})
	}
}
