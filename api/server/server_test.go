package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/mock"
	"github.com/uber-go/tally/v4"
	"go.temporal.io/sdk/client"

	"github.com/mhannotator/mha/api/events"
)

const testToken = "s3cret-token-of-the-api"

// dashboard stands in for the dashboard's handler.
var dashboard = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html")
	fmt.Fprintf(w, "dashboard page %s", r.URL.Path)
})

func withToken(o *Options)     { o.Token = testToken }
func withDashboard(o *Options) { o.Dashboard = dashboard }

// request builds a GET (or other) request with optional headers, given as name, value pairs.
func request(method, target string, headers ...string) *http.Request {
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req
}

func TestEveryRouteButHealthzNeedsTheBearerToken(t *testing.T) {
	f := newConfigFixture(t, withToken, withDashboard, withEvents(newFakeEvents()))
	for _, target := range []string{"/api/overview", "/api/config", "/readyz", "/metrics", "/api/openapi.json", "/api/ws", "/", "/runs"} {
		for name, auth := range map[string]string{
			"no header": "", "a wrong token": "Bearer nope", "the token without Bearer": testToken,
			"a basic header": "Basic " + testToken, "an empty bearer": "Bearer ",
		} {
			var headers []string
			if auth != "" {
				headers = []string{"Authorization", auth}
			}
			rec := f.serve(request(http.MethodGet, target, headers...))
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("%s with %s: status %d, want 401", target, name, rec.Code)
				continue
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer realm="api"` {
				t.Errorf("%s with %s: WWW-Authenticate %q", target, name, got)
			}
			p := decodeInto[problemReply](t, rec)
			if p.Status != http.StatusUnauthorized || !strings.Contains(p.Detail, "Authorization: Bearer <token>") || rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s with %s: reply %s", target, name, rec.Body.String())
			}
			if rec.Header().Get("Set-Cookie") != "" {
				t.Errorf("%s with %s: a refused request sets a cookie", target, name)
			}
		}
	}
	rec := f.serve(request(http.MethodGet, "/api/overview", "Authorization", "Bearer "+testToken))
	if rec.Code != http.StatusOK || rec.Header().Get("Set-Cookie") != "" {
		t.Errorf("with the token: status %d, cookie %q", rec.Code, rec.Header().Get("Set-Cookie"))
	}
	if rec := f.serve(request(http.MethodGet, "/healthz")); rec.Code != http.StatusOK || rec.Body.String() != `{"status":"ok"}` {
		t.Errorf("/healthz without a token: %d %s", rec.Code, rec.Body.String())
	}
}

// problemReply is a problem as the middleware and huma write it.
type problemReply struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

func TestWithoutATokenNoRouteNeedsOne(t *testing.T) {
	f := newConfigFixture(t, withEvents(newFakeEvents()))
	f.get("/api/overview", http.StatusOK)
	f.get("/api/config", http.StatusOK)
}

func TestTokenInTheQuerySetsACookieThatLaterRequestsCarry(t *testing.T) {
	f := newConfigFixture(t, withToken, withDashboard, withEvents(newFakeEvents()))
	rec := f.serve(request(http.MethodGet, "/?token="+testToken))
	if rec.Code != http.StatusOK || rec.Body.String() != "dashboard page /" {
		t.Fatalf("/?token=: %d %s", rec.Code, rec.Body.String())
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies: %v", rec.Header().Values("Set-Cookie"))
	}
	c := cookies[0]
	if c.Name != "mha_token" || c.Value != testToken || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure || c.MaxAge != 0 {
		t.Errorf("cookie = %+v", c)
	}

	// The page's own requests and its WebSocket carry the cookie and nothing else.
	for _, target := range []string{"/api/overview", "/api/ws", "/runs"} {
		req := request(http.MethodGet, target)
		req.AddCookie(c)
		if rec := f.serve(req); rec.Code != http.StatusOK || rec.Header().Get("Set-Cookie") != "" {
			t.Errorf("%s with the cookie: %d, cookie %q: %s", target, rec.Code, rec.Header().Get("Set-Cookie"), rec.Body.String())
		}
	}
	req := request(http.MethodGet, "/api/overview")
	req.AddCookie(&http.Cookie{Name: "mha_token", Value: "stale"})
	if rec := f.serve(req); rec.Code != http.StatusUnauthorized {
		t.Errorf("a wrong cookie: status %d", rec.Code)
	}
	rec = f.serve(request(http.MethodGet, "/api/ws?token=wrong"))
	if rec.Code != http.StatusUnauthorized || rec.Header().Get("Set-Cookie") != "" {
		t.Errorf("a wrong ?token=: status %d, cookie %q", rec.Code, rec.Header().Get("Set-Cookie"))
	}
	if rec := f.serve(request(http.MethodGet, "/api/ws?token="+testToken)); rec.Code != http.StatusOK || rec.Body.String() != "the event stream" {
		t.Errorf("the WebSocket with ?token=: %d %s", rec.Code, rec.Body.String())
	}
}

func TestTokenInTheQueryReplacesAStaleCookie(t *testing.T) {
	// A browser still holding the token of an earlier api process opens the new link.
	f := newConfigFixture(t, withToken, withDashboard)
	req := request(http.MethodGet, "/?token="+testToken)
	req.AddCookie(&http.Cookie{Name: "mha_token", Value: "token-of-the-api-before-its-restart"})
	rec := f.serve(req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
	}
	if cookies := rec.Result().Cookies(); len(cookies) != 1 || cookies[0].Value != testToken {
		t.Errorf("cookies: %v", rec.Header().Values("Set-Cookie"))
	}
}

func TestCORSAnswersOnlyTheConfiguredOrigins(t *testing.T) {
	const allowed = "https://dashboard.example"
	f := newConfigFixture(t, withToken, withEvents(newFakeEvents()), func(o *Options) { o.Origins = []string{allowed, "http://localhost:5173"} })
	auth := "Bearer " + testToken

	rec := f.serve(request(http.MethodGet, "/api/overview", "Origin", allowed, "Authorization", auth))
	if rec.Code != http.StatusOK || rec.Header().Get("Access-Control-Allow-Origin") != allowed || rec.Header().Get("Vary") != "Origin" {
		t.Errorf("GET from %s: %d %v", allowed, rec.Code, rec.Header())
	}
	for _, origin := range []string{"https://evil.example", "https://dashboard.example.evil", ""} {
		rec := f.serve(request(http.MethodGet, "/api/overview", "Origin", origin, "Authorization", auth))
		if rec.Code != http.StatusOK || rec.Header().Get("Access-Control-Allow-Origin") != "" || rec.Header().Get("Access-Control-Allow-Methods") != "" {
			t.Errorf("GET from %q: %d %v", origin, rec.Code, rec.Header())
		}
	}

	// A preflight carries no credentials; it is answered for an allowed origin only.
	rec = f.serve(request(http.MethodOptions, "/api/control/pause", "Origin", allowed,
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type"))
	h := rec.Header()
	if rec.Code != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != allowed ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "DELETE") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Errorf("preflight from %s: %d %v", allowed, rec.Code, h)
	}
	rec = f.serve(request(http.MethodOptions, "/api/control/pause", "Origin", "https://evil.example", "Access-Control-Request-Method", "POST"))
	if rec.Code == http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Origin") != "" || rec.Header().Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("preflight from another origin: %d %v", rec.Code, rec.Header())
	}
	// The allowed origin still needs the token for the request itself.
	if rec := f.serve(request(http.MethodGet, "/api/overview", "Origin", allowed)); rec.Code != http.StatusUnauthorized {
		t.Errorf("GET from %s without a token: %d", allowed, rec.Code)
	}
}

func TestBodiesAboveTheLimitAre413(t *testing.T) {
	m := newTemporalMock(t) // no call expected: the body is refused first
	f := newConfigFixture(t, withClient(m), func(o *Options) { o.MaxBody = 64 })
	body := `{"all": true, "annotator": "` + strings.Repeat("x", 100) + `"}`
	chunked := func(body string) *http.Request {
		req := httptest.NewRequest(http.MethodPost, "/api/control/pause", io.NopCloser(strings.NewReader(body)))
		req.ContentLength = -1
		req.Header.Set("Content-Type", "application/json")
		return req
	}
	for name, rec := range map[string]*httptest.ResponseRecorder{
		"with a Content-Length": f.send(http.MethodPost, "/api/control/pause", "application/json", strings.NewReader(body)),
		"without one":           f.serve(chunked(body)),
	} {
		p := decodeInto[problemReply](t, rec)
		if rec.Code != http.StatusRequestEntityTooLarge || p.Status != http.StatusRequestEntityTooLarge ||
			p.Detail != "the body is larger than the limit of 64 bytes" || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s", name, rec.Code, rec.Body.String())
		}
	}
	// A body within the limit goes through to validation, with or without a Content-Length.
	wantProblem(t, f.call(http.MethodPost, "/api/control/pause", `{"domain": "nope"}`, http.StatusUnprocessableEntity), "body.domain")
	rec := f.serve(chunked(`{"domain": "nope"}`))
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("chunked within the limit: %d %s", rec.Code, rec.Body.String())
	}
	wantProblem(t, rec, "body.domain")

	g := newConfigFixture(t)
	rec = g.send(http.MethodPatch, "/api/config/global", "application/json", strings.NewReader(`{"batch_size": 1`+strings.Repeat(" ", 1<<20)+`}`))
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "the limit of 1 MiB") {
		t.Errorf("the default limit: %d %s", rec.Code, rec.Body.String())
	}
}

func TestRequestLogsHoldNoQueryAndNoBody(t *testing.T) {
	ev := newFakeEvents()
	f := newConfigFixture(t, withToken, withEvents(ev))
	queryToken := f.secret("query-token-" + testToken)
	f.serve(request(http.MethodGet, "/api/ws?token="+queryToken))
	f.serve(request(http.MethodGet, "/api/annotations?q="+f.secret("searched-words")+"&token="+testToken))
	req := httptest.NewRequest(http.MethodPut, "/api/keys/1", strings.NewReader(`{"key": "`+f.secret("AIza-body-key-9911")+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testToken)
	if rec := f.serve(req); rec.Code != http.StatusOK {
		t.Fatalf("PUT key: %d %s", rec.Code, rec.Body.String())
	}
	logs := f.logs.String()
	for _, want := range []string{
		"method=GET path=/api/ws status=401", "path=/api/annotations status=200",
		"method=PUT path=/api/keys/1 status=200", "duration_ms=",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs lack %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, testToken) || strings.Contains(logs, "token=") {
		t.Errorf("the logs hold the token:\n%s", logs)
	}
	// f's cleanup checks that no secret reached the logs.
}

func TestRequestMetricsAreCountedByRoutePattern(t *testing.T) {
	scope := tally.NewTestScope("", nil)
	f := newConfigFixture(t, withDashboard, withEvents(newFakeEvents(events.Run{})), func(o *Options) { o.Scope = scope })
	f.get("/api/runs/annotation-1-urgency", http.StatusNotFound)
	f.get("/api/runs/annotation-2-urgency", http.StatusNotFound)
	f.get("/api/nothing-here", http.StatusNotFound)
	counters := map[string]int64{}
	for _, c := range scope.Snapshot().Counters() {
		if c.Name() == "api_requests_total" {
			tags := c.Tags()
			counters[tags["method"]+" "+tags["route"]+" "+tags["code"]] += c.Value()
		}
	}
	want := map[string]int64{"GET /api/runs/:id 404": 2, "GET other 404": 1}
	if fmt.Sprint(counters) != fmt.Sprint(want) {
		t.Errorf("counters = %v, want %v", counters, want)
	}
	var observed int
	for _, h := range scope.Snapshot().Histograms() {
		if h.Name() == "api_request_duration_seconds" {
			for _, n := range h.Values() {
				observed += int(n)
			}
		}
	}
	if observed != 3 {
		t.Errorf("durations recorded: %d, want 3", observed)
	}
}

func TestHealthzAnswersWithoutTemporalOrStore(t *testing.T) {
	srv := New(Options{})
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != `{"status":"ok"}` {
		t.Errorf("/healthz: %d %s", rec.Code, rec.Body.String())
	}
}

type readyReply struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

func TestReadyzAnswers200OnceTemporalTheStoreAndTheEventsAnswer(t *testing.T) {
	m := newTemporalMock(t)
	m.On("CheckHealth", mock.Anything, &client.CheckHealthRequest{}).Return(&client.CheckHealthResponse{}, nil).Once()
	f := newConfigFixture(t, withClient(m), withEvents(newFakeEvents()))
	got := decodeInto[readyReply](t, f.get("/readyz", http.StatusOK))
	if !got.Ready || fmt.Sprint(got.Checks) != "map[events:ok store:ok temporal:ok]" {
		t.Errorf("readyz = %+v", got)
	}
}

func TestReadyzAnswers503NamingWhatDoesNotAnswer(t *testing.T) {
	t.Run("Temporal", func(t *testing.T) {
		m := newTemporalMock(t)
		m.On("CheckHealth", mock.Anything, mock.Anything).Return(nil, errors.New("connection refused")).Once()
		f := newConfigFixture(t, withClient(m))
		got := decodeInto[readyReply](t, f.get("/readyz", http.StatusServiceUnavailable))
		if got.Ready || got.Checks["temporal"] != "connection refused" || got.Checks["store"] != "ok" {
			t.Errorf("readyz = %+v", got)
		}
		if _, ok := got.Checks["events"]; ok {
			t.Errorf("an api without events checks them: %+v", got)
		}
	})
	t.Run("the events", func(t *testing.T) {
		m := newTemporalMock(t)
		m.On("CheckHealth", mock.Anything, mock.Anything).Return(&client.CheckHealthResponse{}, nil).Once()
		ev := newFakeEvents()
		ev.setReady(false)
		f := newConfigFixture(t, withClient(m), withEvents(ev))
		got := decodeInto[readyReply](t, f.get("/readyz", http.StatusServiceUnavailable))
		if got.Ready || got.Checks["events"] != "loading the runs' first state" || got.Checks["temporal"] != "ok" {
			t.Errorf("readyz = %+v", got)
		}
	})
	t.Run("the store", func(t *testing.T) {
		m := newTemporalMock(t)
		m.On("CheckHealth", mock.Anything, mock.Anything).Return(&client.CheckHealthResponse{}, nil).Once()
		f := newConfigFixture(t, withClient(m))
		f.st.Close()
		got := decodeInto[readyReply](t, f.get("/readyz", http.StatusServiceUnavailable))
		if got.Ready || got.Checks["store"] == "ok" || got.Checks["store"] == "" || got.Checks["temporal"] != "ok" {
			t.Errorf("readyz = %+v", got)
		}
	})
}

func TestMetricsServesThePrometheusPage(t *testing.T) {
	page := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "api_requests_total 3\n")
	})
	f := newConfigFixture(t, func(o *Options) { o.Metrics = page })
	if rec := f.get("/metrics", http.StatusOK); rec.Body.String() != "api_requests_total 3\n" {
		t.Errorf("/metrics = %q", rec.Body.String())
	}
	rec := newConfigFixture(t).get("/metrics", http.StatusOK)
	if rec.Body.Len() != 0 || rec.Header().Get("Content-Type") != "text/plain; version=0.0.4" {
		t.Errorf("/metrics without a page: %q %q", rec.Header().Get("Content-Type"), rec.Body.String())
	}
}

func TestOpenAPIDocumentListsEveryOperation(t *testing.T) {
	want := map[string][]string{
		"/api/control/{action}": {"post"}, "/api/control/target": {"post"}, "/api/control/redo": {"post"},
		"/api/annotations": {"get", "delete"}, "/api/overview": {"get"}, "/api/runs": {"get"}, "/api/runs/{id}": {"get"},
		"/api/health": {"get"}, "/api/quota": {"get"}, "/api/tokens": {"get"}, "/api/samples/{id}": {"get"},
		"/api/stats": {"get"}, "/api/export": {"get"}, "/api/export/preview": {"get"},
		"/api/config": {"get"}, "/api/config/global": {"patch"}, "/api/config/runs": {"patch"},
		"/api/keys/{annotator}": {"put", "delete"}, "/api/keys/{annotator}/test": {"post"},
		"/api/prompts": {"get"}, "/api/prompts/{domain}": {"get", "post"}, "/api/prompts/{domain}/versions/{file}": {"get", "delete"},
		"/api/prompts/{domain}/versions/{file}/activate": {"post"}, "/api/prompts/{domain}/diff": {"get"}, "/api/dataset": {"get", "post"},
		"/api/prompts/{domain}/active": {"delete"},
		"/api/cost":                    {"get"}, "/api/cost/estimate": {"post"}, "/api/agreement": {"get"}, "/api/agreement/export": {"get"},
		"/api/consensus/{domain}": {"get"}, "/api/consensus/{domain}/export": {"get"}, "/api/labelstudio/{domain}/config": {"get"},
	}
	type operation struct {
		OperationID string                `json:"operationId"`
		Security    []map[string][]string `json:"security"`
	}
	var doc struct {
		Info       struct{ Version string }
		Paths      map[string]map[string]operation
		Components struct {
			SecuritySchemes map[string]struct{ Type, Scheme string } `json:"securitySchemes"`
		}
		Security []map[string][]string
	}
	f := newConfigFixture(t, withToken)
	rec := f.serve(request(http.MethodGet, "/api/openapi.json", "Authorization", "Bearer "+testToken))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	var got, wanted []string
	for path, methods := range doc.Paths {
		for m, op := range methods {
			got = append(got, m+" "+path)
			if op.OperationID == "" {
				t.Errorf("%s %s has no operation ID", m, path)
			}
		}
	}
	for path, methods := range want {
		for _, m := range methods {
			wanted = append(wanted, m+" "+path)
		}
	}
	slices.Sort(got)
	slices.Sort(wanted)
	if !slices.Equal(got, wanted) {
		t.Errorf("operations:\n got %v\nwant %v", got, wanted)
	}
	if doc.Info.Version != Version || doc.Components.SecuritySchemes["bearer"].Scheme != "bearer" || len(doc.Security) != 1 {
		t.Errorf("info %+v, security %+v %+v", doc.Info, doc.Components.SecuritySchemes, doc.Security)
	}

	// Without a token the document asks for none.
	doc.Security, doc.Components.SecuritySchemes = nil, nil
	if err := json.Unmarshal(newConfigFixture(t).get("/api/openapi.json", http.StatusOK).Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Security) != 0 || len(doc.Components.SecuritySchemes) != 0 {
		t.Errorf("security without a token: %+v %+v", doc.Security, doc.Components.SecuritySchemes)
	}
	// The rendered reference is the dashboard's page.
	if rec := newConfigFixture(t, withDashboard).get("/api/docs", http.StatusFound); rec.Header().Get("Location") != "/docs.html" {
		t.Errorf("/api/docs redirects to %q", rec.Header().Get("Location"))
	}
}

func TestUnknownAPIRouteIsAJSON404WhileOtherGETsGoToTheDashboard(t *testing.T) {
	f := newConfigFixture(t, withDashboard)
	for _, target := range []string{"/", "/runs/annotation-1-urgency", "/assets/app.js", "/api"} {
		if rec := f.get(target, http.StatusOK); rec.Body.String() != "dashboard page "+target {
			t.Errorf("GET %s: %s", target, rec.Body.String())
		}
	}
	for _, r := range []struct{ method, target string }{
		{http.MethodGet, "/api/nothing-here"}, {http.MethodGet, "/api/runs/annotation-1-urgency/more"},
		{http.MethodPost, "/api/overview"}, {http.MethodPost, "/somewhere"}, {http.MethodDelete, "/"},
	} {
		rec := f.call(r.method, r.target, nil, http.StatusNotFound)
		p := decodeInto[problemReply](t, rec)
		if p.Status != http.StatusNotFound || p.Title != "Not Found" || p.Detail != "no such route: "+r.target || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: %s %s", r.method, r.target, rec.Header().Get("Content-Type"), rec.Body.String())
		}
	}
}

func TestAPanickingHandlerIs500AndLogged(t *testing.T) {
	// Gin's recovery also prints the stack to its error writer, read when the server is built.
	defer func(w io.Writer) { gin.DefaultErrorWriter = w }(gin.DefaultErrorWriter)
	gin.DefaultErrorWriter = io.Discard
	f := newConfigFixture(t, func(o *Options) {
		o.Dashboard = http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("the dashboard broke") })
	})
	f.get("/", http.StatusInternalServerError)
	if logs := f.logs.String(); !strings.Contains(logs, "handler panicked") || !strings.Contains(logs, "the dashboard broke") {
		t.Errorf("logs:\n%s", logs)
	}
}
