// Package server is the api's HTTP side: the Gin router with its middleware (auth, CORS, body
// limits, request logs), the REST operations declared through huma (which derives the OpenAPI
// document and validates requests from Go types), operations routes, the WebSocket and the
// dashboard. It holds no workflow logic: runs are steered through internal/runs.
package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humagin"
	"github.com/gin-gonic/gin"
	"github.com/uber-go/tally/v4"
	"go.temporal.io/sdk/client"

	"github.com/mhannotator/mha/internal/analysis"
	"github.com/mhannotator/mha/internal/config"
	"github.com/mhannotator/mha/internal/runs"
	"github.com/mhannotator/mha/internal/store"
)

// Options are what the server needs; zero values are documented per field.
type Options struct {
	ConfigDir string
	KeysFile  string // the API keys file; "" means api_keys.json in ConfigDir
	Namespace string
	TaskQueue string
	Client    client.Client
	Store     store.Store
	Events    Events
	// Token, when set, is required as a bearer token on every route but /healthz. The api's
	// main refuses to listen beyond loopback without one.
	Token string
	// Origins may call the api from other origins (CORS); none by default.
	Origins []string
	// MaxBody bounds request bodies other than uploads; 0 means 1 MiB.
	MaxBody int64
	// MaxUpload bounds dataset uploads; 0 means 50 MiB.
	MaxUpload int64
	// ControlWait bounds how long a control request waits for the runs' answers before it
	// reports them pending; 0 means 3 s.
	ControlWait time.Duration
	// Metrics serves /metrics; nil serves an empty Prometheus page.
	Metrics http.Handler
	// Scope receives the request metrics; nil records none.
	Scope tally.Scope
	// Dashboard serves / and its assets; nil serves none.
	Dashboard http.Handler
	Logger    *slog.Logger
	// Getenv reads API keys from the environment; nil means os.Getenv.
	Getenv func(string) string
}

// Server answers the api's routes.
type Server struct {
	o      Options
	api    huma.API
	engine *gin.Engine
	// configMu serialises changes to the config files, so two edits never interleave.
	configMu sync.Mutex
	analysis *analysis.Analyzer
}

// Version is the API's version in its OpenAPI document.
const Version = "1.0.0"

// New builds the server and its routes.
func New(o Options) *Server {
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
	}
	if o.MaxUpload <= 0 {
		o.MaxUpload = 50 << 20
	}
	if o.ControlWait <= 0 {
		o.ControlWait = controlWait
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Scope == nil {
		o.Scope = tally.NoopScope
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(gin.CustomRecovery(func(c *gin.Context, err any) {
		o.Logger.Error("handler panicked", "path", c.Request.URL.Path, "panic", err)
		c.AbortWithStatus(http.StatusInternalServerError)
	}))
	s := &Server{o: o, engine: e, analysis: &analysis.Analyzer{Store: o.Store}}
	e.Use(s.logRequests, s.cors, s.authorize, s.limitBody)

	cfg := huma.DefaultConfig("Annotation platform API", Version)
	cfg.Info.Description = "Steer annotation runs, read their progress and results, and change the config. " +
		"Live events are a WebSocket at /api/ws: a `state` message on connect, then `annotation`, `run` and `quota` " +
		"events, each {id, type, data}, one JSON object per line of a text frame; reconnect with ?since=<last id> to get what was missed (api/API.md in the repository)."
	cfg.OpenAPIPath = "/api/openapi"
	// The reference is the dashboard's own page (docs.html), which renders the OpenAPI
	// document without loading anything from the network; huma's renderers load theirs
	// from a CDN.
	cfg.DocsPath = ""
	cfg.SchemasPath = "/api/schemas"
	// No $schema links in replies: clients read plain JSON.
	cfg.CreateHooks = nil
	if o.Token != "" {
		cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{"bearer": {Type: "http", Scheme: "bearer"}}
		cfg.Security = []map[string][]string{{"bearer": {}}}
	}
	s.api = humagin.New(e, cfg)

	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET("/readyz", s.ready)
	metrics := o.Metrics
	if metrics == nil {
		metrics = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		})
	}
	e.GET("/metrics", gin.WrapH(metrics))
	if o.Events != nil {
		e.GET("/api/ws", gin.WrapF(o.Events.ServeWS))
	}
	s.routes()
	if o.Dashboard != nil {
		e.GET("/api/docs", func(c *gin.Context) { c.Redirect(http.StatusFound, "/docs.html") })
		e.NoRoute(func(c *gin.Context) {
			if c.Request.Method != http.MethodGet || strings.HasPrefix(c.Request.URL.Path, "/api/") {
				abortProblem(c, http.StatusNotFound, "no such route: "+c.Request.URL.Path)
				return
			}
			// Gin answers unrouted requests 404 unless told otherwise; the dashboard's
			// pages are found.
			c.Status(http.StatusOK)
			o.Dashboard.ServeHTTP(c.Writer, c.Request)
		})
	}
	return s
}

// routes registers every REST operation; each group lives in the file named after it.
func (s *Server) routes() {
	for _, register := range registrations {
		register(s)
	}
}

// registrations are the operation groups; files add theirs in init, so a group is one file.
var registrations []func(*Server)

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

// requestBuckets are the request duration histogram's bounds, in seconds.
var requestBuckets = tally.ValueBuckets{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// logRequests logs one line per request (never a body, and never the query, which may hold
// the WebSocket's token) and counts it by route pattern, so labels stay bounded.
func (s *Server) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	took := time.Since(start)
	s.o.Logger.Info("request", "method", c.Request.Method, "path", c.Request.URL.Path,
		"status", c.Writer.Status(), "duration_ms", took.Milliseconds(), "remote", c.ClientIP())
	route := c.FullPath()
	if route == "" {
		route = "other"
	}
	scope := s.o.Scope.Tagged(map[string]string{"route": route, "method": c.Request.Method, "code": strconv.Itoa(c.Writer.Status())})
	scope.Counter("api_requests_total").Inc(1)
	scope.Histogram("api_request_duration_seconds", requestBuckets).RecordValue(took.Seconds())
}

// cors answers cross-origin requests only for configured origins.
func (s *Server) cors(c *gin.Context) {
	origin := c.GetHeader("Origin")
	if origin == "" || !slices.Contains(s.o.Origins, origin) {
		c.Next()
		return
	}
	h := c.Writer.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Vary", "Origin")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE")
	if c.Request.Method == http.MethodOptions {
		c.AbortWithStatus(http.StatusNoContent)
		return
	}
	c.Next()
}

// tokenCookie keeps the token for a browser that opened /?token=..., so the page's own
// requests and its WebSocket carry it.
const tokenCookie = "mha_token"

// authorize checks the bearer token, when one is set, on every route but /healthz.
func (s *Server) authorize(c *gin.Context) {
	if s.o.Token == "" || c.Request.URL.Path == "/healthz" || c.Request.Method == http.MethodOptions {
		c.Next()
		return
	}
	given, fromQuery := strings.TrimPrefix(c.GetHeader("Authorization"), "Bearer "), false
	if given == "" || given == c.GetHeader("Authorization") {
		given = ""
		// The query first: a browser opening a new link may still hold an older token.
		if v := c.Query("token"); v != "" {
			given, fromQuery = v, true
		} else if v, err := c.Cookie(tokenCookie); err == nil {
			given = v
		}
	}
	if subtle.ConstantTimeCompare([]byte(given), []byte(s.o.Token)) != 1 {
		c.Header("WWW-Authenticate", `Bearer realm="api"`)
		abortProblem(c, http.StatusUnauthorized, "this api needs a bearer token: send Authorization: Bearer <token>")
		return
	}
	if fromQuery {
		c.SetSameSite(http.SameSiteStrictMode)
		c.SetCookie(tokenCookie, given, 0, "/", "", c.Request.TLS != nil, true)
	}
	c.Next()
}

// limitBody bounds request bodies; uploads have their own, larger bound.
func (s *Server) limitBody(c *gin.Context) {
	limit, upload := s.o.MaxBody, c.Request.URL.Path == "/api/dataset"
	if upload {
		limit = s.o.MaxUpload
	}
	tooLarge := "the body is larger than the limit of " + humanBytes(limit)
	if c.Request.ContentLength > limit {
		abortProblem(c, http.StatusRequestEntityTooLarge, tooLarge)
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	if c.Request.ContentLength < 0 && !upload {
		// huma answers a body cut off while it reads it with a 500: a body of unknown length
		// is read here, so one too large is a 413 as well. (Uploads handle the cut-off.)
		body, err := io.ReadAll(c.Request.Body)
		var maxErr *http.MaxBytesError
		switch {
		case errors.As(err, &maxErr):
			abortProblem(c, http.StatusRequestEntityTooLarge, tooLarge)
			return
		case err != nil:
			abortProblem(c, http.StatusBadRequest, "the body cannot be read: "+err.Error())
			return
		}
		c.Request.Body, c.Request.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	c.Next()
}

// abortProblem ends the request with problem details, as huma's own errors are.
func abortProblem(c *gin.Context, status int, detail string) {
	c.Header("Content-Type", "application/problem+json")
	c.AbortWithStatusJSON(status, huma.ErrorModel{Title: http.StatusText(status), Status: status, Detail: detail})
}

func humanBytes(n int64) string {
	if n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// ready answers 200 once Temporal and the store answer (and the event hub has its first
// state), 503 with the reason otherwise.
func (s *Server) ready(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 3*time.Second)
	defer cancel()
	checks := gin.H{}
	ok := true
	if _, err := s.o.Client.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		checks["temporal"], ok = err.Error(), false
	} else {
		checks["temporal"] = "ok"
	}
	if _, err := s.o.Store.CountSamples(ctx); err != nil {
		checks["store"], ok = err.Error(), false
	} else {
		checks["store"] = "ok"
	}
	if s.o.Events != nil {
		if s.o.Events.Ready() {
			checks["events"] = "ok"
		} else {
			checks["events"], ok = "loading the runs' first state", false
		}
	}
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	c.JSON(code, gin.H{"ready": ok, "checks": checks})
}

// config reads the config files as they are now: the api may have changed them, or a person.
func (s *Server) config() (*config.Config, error) {
	return config.Load(config.Options{Dir: s.o.ConfigDir, Keys: s.o.KeysFile, Getenv: s.o.Getenv})
}

// controller steers runs with cfg.
func (s *Server) controller(cfg *config.Config) *runs.Controller {
	return &runs.Controller{Client: s.o.Client, Config: cfg, Store: s.o.Store, Namespace: s.o.Namespace, TaskQueue: s.o.TaskQueue}
}
