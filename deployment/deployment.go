// Package deployment is the platform's deployment kit: the Dockerfile, the configs of the
// compose cluster (Temporal, PostgreSQL, Prometheus, Grafana), the Grafana dashboard and the
// Kubernetes manifests, all beside this file. Its Go code gives tests what they need from the
// kit: the metric names the dashboard queries (DashboardMetricNames), so an end-to-end test can
// check them against the /metrics pages of the real worker and api.
package deployment

import (
	"bytes"
	_ "embed"
)

//go:embed grafana/dashboards/mha.json
var dashboardJSON []byte

// DashboardJSON is the Grafana dashboard grafana/dashboards/mha.json as shipped.
func DashboardJSON() []byte { return bytes.Clone(dashboardJSON) }
