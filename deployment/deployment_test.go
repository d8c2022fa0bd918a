package deployment_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/mhannotator/mha/deployment"
	"github.com/mhannotator/mha/internal/config"
)

// The tests run in deployment/; the compose file, .env and config/ are one level up.
const (
	composeFile = "../docker-compose.yml"
	dotEnvFile  = "../.env"
	dockerfile  = "Dockerfile"
)

// The platform's search attributes, as scripts/run.sh registers them on the dev server.
var searchAttributes = map[string]string{
	"Annotator":    "Keyword",
	"Domain":       "Keyword",
	"RunStatus":    "Keyword",
	"RunChangedAt": "Datetime",
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readDotEnv reads KEY=VALUE lines, as compose does for the simple values .env holds.
func readDotEnv(t *testing.T) map[string]string {
	t.Helper()
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, dotEnvFile)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(v, `"'$ `) {
			t.Fatalf("%s:%d: %q: want KEY=value with a plain value", dotEnvFile, n, line)
		}
		if _, dup := env[k]; dup {
			t.Errorf("%s:%d: %s is set twice", dotEnvFile, n, k)
		}
		env[k] = v
	}
	return env
}

// requestTimeout is request_timeout_seconds of the settings in dir, loaded by the platform's
// own config package (so the file is valid too).
func requestTimeout(t *testing.T, dir string) time.Duration {
	t.Helper()
	cfg, err := config.Load(config.Options{Dir: dir, Keys: filepath.Join(t.TempDir(), "none.json"), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatalf("config %s: %v", dir, err)
	}
	return cfg.Global.RequestTimeout
}

// stopGrace is the worker's stop grace as MHA_STOP_GRACE sets it, or its default.
func stopGrace(t *testing.T, env map[string]string, reqTimeout time.Duration) time.Duration {
	t.Helper()
	v, ok := env["MHA_STOP_GRACE"]
	if !ok {
		return reqTimeout + 5*time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("MHA_STOP_GRACE=%q: %v", v, err)
	}
	return d
}

// ---------------------------------------------------------------------------------------
// docker-compose.yml

// composeProject is the part of `docker-compose config`'s normalized output the tests read.
type composeProject struct {
	Services map[string]composeService `json:"services"`
	Secrets  map[string]struct {
		File string `json:"file"`
	} `json:"secrets"`
}

type composeService struct {
	Image string `json:"image"`
	Build *struct {
		Context    string            `json:"context"`
		Dockerfile string            `json:"dockerfile"`
		Target     string            `json:"target"`
		Args       map[string]string `json:"args"`
	} `json:"build"`
	ContainerName string `json:"container_name"`
	// 1.29 writes ports as "127.0.0.1:8080:8080/tcp", Compose v2 as objects.
	Ports     []any `json:"ports"`
	DependsOn map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Healthcheck *struct {
		Test    []string `json:"test"`
		Disable bool     `json:"disable"`
	} `json:"healthcheck"`
	Environment     map[string]*string `json:"environment"`
	Secrets         []any              `json:"secrets"`
	Volumes         []any              `json:"volumes"`
	Entrypoint      any                `json:"entrypoint"`
	Command         any                `json:"command"`
	StopGracePeriod string             `json:"stop_grace_period"`
	Profiles        []string           `json:"profiles"`
	Restart         string             `json:"restart"`
}

func (s composeService) env(name string) (string, bool) {
	v, ok := s.Environment[name]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

func (s composeService) envMap() map[string]string {
	m := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			m[k] = *v
		}
	}
	return m
}

// script is the service's entrypoint and command as one text.
func (s composeService) script() string {
	var parts []string
	for _, v := range []any{s.Entrypoint, s.Command} {
		switch v := v.(type) {
		case string:
			parts = append(parts, v)
		case []any:
			for _, e := range v {
				parts = append(parts, fmt.Sprint(e))
			}
		}
	}
	// The normalized output escapes $ as $$ again.
	return strings.ReplaceAll(strings.Join(parts, " "), "$$", "$")
}

// mounts maps each bind or volume mount's target to its source.
func (s composeService) mounts(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, v := range s.Volumes {
		switch v := v.(type) {
		case string: // source:target[:mode]
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Fatalf("volume %q: want source:target", v)
			}
			m[parts[1]] = parts[0]
		case map[string]any:
			m[fmt.Sprint(v["target"])] = fmt.Sprint(v["source"])
		}
	}
	return m
}

func (s composeService) secretNames() []string {
	var names []string
	for _, v := range s.Secrets {
		switch v := v.(type) {
		case string:
			names = append(names, v)
		case map[string]any:
			names = append(names, fmt.Sprint(v["source"]))
		}
	}
	return names
}

// publishedTargets are the container ports the service publishes on the host.
func (s composeService) publishedTargets() []string {
	var out []string
	for _, p := range s.Ports {
		switch p := p.(type) {
		case string:
			p, _, _ = strings.Cut(p, "/")
			out = append(out, p[strings.LastIndex(p, ":")+1:])
		case map[string]any:
			out = append(out, fmt.Sprint(p["target"]))
		}
	}
	return out
}

// composeCommand is the compose CLI: Debian's docker-compose (1.29), or the docker compose
// plugin. Without either the tests fail, since CI installs docker-compose; MHA_TEST_COMPOSE=off
// skips them.
func composeCommand(t *testing.T) []string {
	t.Helper()
	if os.Getenv("MHA_TEST_COMPOSE") == "off" {
		t.Skip("MHA_TEST_COMPOSE=off: docker-compose.yml is not checked by compose itself")
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	if p, err := exec.LookPath("docker"); err == nil && exec.Command(p, "compose", "version").Run() == nil {
		return []string{p, "compose"}
	}
	t.Fatal("neither docker-compose nor the docker compose plugin is installed: install Debian's docker-compose " +
		"(apt-get install -y docker-compose, as .ci/run does), or set MHA_TEST_COMPOSE=off to skip the compose checks")
	return nil
}

// loadCompose runs `docker-compose config` (with the tools profile, so the starter is in) and
// decodes its normalized output. A variable that .env does not set is an error.
func loadCompose(t *testing.T) composeProject {
	t.Helper()
	cmdline := append(composeCommand(t), "--profile", "tools", "-f", composeFile, "config")
	cmd := exec.Command(cmdline[0], cmdline[1:]...)
	// Only .env may set the file's variables; a developer's own MHA_* must not hide a gap.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "MHA_") && !strings.HasPrefix(k, "COMPOSE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmdline, " "), err, stderr.String())
	}
	if strings.Contains(stderr.String(), "not set") {
		t.Errorf("%s warns about variables .env does not set:\n%s", strings.Join(cmdline, " "), stderr.String())
	}
	var p composeProject
	if err := yaml.Unmarshal(stdout.Bytes(), &p); err != nil {
		t.Fatalf("decoding the output of %s: %v", strings.Join(cmdline, " "), err)
	}
	return p
}

func TestComposeWiring(t *testing.T) {
	p := loadCompose(t)
	svc := func(t *testing.T, name string) composeService {
		t.Helper()
		s, ok := p.Services[name]
		if !ok {
			t.Fatalf("no service %s", name)
		}
		return s
	}
	platform := []string{"worker", "api", "starter"}
	longRunning := []string{"postgresql", "temporal", "temporal-ui", "worker", "api", "prometheus", "grafana"}
	oneShots := []string{"temporal-schema", "temporal-admin-tools", "starter"}

	t.Run("every service of the platform is there", func(t *testing.T) {
		want := slices.Concat(longRunning, oneShots)
		for _, name := range want {
			svc(t, name)
		}
		for name := range p.Services {
			if !slices.Contains(want, name) {
				t.Errorf("service %s is not known to this test; add it to the lists above", name)
			}
		}
	})

	t.Run("the worker can be scaled", func(t *testing.T) {
		w := svc(t, "worker")
		if w.ContainerName != "" {
			t.Errorf("worker has container_name %q: --scale worker=3 needs none", w.ContainerName)
		}
		if len(w.Ports) > 0 {
			t.Errorf("worker publishes ports %v: replicas would fight over the host port", w.Ports)
		}
	})

	t.Run("the platform starts after postgresql, temporal and the namespace setup", func(t *testing.T) {
		want := map[string]string{
			"postgresql":           "service_healthy",
			"temporal":             "service_healthy",
			"temporal-admin-tools": "service_completed_successfully",
		}
		for _, name := range platform {
			s := svc(t, name)
			for dep, cond := range want {
				if got := s.DependsOn[dep].Condition; got != cond {
					t.Errorf("%s depends on %s with condition %q, want %q", name, dep, got, cond)
				}
			}
		}
	})

	t.Run("every dependency has what its condition waits for", func(t *testing.T) {
		for name, s := range p.Services {
			for dep, d := range s.DependsOn {
				target := svc(t, dep)
				switch d.Condition {
				case "service_healthy":
					if target.Healthcheck == nil || len(target.Healthcheck.Test) == 0 {
						t.Errorf("%s waits for %s to be healthy, but %s has no health check", name, dep, dep)
					}
				case "service_completed_successfully":
					if !slices.Contains(oneShots, dep) || target.Restart == "always" || target.Restart == "unless-stopped" {
						t.Errorf("%s waits for %s to complete, but %s is not a one-shot job (restart %q)", name, dep, dep, target.Restart)
					}
				default:
					t.Errorf("%s depends on %s with condition %q: want service_healthy or service_completed_successfully", name, dep, d.Condition)
				}
			}
		}
		if got := svc(t, "temporal").DependsOn["temporal-schema"].Condition; got != "service_completed_successfully" {
			t.Errorf("temporal waits for temporal-schema with %q, want service_completed_successfully", got)
		}
		if got := svc(t, "temporal-admin-tools").DependsOn["temporal"].Condition; got != "service_healthy" {
			t.Errorf("temporal-admin-tools waits for temporal with %q, want service_healthy", got)
		}
	})

	t.Run("every long-running service has a health check", func(t *testing.T) {
		for _, name := range longRunning {
			s := svc(t, name)
			if s.Healthcheck == nil || s.Healthcheck.Disable || len(s.Healthcheck.Test) < 2 {
				t.Errorf("%s has no health check", name)
			}
			if s.Restart == "" || s.Restart == "no" {
				t.Errorf("%s has restart %q: a long-running service should come back", name, s.Restart)
			}
		}
		for name, path := range map[string]string{"worker": "/readyz", "api": "/healthz"} {
			if test := strings.Join(svc(t, name).Healthcheck.Test, " "); !strings.Contains(test, path) {
				t.Errorf("%s health check %q does not ask %s", name, test, path)
			}
		}
	})

	t.Run("the worker's stop grace period outlasts a request and the stop grace", func(t *testing.T) {
		w := svc(t, "worker")
		period, err := time.ParseDuration(w.StopGracePeriod)
		if err != nil {
			t.Fatalf("worker stop_grace_period %q: %v", w.StopGracePeriod, err)
		}
		req := requestTimeout(t, "../config")
		grace := stopGrace(t, w.envMap(), req)
		if period <= req+grace {
			t.Errorf("worker stop_grace_period %s is not longer than request timeout %s + stop grace %s", period, req, grace)
		}
	})

	t.Run("the worker serves health and metrics where the checks and Prometheus look", func(t *testing.T) {
		w := svc(t, "worker")
		listen, _ := w.env("MHA_HEALTH_LISTEN")
		host, port, err := net.SplitHostPort(listen)
		if err != nil || (host != "0.0.0.0" && host != "") {
			t.Fatalf("worker MHA_HEALTH_LISTEN=%q: want 0.0.0.0:PORT, reachable by Prometheus", listen)
		}
		if test := strings.Join(w.Healthcheck.Test, " "); !strings.Contains(test, ":"+port+"/") {
			t.Errorf("worker health check %q does not use port %s", test, port)
		}
		prom := prometheusConfig(t, svc(t, "prometheus"))
		job := prom.job(t, "worker")
		if len(job.DNSSDConfigs) == 0 || !slices.Contains(job.DNSSDConfigs[0].Names, "worker") || strconv.Itoa(job.DNSSDConfigs[0].Port) != port {
			t.Errorf("Prometheus job %s: want dns_sd_configs on name worker, port %s, so that every replica is scraped; got %+v", job.JobName, port, job.DNSSDConfigs)
		}
	})

	t.Run("the api is published with a token and scraped with it", func(t *testing.T) {
		a := svc(t, "api")
		if !slices.Contains(a.publishedTargets(), "8080") {
			t.Errorf("api publishes %v, want container port 8080", a.Ports)
		}
		if tok, _ := a.env("MHA_API_TOKEN"); tok == "" {
			t.Error("api has no MHA_API_TOKEN: it refuses to listen beyond loopback without one")
		}
		if listen, _ := a.env("MHA_LISTEN"); !strings.HasSuffix(listen, ":8080") {
			t.Errorf("api MHA_LISTEN=%q, want port 8080", listen)
		}
		promSvc := svc(t, "prometheus")
		prom := prometheusConfig(t, promSvc)
		job := prom.job(t, "api")
		if job.Authorization == nil || job.Authorization.CredentialsFile == "" {
			t.Fatalf("Prometheus job %s sends no bearer token: the api's /metrics asks for one", job.JobName)
		}
		if !strings.Contains(promSvc.script(), job.Authorization.CredentialsFile) {
			t.Errorf("the prometheus service does not write %s, the api token file its config reads", job.Authorization.CredentialsFile)
		}
		var targets []string
		for _, sd := range job.DNSSDConfigs {
			for _, n := range sd.Names {
				targets = append(targets, fmt.Sprintf("%s:%d", n, sd.Port))
			}
		}
		for _, sc := range job.StaticConfigs {
			targets = append(targets, sc.Targets...)
		}
		if !slices.Contains(targets, "api:8080") {
			t.Errorf("Prometheus job %s scrapes %v, want api:8080", job.JobName, targets)
		}
	})

	t.Run("temporal-admin-tools registers the runs' search attributes", func(t *testing.T) {
		script := svc(t, "temporal-admin-tools").script()
		if !strings.Contains(script, "temporal operator search-attribute create") {
			t.Fatalf("temporal-admin-tools does not run `temporal operator search-attribute create`:\n%s", script)
		}
		for name, typ := range searchAttributes {
			if !regexp.MustCompile(`--name\s+` + name + `\s+--type\s+` + typ + `\b`).MatchString(script) {
				t.Errorf("temporal-admin-tools does not register %s as %s:\n%s", name, typ, script)
			}
		}
		if !strings.Contains(script, "temporal operator namespace create") {
			t.Errorf("temporal-admin-tools does not create the namespace:\n%s", script)
		}
	})

	t.Run("API keys are a secret, never an environment value", func(t *testing.T) {
		sec, ok := p.Secrets["api_keys"]
		if !ok || !strings.HasSuffix(filepath.ToSlash(sec.File), "config/api_keys.json") {
			t.Fatalf("secret api_keys: want file ./config/api_keys.json, got %+v", p.Secrets)
		}
		for _, name := range platform {
			s := svc(t, name)
			if !slices.Contains(s.secretNames(), "api_keys") {
				t.Errorf("%s does not get the api_keys secret", name)
			}
			if f, _ := s.env("MHA_KEYS_FILE"); f != "/run/secrets/api_keys" {
				t.Errorf("%s MHA_KEYS_FILE=%q, want /run/secrets/api_keys", name, f)
			}
		}
		for name, s := range p.Services {
			for k := range s.Environment {
				if strings.HasPrefix(k, config.KeyEnvPrefix) || k == "MHA_TEMPORAL_API_KEY" {
					t.Errorf("%s sets %s in its environment: keys come from the secret file", name, k)
				}
			}
		}
	})

	t.Run("the store has its own database on the compose PostgreSQL", func(t *testing.T) {
		db, _ := svc(t, "worker").env("MHA_DB")
		m := regexp.MustCompile(`^postgres://(\w+)@postgresql:5432/(\w+)(\?.*)?$`).FindStringSubmatch(db)
		if m == nil {
			t.Fatalf("worker MHA_DB=%q: want postgres://USER@postgresql:5432/DB, without a password", db)
		}
		user, dbname := m[1], m[2]
		if dbname == "temporal" || dbname == "temporal_visibility" || dbname == "postgres" {
			t.Errorf("MHA_DB uses database %s, which is Temporal's or the server's", dbname)
		}
		for _, name := range platform {
			if got, _ := svc(t, name).env("MHA_DB"); got != db {
				t.Errorf("%s MHA_DB=%q, worker's is %q", name, got, db)
			}
			if pw, _ := svc(t, name).env("PGPASSWORD"); pw == "" {
				t.Errorf("%s has no PGPASSWORD for role %s", name, user)
			}
		}
		var initScript string
		for target, source := range svc(t, "postgresql").mounts(t) {
			if strings.HasPrefix(target, "/docker-entrypoint-initdb.d/") {
				initScript = string(readFile(t, source))
			}
		}
		if !strings.Contains(initScript, "CREATE ROLE "+user) || !strings.Contains(initScript, "CREATE DATABASE "+dbname+" OWNER "+user) {
			t.Errorf("no script in postgresql's /docker-entrypoint-initdb.d creates role %s and database %s:\n%s", user, dbname, initScript)
		}
	})

	t.Run("the config directory is mounted read-only at MHA_CONFIG", func(t *testing.T) {
		for _, name := range platform {
			s := svc(t, name)
			dir, _ := s.env("MHA_CONFIG")
			src, ok := s.mounts(t)[dir]
			if dir != "/etc/mha" || !ok || filepath.Base(src) != "config" {
				t.Errorf("%s: MHA_CONFIG=%q, mounts %v: want ./config at /etc/mha", name, dir, s.mounts(t))
			}
		}
	})

	t.Run("the platform's images are built from deployment/Dockerfile", func(t *testing.T) {
		for _, name := range platform {
			s := svc(t, name)
			if s.Build == nil || filepath.ToSlash(s.Build.Dockerfile) != "deployment/Dockerfile" || s.Build.Target != name {
				t.Errorf("%s: build %+v, want deployment/Dockerfile, target %s", name, s.Build, name)
			}
		}
		// The images have no shell: a health check runs a program the Dockerfile puts there.
		df := string(readFile(t, dockerfile))
		for _, name := range []string{"worker", "api"} {
			test := svc(t, name).Healthcheck.Test
			if len(test) < 2 || test[0] != "CMD" || !strings.Contains(df, " "+test[1]+"\n") {
				t.Errorf("%s health check %q: want [CMD, a program the Dockerfile copies into the image, ...]", name, test)
			}
		}
		if !slices.Contains(svc(t, "starter").Profiles, "tools") {
			t.Error("starter is not in the tools profile: `docker compose up` would run it as a service")
		}
	})

	t.Run("temporal reads the dynamic config of deployment/temporal", func(t *testing.T) {
		s := svc(t, "temporal")
		path, _ := s.env("DYNAMIC_CONFIG_FILE_PATH")
		src, ok := s.mounts(t)["/etc/temporal/config/dynamicconfig"]
		if !ok {
			t.Fatalf("temporal mounts no dynamic config directory: %v", s.mounts(t))
		}
		if path != "config/dynamicconfig/development-sql.yaml" {
			t.Errorf("DYNAMIC_CONFIG_FILE_PATH=%q", path)
		}
		if _, err := os.Stat(filepath.Join(src, "development-sql.yaml")); err != nil {
			t.Error(err)
		}
	})

	t.Run("grafana is provisioned with the data source and the dashboards", func(t *testing.T) {
		s := svc(t, "grafana")
		m := s.mounts(t)
		prov, ok := m["/etc/grafana/provisioning"]
		if !ok {
			t.Fatalf("grafana mounts no provisioning directory: %v", m)
		}
		var providers struct {
			Providers []struct {
				Options struct {
					Path string `json:"path"`
				} `json:"options"`
			} `json:"providers"`
		}
		if err := yaml.Unmarshal(readFile(t, filepath.Join(prov, "dashboards", "mha.yml")), &providers); err != nil {
			t.Fatal(err)
		}
		for _, pr := range providers.Providers {
			src, ok := m[pr.Options.Path]
			if !ok {
				t.Errorf("the dashboard provider reads %s, which grafana does not mount", pr.Options.Path)
				continue
			}
			if _, err := os.Stat(filepath.Join(src, "mha.json")); err != nil {
				t.Errorf("%s mounted at %s: %v", src, pr.Options.Path, err)
			}
		}
		ds := datasources(t)
		if len(ds) != 1 || ds[0].URL != "http://prometheus:9090" {
			t.Errorf("data sources %+v: want one, at http://prometheus:9090", ds)
		}
	})
}

// prometheusFile is the part of a Prometheus config the tests read.
type prometheusFile struct {
	ScrapeConfigs []scrapeConfig `json:"scrape_configs"`
}

type scrapeConfig struct {
	JobName       string `json:"job_name"`
	MetricsPath   string `json:"metrics_path"`
	Authorization *struct {
		Type            string `json:"type"`
		CredentialsFile string `json:"credentials_file"`
	} `json:"authorization"`
	DNSSDConfigs []struct {
		Names []string `json:"names"`
		Type  string   `json:"type"`
		Port  int      `json:"port"`
	} `json:"dns_sd_configs"`
	StaticConfigs []struct {
		Targets []string `json:"targets"`
	} `json:"static_configs"`
	KubernetesSDConfigs []struct {
		Role string `json:"role"`
	} `json:"kubernetes_sd_configs"`
	RelabelConfigs []struct {
		SourceLabels []string `json:"source_labels"`
		Regex        string   `json:"regex"`
		Action       string   `json:"action"`
	} `json:"relabel_configs"`
}

// job is the scrape job whose name contains part.
func (p prometheusFile) job(t *testing.T, part string) scrapeConfig {
	t.Helper()
	for _, j := range p.ScrapeConfigs {
		if strings.Contains(j.JobName, part) {
			return j
		}
	}
	t.Fatalf("no Prometheus scrape job for %s", part)
	return scrapeConfig{}
}

func readPrometheusFile(t *testing.T, path string) prometheusFile {
	t.Helper()
	var p prometheusFile
	if err := yaml.Unmarshal(readFile(t, path), &p); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return p
}

// prometheusConfig is the config file the prometheus service mounts.
func prometheusConfig(t *testing.T, s composeService) prometheusFile {
	t.Helper()
	src, ok := s.mounts(t)["/etc/prometheus/prometheus.yml"]
	if !ok {
		t.Fatalf("prometheus mounts no /etc/prometheus/prometheus.yml: %v", s.mounts(t))
	}
	if !strings.Contains(s.script(), "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("prometheus does not start with --config.file=/etc/prometheus/prometheus.yml: %s", s.script())
	}
	return readPrometheusFile(t, src)
}

type grafanaDatasource struct {
	Name      string `json:"name"`
	UID       string `json:"uid"`
	Type      string `json:"type"`
	URL       string `json:"url"`
	IsDefault bool   `json:"isDefault"`
}

// datasources are the data sources Grafana is provisioned with.
func datasources(t *testing.T) []grafanaDatasource {
	t.Helper()
	var f struct {
		APIVersion  int                 `json:"apiVersion"`
		Datasources []grafanaDatasource `json:"datasources"`
	}
	if err := yaml.Unmarshal(readFile(t, "grafana/provisioning/datasources/prometheus.yml"), &f); err != nil {
		t.Fatal(err)
	}
	if f.APIVersion != 1 {
		t.Errorf("datasources apiVersion %d, want 1", f.APIVersion)
	}
	return f.Datasources
}

// imageVar finds ${VAR} references.
var imageVar = regexp.MustCompile(`\$\{([A-Z0-9_]+)\}`)

// TestComposeImagesArePinnedInDotEnv reads docker-compose.yml as written: every image and
// build argument takes its version from a variable that .env sets, and .env pins each one.
func TestComposeImagesArePinnedInDotEnv(t *testing.T) {
	env := readDotEnv(t)
	var raw struct {
		Services map[string]struct {
			Image string `json:"image"`
			Build *struct {
				Args map[string]string `json:"args"`
			} `json:"build"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal(readFile(t, composeFile), &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw.Services) == 0 {
		t.Fatal("no services in docker-compose.yml")
	}
	used := map[string]bool{}
	check := func(where, ref string) {
		vars := imageVar.FindAllStringSubmatch(ref, -1)
		// What is left without the variables: a repository and the colon before the tag.
		literal := imageVar.ReplaceAllString(ref, "")
		if len(vars) == 0 || strings.Contains(literal, "@") || strings.Count(literal, ":") > 1 ||
			(strings.Contains(literal, ":") && !strings.HasSuffix(literal, ":")) {
			t.Errorf("%s: %q: want the version from a ${VAR} of .env, no literal tag or digest", where, ref)
		}
		for _, v := range vars {
			used[v[1]] = true
			if env[v[1]] == "" {
				t.Errorf("%s: %q uses %s, which .env does not set", where, ref, v[1])
			}
		}
	}
	for name, s := range raw.Services {
		if s.Image == "" {
			t.Errorf("service %s has no image", name)
			continue
		}
		check("service "+name, s.Image)
		if s.Build != nil {
			for arg, v := range s.Build.Args {
				check(fmt.Sprintf("service %s build arg %s", name, arg), v)
			}
		}
	}
	// .env pins: a version with a digit, or an image reference with a tag that is not latest.
	// MHA_VERSION is no pin but the tag this repository's own builds get.
	for k := range used {
		v := env[k]
		switch {
		case k == "MHA_VERSION":
		case strings.HasSuffix(k, "_VERSION"):
			if !regexp.MustCompile(`\d`).MatchString(v) || v == "latest" {
				t.Errorf(".env %s=%q is not a pinned version", k, v)
			}
		case strings.HasSuffix(k, "_IMAGE"):
			_, tag, ok := strings.Cut(v[strings.LastIndex(v, "/")+1:], ":")
			if !ok || tag == "" || tag == "latest" {
				t.Errorf(".env %s=%q: want image:tag with a fixed tag", k, v)
			}
		}
	}

	t.Run("the Dockerfile's defaults are the versions of .env", func(t *testing.T) {
		df := string(readFile(t, dockerfile))
		args := map[string]string{}
		for _, m := range regexp.MustCompile(`(?m)^ARG\s+(\w+)=(\S+)`).FindAllStringSubmatch(df, -1) {
			args[m[1]] = m[2]
		}
		for _, k := range []string{"GO_IMAGE", "RUNTIME_IMAGE"} {
			if args[k] == "" || args[k] != env[k] {
				t.Errorf("Dockerfile ARG %s=%q, .env %s=%q: keep them equal", k, args[k], k, env[k])
			}
		}
		stages := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?`).FindAllStringSubmatch(df, -1) {
			from := m[1]
			if !stages[from] && !regexp.MustCompile(`^\$\{\w+\}$`).MatchString(from) {
				t.Errorf("Dockerfile FROM %s: want an earlier stage or ${ARG} pinned by .env", from)
			}
			stages[m[2]] = true
		}
		for _, target := range []string{"worker", "api", "starter"} {
			if !stages[target] {
				t.Errorf("Dockerfile has no stage %s", target)
			}
		}
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, "USER 65532:65532", "/etc/mha"} {
			if !strings.Contains(df, want) {
				t.Errorf("Dockerfile lacks %s", want)
			}
		}
		if strings.Contains(df, "go run") {
			t.Error("Dockerfile uses go run")
		}
	})

	t.Run(".dockerignore keeps keys, stores, binaries and history out", func(t *testing.T) {
		lines := strings.Fields(string(readFile(t, "../.dockerignore")))
		for _, want := range []string{".git", "bin/", "data/", "config/api_keys.json"} {
			if !slices.Contains(lines, want) {
				t.Errorf(".dockerignore lacks %s", want)
			}
		}
	})
}

// ---------------------------------------------------------------------------------------
// Kubernetes

// kustomization is the part of a kustomization.yaml these manifests use; decoding is strict,
// so a misspelt field fails.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	} `json:"labels,omitempty"`
	Resources          []string    `json:"resources"`
	ConfigMapGenerator []generator `json:"configMapGenerator,omitempty"`
	SecretGenerator    []generator `json:"secretGenerator,omitempty"`
	Images             []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
	Replicas []struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	} `json:"replicas,omitempty"`
}

type generator struct {
	Name     string   `json:"name"`
	Behavior string   `json:"behavior,omitempty"`
	Files    []string `json:"files,omitempty"`
	Literals []string `json:"literals,omitempty"`
	Options  *struct {
		DisableNameSuffixHash bool `json:"disableNameSuffixHash"`
	} `json:"options,omitempty"`
}

func readKustomization(t *testing.T, dir string) kustomization {
	t.Helper()
	var k kustomization
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join(dir, "kustomization.yaml")), &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("%s/kustomization.yaml: apiVersion %q kind %q", dir, k.APIVersion, k.Kind)
	}
	return k
}

// k8sObjects are the decoded objects of one directory's manifests, by kind.
type k8sObjects struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	secrets     map[string]*corev1.Secret
	configMaps  map[string]*corev1.ConfigMap
	namespaces  map[string]*corev1.Namespace
}

// decodeManifests decodes every document of data strictly into its Kubernetes type.
func decodeManifests(t *testing.T, where string, data []byte, into *k8sObjects) {
	t.Helper()
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%s document %d: %v", where, i, err)
		}
		strict := func(obj any) {
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s document %d (%s): %v", where, i, meta.Kind, err)
			}
		}
		switch meta.APIVersion + " " + meta.Kind {
		case "apps/v1 Deployment":
			var o appsv1.Deployment
			strict(&o)
			into.deployments[o.Name] = &o
		case "v1 Service":
			var o corev1.Service
			strict(&o)
			into.services[o.Name] = &o
		case "v1 Secret":
			var o corev1.Secret
			strict(&o)
			into.secrets[o.Name] = &o
		case "v1 ConfigMap":
			var o corev1.ConfigMap
			strict(&o)
			into.configMaps[o.Name] = &o
		case "v1 Namespace":
			var o corev1.Namespace
			strict(&o)
			into.namespaces[o.Name] = &o
		default:
			t.Fatalf("%s document %d: %s %s is not a kind this test knows", where, i, meta.APIVersion, meta.Kind)
		}
	}
}

func newK8sObjects() *k8sObjects {
	return &k8sObjects{
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		secrets:     map[string]*corev1.Secret{},
		configMaps:  map[string]*corev1.ConfigMap{},
		namespaces:  map[string]*corev1.Namespace{},
	}
}

const (
	k8sBase = "k8s/base"
	k8sDev  = "k8s/overlays/dev"
)

// loadK8sDir decodes the manifests a kustomization lists and checks that it lists every file
// of its directory: resources, and generator files under subdirectories.
func loadK8sDir(t *testing.T, dir string) (kustomization, *k8sObjects) {
	t.Helper()
	k := readKustomization(t, dir)
	objs := newK8sObjects()
	listed := map[string]bool{"kustomization.yaml": true}
	for _, r := range k.Resources {
		if fi, err := os.Stat(filepath.Join(dir, r)); err == nil && fi.IsDir() {
			continue // another kustomization, checked on its own
		}
		listed[filepath.ToSlash(filepath.Clean(r))] = true
		decodeManifests(t, filepath.Join(dir, r), readFile(t, filepath.Join(dir, r)), objs)
	}
	for _, g := range slices.Concat(k.ConfigMapGenerator, k.SecretGenerator) {
		for _, f := range g.Files {
			_, path, ok := strings.Cut(f, "=")
			if !ok {
				path = f
			}
			if _, err := os.Stat(filepath.Join(dir, path)); err != nil {
				t.Errorf("%s: generator %s: %v", dir, g.Name, err)
			}
			listed[filepath.ToSlash(filepath.Clean(path))] = true
		}
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if !listed[filepath.ToSlash(rel)] {
			t.Errorf("%s/%s is not listed in %s/kustomization.yaml", dir, filepath.ToSlash(rel), dir)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return k, objs
}

func TestK8sKustomizationsListEveryFile(t *testing.T) {
	for _, dir := range []string{k8sBase, k8sDev} {
		t.Run(dir, func(t *testing.T) {
			k, _ := loadK8sDir(t, dir)
			if len(k.Resources) == 0 {
				t.Error("no resources")
			}
		})
	}
	t.Run("the dev overlay builds on the base", func(t *testing.T) {
		k := readKustomization(t, k8sDev)
		if !slices.Contains(k.Resources, "../../base") {
			t.Errorf("resources %v lack ../../base", k.Resources)
		}
	})
}

// container is the named container of a Deployment.
func container(t *testing.T, d *appsv1.Deployment, name string) corev1.Container {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("Deployment %s has no container %s", d.Name, name)
	return corev1.Container{}
}

func envVar(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// probePort resolves a probe's port against the container's ports.
func probePort(t *testing.T, c corev1.Container, p *corev1.Probe, kind string) int32 {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Fatalf("container %s has no HTTP %s probe", c.Name, kind)
	}
	for _, cp := range c.Ports {
		if (p.HTTPGet.Port.StrVal != "" && cp.Name == p.HTTPGet.Port.StrVal) || (p.HTTPGet.Port.StrVal == "" && cp.ContainerPort == p.HTTPGet.Port.IntVal) {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %s: %s probe port %s is none of its ports %v", c.Name, kind, p.HTTPGet.Port.String(), c.Ports)
	return 0
}

func checkResources(t *testing.T, c corev1.Container) {
	t.Helper()
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[res]
		lim, okLim := c.Resources.Limits[res]
		if !okReq || !okLim {
			t.Errorf("container %s: %s request or limit missing: %+v", c.Name, res, c.Resources)
			continue
		}
		if req.Cmp(lim) > 0 {
			t.Errorf("container %s: %s request %s above limit %s", c.Name, res, req.String(), lim.String())
		}
	}
}

// checkSecretFileMount checks that env names a file inside a mounted Secret volume that holds
// that key, and returns the Secret's name.
func checkSecretFileMount(t *testing.T, d *appsv1.Deployment, c corev1.Container, env string) string {
	t.Helper()
	e := envVar(c, env)
	if e == nil || e.Value == "" {
		t.Fatalf("container %s has no %s", c.Name, env)
	}
	for _, m := range c.VolumeMounts {
		if filepath.Dir(e.Value) != m.MountPath {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			file := filepath.Base(e.Value)
			if len(v.Secret.Items) == 0 {
				return v.Secret.SecretName
			}
			for _, it := range v.Secret.Items {
				if it.Path == file {
					return v.Secret.SecretName
				}
			}
		}
	}
	t.Fatalf("container %s: %s=%s is not a file of a mounted Secret volume", c.Name, env, e.Value)
	return ""
}

func TestK8sManifests(t *testing.T) {
	k, objs := loadK8sDir(t, k8sBase)
	generated := map[string]generator{}
	for _, g := range k.ConfigMapGenerator {
		generated[g.Name] = g
	}
	reqTimeout := requestTimeout(t, filepath.Join(k8sBase, "config"))

	worker, ok := objs.deployments["mha-worker"]
	if !ok {
		t.Fatal("no Deployment mha-worker")
	}
	api, ok := objs.deployments["mha-api"]
	if !ok {
		t.Fatal("no Deployment mha-api")
	}

	t.Run("the worker's probes ask /healthz and /readyz on its health port", func(t *testing.T) {
		c := container(t, worker, "worker")
		live := probePort(t, c, c.LivenessProbe, "liveness")
		ready := probePort(t, c, c.ReadinessProbe, "readiness")
		if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("worker probes %s and %s, want /healthz (liveness) and /readyz (readiness)",
				c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
		}
		listen := envVar(c, "MHA_HEALTH_LISTEN")
		if listen == nil {
			t.Fatal("worker has no MHA_HEALTH_LISTEN")
		}
		_, port, err := net.SplitHostPort(listen.Value)
		if err != nil || port != strconv.Itoa(int(live)) || live != ready {
			t.Errorf("worker MHA_HEALTH_LISTEN=%q, probes on ports %d and %d: want one port", listen.Value, live, ready)
		}
		ann := worker.Spec.Template.Annotations
		if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != port || ann["prometheus.io/path"] != "/metrics" {
			t.Errorf("worker pod annotations %v: want prometheus.io scrape true, port %s, path /metrics", ann, port)
		}
	})

	t.Run("the api's probes ask /healthz, the one route without the token", func(t *testing.T) {
		c := container(t, api, "api")
		probePort(t, c, c.LivenessProbe, "liveness")
		probePort(t, c, c.ReadinessProbe, "readiness")
		if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("api probes %s and %s, want /healthz", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
		}
	})

	t.Run("every container has resource requests and limits", func(t *testing.T) {
		for _, d := range objs.deployments {
			for _, c := range d.Spec.Template.Spec.Containers {
				checkResources(t, c)
			}
		}
	})

	t.Run("the worker's termination grace outlasts a request and the stop grace", func(t *testing.T) {
		c := container(t, worker, "worker")
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		grace := stopGrace(t, env, reqTimeout)
		tg := worker.Spec.Template.Spec.TerminationGracePeriodSeconds
		if tg == nil {
			t.Fatal("worker has no terminationGracePeriodSeconds: the default 30 s kills it mid-call")
		}
		if time.Duration(*tg)*time.Second <= reqTimeout+grace {
			t.Errorf("worker terminationGracePeriodSeconds %d is not longer than request timeout %s + stop grace %s", *tg, reqTimeout, grace)
		}
	})

	t.Run("the config is a generated ConfigMap mounted at MHA_CONFIG", func(t *testing.T) {
		for _, d := range []*appsv1.Deployment{worker, api} {
			c := d.Spec.Template.Spec.Containers[0]
			dir := envVar(c, "MHA_CONFIG")
			if dir == nil || dir.Value != "/etc/mha" {
				t.Errorf("%s: MHA_CONFIG %+v, want /etc/mha", d.Name, dir)
				continue
			}
			found := false
			for _, m := range c.VolumeMounts {
				for _, v := range d.Spec.Template.Spec.Volumes {
					if m.Name == v.Name && m.MountPath == dir.Value && v.ConfigMap != nil {
						g, ok := generated[v.ConfigMap.Name]
						found = ok && slices.ContainsFunc(g.Files, func(f string) bool { return filepath.Base(f) == config.SettingsFile })
					}
				}
			}
			if !found {
				t.Errorf("%s: no ConfigMap generated from %s is mounted at %s", d.Name, config.SettingsFile, dir.Value)
			}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil {
					if _, ok := generated[ef.ConfigMapRef.Name]; !ok {
						t.Errorf("%s: envFrom ConfigMap %s is not generated by the kustomization", d.Name, ef.ConfigMapRef.Name)
					}
				}
			}
		}
	})

	t.Run("keys and token come from the Secret, never inline", func(t *testing.T) {
		secrets := map[string]bool{}
		for _, d := range []*appsv1.Deployment{worker, api} {
			c := d.Spec.Template.Spec.Containers[0]
			secrets[checkSecretFileMount(t, d, c, "MHA_KEYS_FILE")] = true
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, config.KeyEnvPrefix) || e.Name == "MHA_TEMPORAL_API_KEY" || e.Name == "MHA_API_TOKEN" || e.Name == "PGPASSWORD" {
					if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
						t.Errorf("%s: %s is set inline; take it from a Secret with secretKeyRef", d.Name, e.Name)
						continue
					}
					secrets[e.ValueFrom.SecretKeyRef.Name] = true
				}
			}
		}
		tok := envVar(container(t, api, "api"), "MHA_API_TOKEN")
		if tok == nil {
			t.Error("api has no MHA_API_TOKEN: it refuses to listen beyond loopback without one")
		}
		for name := range secrets {
			if _, inline := objs.secrets[name]; inline {
				t.Errorf("the base defines Secret %s: keep real secrets out of it, create them beside it", name)
			}
		}
		for _, g := range k.ConfigMapGenerator {
			for _, l := range g.Literals {
				if strings.Contains(l, "TOKEN") || strings.Contains(l, "KEY") || strings.Contains(l, "PASSWORD") || regexp.MustCompile(`://[^@/]*:[^@/]*@`).MatchString(l) {
					t.Errorf("ConfigMap %s literal %q looks like a secret", g.Name, l)
				}
			}
		}
	})

	t.Run("the api Service reaches the api's port", func(t *testing.T) {
		svc, ok := objs.services["mha-api"]
		if !ok {
			t.Fatal("no Service mha-api")
		}
		c := container(t, api, "api")
		for _, sp := range svc.Spec.Ports {
			if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
				return cp.Name == sp.TargetPort.StrVal || cp.ContainerPort == sp.TargetPort.IntVal
			}) {
				t.Errorf("Service port %s targets %s, which the api does not expose", sp.Name, sp.TargetPort.String())
			}
		}
		if !maps.Equal(svc.Spec.Selector, api.Spec.Selector.MatchLabels) {
			t.Errorf("Service selects %v, the api's pods carry %v", svc.Spec.Selector, api.Spec.Selector.MatchLabels)
		}
	})

	t.Run("the Prometheus scrape config finds the worker and the api by their port names", func(t *testing.T) {
		g, ok := generated["mha-prometheus"]
		if !ok || len(g.Files) != 1 {
			t.Fatalf("no ConfigMap mha-prometheus generated from a Prometheus config: %+v", g)
		}
		prom := readPrometheusFile(t, filepath.Join(k8sBase, g.Files[0]))
		for name, d := range map[string]*appsv1.Deployment{"worker": worker, "api": api} {
			job := prom.job(t, name)
			c := d.Spec.Template.Spec.Containers[0]
			keepsApp, keepsPort := false, false
			for _, r := range job.RelabelConfigs {
				if r.Action != "keep" || len(r.SourceLabels) != 1 {
					continue
				}
				switch r.SourceLabels[0] {
				case "__meta_kubernetes_pod_label_app_kubernetes_io_name":
					keepsApp = r.Regex == d.Spec.Selector.MatchLabels["app.kubernetes.io/name"]
				case "__meta_kubernetes_pod_container_port_name":
					keepsPort = slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == r.Regex })
				}
			}
			if len(job.KubernetesSDConfigs) == 0 || !keepsApp || !keepsPort {
				t.Errorf("Prometheus job %s does not keep %s's pods by app name and port name", job.JobName, d.Name)
			}
		}
		if a := prom.job(t, "api").Authorization; a == nil || a.CredentialsFile == "" {
			t.Error("Prometheus job for the api sends no bearer token")
		}
	})

	t.Run("no container runs go run or as root", func(t *testing.T) {
		for _, d := range objs.deployments {
			sc := d.Spec.Template.Spec.SecurityContext
			if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Errorf("%s: pod securityContext lacks runAsNonRoot: true", d.Name)
			}
			for _, c := range d.Spec.Template.Spec.Containers {
				cmd := strings.Join(slices.Concat(c.Command, c.Args), " ")
				if strings.Contains(cmd, "go run") || strings.Contains(c.Image, "golang") {
					t.Errorf("%s: container %s builds at run time (%q, image %s)", d.Name, c.Name, cmd, c.Image)
				}
			}
		}
	})

	t.Run("the dev overlay's placeholder Secret holds every key the base reads", func(t *testing.T) {
		_, dev := loadK8sDir(t, k8sDev)
		keys := map[string]map[string]bool{}
		for _, d := range []*appsv1.Deployment{worker, api} {
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Secret != nil {
					for _, it := range v.Secret.Items {
						add(keys, v.Secret.SecretName, it.Key)
					}
				}
			}
			for _, e := range d.Spec.Template.Spec.Containers[0].Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					add(keys, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
				}
			}
		}
		for name, want := range keys {
			s, ok := dev.secrets[name]
			if !ok {
				t.Errorf("the dev overlay has no Secret %s", name)
				continue
			}
			for key := range want {
				if _, ok := s.StringData[key]; !ok {
					t.Errorf("the dev overlay's Secret %s lacks key %s", name, key)
				}
			}
			var keysFile map[string]string
			if err := json.Unmarshal([]byte(s.StringData["api_keys.json"]), &keysFile); err != nil {
				t.Errorf("the dev overlay's api_keys.json is not a JSON object: %v", err)
			}
		}
	})
}

func add(m map[string]map[string]bool, k, v string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][v] = true
}

// TestK8sRendersWithKustomize builds both kustomizations with `kubectl kustomize`, where kubectl
// is installed, and decodes every rendered object strictly.
func TestK8sRendersWithKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed; the kustomizations are checked file by file only")
	}
	for _, dir := range []string{k8sBase, k8sDev} {
		t.Run(dir, func(t *testing.T) {
			out, err := exec.Command(kubectl, "kustomize", dir).Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					err = fmt.Errorf("%w: %s", err, ee.Stderr)
				}
				t.Fatalf("kubectl kustomize %s: %v", dir, err)
			}
			objs := newK8sObjects()
			decodeManifests(t, "kubectl kustomize "+dir, out, objs)
			// Generated names carry a hash; every reference must have been rewritten to one.
			for _, d := range objs.deployments {
				for _, v := range d.Spec.Template.Spec.Volumes {
					if v.ConfigMap != nil {
						if _, ok := objs.configMaps[v.ConfigMap.Name]; !ok {
							t.Errorf("%s mounts ConfigMap %s, which the build lacks", d.Name, v.ConfigMap.Name)
						}
					}
				}
				for _, ef := range d.Spec.Template.Spec.Containers[0].EnvFrom {
					if ef.ConfigMapRef != nil {
						if _, ok := objs.configMaps[ef.ConfigMapRef.Name]; !ok {
							t.Errorf("%s reads ConfigMap %s, which the build lacks", d.Name, ef.ConfigMapRef.Name)
						}
					}
				}
			}
			if _, ok := objs.configMaps["mha-prometheus"]; !ok {
				t.Error("the build has no ConfigMap mha-prometheus under its stable name")
			}
		})
	}
}

// ---------------------------------------------------------------------------------------
// Grafana

// The metrics the worker, the api and the Temporal SDK export: the contract the dashboard
// may query. Histograms are listed by their base name.
var (
	contractCounters = []string{
		"mha_annotations_stored_total", "mha_provider_outcomes_total", "mha_reasks_total",
		"mha_quota_granted_total", "mha_deadline_cuts_total", "mha_tokens_input_total",
		"mha_tokens_output_total", "api_requests_total",
		"temporal_request_failure_total", "temporal_sticky_cache_hit_total",
		"temporal_activity_execution_failed_total", "temporal_workflow_completed_total",
	}
	contractGauges = []string{
		"mha_quota_limit_requests_per_minute", "mha_provider_calls_in_flight", "mha_worker_wedged_slots",
		"mha_runs", "mha_run_done", "mha_run_target",
		"temporal_worker_task_slots_available", "temporal_worker_task_slots_used",
	}
	contractHistograms = []string{
		"mha_provider_request_duration_seconds", "mha_quota_wait_seconds", "mha_sample_phase_seconds", "api_request_duration_seconds",
		"temporal_activity_schedule_to_start_latency_seconds",
		"temporal_workflow_task_schedule_to_start_latency_seconds",
		"temporal_activity_execution_latency_seconds",
	}
)

func inContract(name string) bool {
	if slices.Contains(contractCounters, name) || slices.Contains(contractGauges, name) {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(contractHistograms, base) {
			return true
		}
	}
	return false
}

type dashboardPanel struct {
	ID         int              `json:"id"`
	Type       string           `json:"type"`
	Title      string           `json:"title"`
	Datasource *json.RawMessage `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string           `json:"refId"`
		Expr       string           `json:"expr"`
		Datasource *json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func TestDashboard(t *testing.T) {
	var d struct {
		UID        string           `json:"uid"`
		Title      string           `json:"title"`
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string           `json:"name"`
				Datasource *json.RawMessage `json:"datasource"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(deployment.DashboardJSON(), &d); err != nil {
		t.Fatalf("grafana/dashboards/mha.json: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("the dashboard needs a uid and a title: %q, %q", d.UID, d.Title)
	}
	ds := datasources(t)
	if len(ds) == 0 {
		t.Fatal("no provisioned data source")
	}
	want := datasourceRef{Type: ds[0].Type, UID: ds[0].UID}
	checkRef := func(where string, raw *json.RawMessage) {
		t.Helper()
		var ref datasourceRef
		if raw == nil || json.Unmarshal(*raw, &ref) != nil || ref != want {
			got := "none"
			if raw != nil {
				got = string(*raw)
			}
			t.Errorf("%s: data source %s, want the provisioned %+v", where, got, want)
		}
	}

	var all []dashboardPanel
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	ids := map[int]string{}
	for _, p := range all {
		if other, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q has id %d, as %q has", p.Title, p.ID, other)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		// Rows only lay the panels out; every other panel queries Prometheus.
		if p.Type == "row" {
			if len(p.Targets) > 0 {
				t.Errorf("row %q has targets", p.Title)
			}
			continue
		}
		checkRef(fmt.Sprintf("panel %q", p.Title), p.Datasource)
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no target", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q target %s has no expression", p.Title, tg.RefID)
			}
			if tg.Datasource != nil {
				checkRef(fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), tg.Datasource)
			}
		}
	}
	for _, v := range d.Templating.List {
		checkRef(fmt.Sprintf("variable %q", v.Name), v.Datasource)
	}

	names, err := deployment.DashboardMetricNames()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("every metric the dashboard queries is in the contract", func(t *testing.T) {
		for _, n := range names {
			if !inContract(n) {
				t.Errorf("the dashboard queries %s, which no binary exports", n)
			}
		}
	})
	t.Run("the dashboard shows what operators watch", func(t *testing.T) {
		for _, n := range []string{
			"mha_run_done", "mha_run_target", "mha_runs", // progress
			"mha_annotations_stored_total",                                   // throughput
			"mha_provider_request_duration_seconds_bucket",                   // latency percentiles
			"mha_provider_outcomes_total",                                    // outcome classes and 429s
			"mha_quota_granted_total", "mha_quota_limit_requests_per_minute", // quota vs limit
			"mha_provider_calls_in_flight", "mha_deadline_cuts_total", "mha_worker_wedged_slots", // stuck calls
			"temporal_worker_task_slots_available", "temporal_worker_task_slots_used", // slots
			"temporal_activity_schedule_to_start_latency_seconds_bucket",      // activity backlog
			"temporal_workflow_task_schedule_to_start_latency_seconds_bucket", // workflow backlog
		} {
			if !slices.Contains(names, n) {
				t.Errorf("no panel queries %s", n)
			}
		}
	})
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		name string
		expr string
		want []string
	}{
		{"a bare metric", "mha_runs", []string{"mha_runs"}},
		{"a selector with matchers holding metric-like words",
			`mha_provider_outcomes_total{outcome=~"rate_limited_minute|rate_limited_day", provider!="other_total"}`,
			[]string{"mha_provider_outcomes_total"}},
		{"a histogram quantile keeps the _bucket suffix",
			`histogram_quantile(0.95, sum by (le, provider) (rate(mha_provider_request_duration_seconds_bucket[$__rate_interval])))`,
			[]string{"mha_provider_request_duration_seconds_bucket"}},
		{"a trailing by clause and a without clause",
			`sum(rate(a_total[5m])) by (le, instance) / sum without (instance, job) (b_count)`,
			[]string{"a_total", "b_count"}},
		{"vector matching with on, ignoring and group_left",
			`x / on (pool) group_left (annotator) y * ignoring(instance) group_right z`,
			[]string{"x", "y", "z"}},
		{"set operators and bool", "a and b or c unless d > bool 0", []string{"a", "b", "c", "d"}},
		{"offset and @ with start()", "rate(x_total[5m] offset 1h) + y @ start() - z @ 1609746000",
			[]string{"x_total", "y", "z"}},
		{"a subquery", "max_over_time(rate(x_total[1m])[30m:1m])", []string{"x_total"}},
		{"numbers in every notation are not names", "x * 1e-3 + 0x1F - Inf + NaN + .5 + 2h30m", []string{"x"}},
		{"strings are not names", `label_replace(up_metric, "dst_label", "$1", "src", "(not_a_metric.*)")`,
			[]string{"up_metric"}},
		{"a name given only by __name__", `{__name__="mha_runs", job="api"}`, []string{"mha_runs"}},
		{"a quoted name, Prometheus 3 style", `{"my.metric", job="api"}`, []string{"my.metric"}},
		{"functions without metrics", "vector(1) + time() + scalar(x)", []string{"x"}},
		{"aggregations with parameters", `topk(5, a) + count_values("value", b) + quantile(0.9, c)`,
			[]string{"a", "b", "c"}},
		{"upper-case keywords", "SUM BY (le) (a) AND b", []string{"a", "b"}},
		{"grafana variables", `topk($k, rate(a_total{annotator=~"$annotator"}[${__rate_interval}]))`,
			[]string{"a_total"}},
		{"comments", "a # b_total is not here\n + c", []string{"a", "c"}},
		{"repeats are listed once", "a / a", []string{"a"}},
		{"recording rule names with colons", "job:requests:rate5m", []string{"job:requests:rate5m"}},
		{"a scalar", "1 + 2", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := deployment.MetricNames(tt.expr)
			if err != nil {
				t.Fatalf("MetricNames(%q): %v", tt.expr, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("MetricNames(%q) = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}

	for _, expr := range []string{
		`{__name__=~"mha_.*"}`,
		`{__name__!="x"}`,
		`rate(x[5m]`,
		`sum(x))`,
		`x{a="b"]`,
		`x{a="unterminated}`,
	} {
		t.Run("refuses "+expr, func(t *testing.T) {
			if got, err := deployment.MetricNames(expr); err == nil {
				t.Errorf("MetricNames(%q) = %q, want an error", expr, got)
			}
		})
	}
}

// FuzzMetricNames feeds MetricNames arbitrary text: it must return names or an error, never
// panic, and each name it returns must occur in the expression as written.
func FuzzMetricNames(f *testing.F) {
	for _, seed := range []string{
		`histogram_quantile(0.95, sum by (le) (rate(a_bucket[$__rate_interval])))`,
		`{__name__="x"} / on(pool) group_left y offset -5m @ end()`,
		`a{b="}"} and ${c} or [[d]]`, `"unterminated`, `((`, `0x1e+5`, "x # y\nz",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		names, err := deployment.MetricNames(expr)
		if err != nil {
			return
		}
		for _, n := range names {
			if n == "" {
				t.Errorf("MetricNames(%q) returned an empty name", expr)
			}
			if !strings.Contains(expr, n) && !strings.Contains(expr, strings.ReplaceAll(strconv.Quote(n), `"`, "")) {
				t.Errorf("MetricNames(%q) returned %q, which the expression does not contain", expr, n)
			}
		}
	})
}
