package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// figure is one line of the table `make bench` ends with: a measure, the goal it is held to
// and the settings it ran under, measured in the same run as its baseline.
type figure struct {
	ID       string  `json:"id"` // the name for it: P1, P2, ...
	Measure  string  `json:"measure"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit,omitempty"`
	Goal     string  `json:"goal,omitempty"`
	Met      *bool   `json:"met,omitempty"` // nil: no goal
	Settings string  `json:"settings"`
}

var figures struct {
	sync.Mutex
	list []figure
}

// record adds f to the summary.
func record(f figure) {
	figures.Lock()
	defer figures.Unlock()
	figures.list = append(figures.list, f)
}

// met is a goal's verdict, for figure.Met.
func met(ok bool) *bool { return &ok }

// summaryFile is where the summary is written, beside the repository's other results.
const summaryFile = "../bench/results.json"

// writeSummary prints the recorded figures as one table and writes them as JSON to
// summaryFile, when a benchmark recorded any.
func writeSummary() {
	figures.Lock()
	defer figures.Unlock()
	if len(figures.list) == 0 {
		return
	}
	host, _ := os.Hostname()
	doc := struct {
		MeasuredAt time.Time `json:"measured_at"`
		Machine    string    `json:"machine"`
		Go         string    `json:"go"`
		Figures    []figure  `json:"figures"`
	}{time.Now().UTC().Round(time.Second), fmt.Sprintf("%s, %d cores", host, runtime.NumCPU()), runtime.Version(), figures.list}
	var t strings.Builder
	fmt.Fprintf(&t, "\nSummary (%s, %s)\n\n| id | measure | value | goal | met | settings |\n| --- | --- | --- | --- | --- | --- |\n",
		doc.MeasuredAt.Format(time.RFC3339), doc.Machine)
	for _, f := range figures.list {
		verdict := ""
		switch {
		case f.Met == nil:
		case *f.Met:
			verdict = "yes"
		default:
			verdict = "no"
		}
		fmt.Fprintf(&t, "| %s | %s | %.3g %s | %s | %s | %s |\n", f.ID, f.Measure, f.Value, f.Unit, f.Goal, verdict, f.Settings)
	}
	fmt.Print(t.String())
	data, err := json.MarshalIndent(doc, "", "  ")
	if err == nil {
		err = os.MkdirAll(filepath.Dir(summaryFile), 0o755)
	}
	if err == nil {
		err = os.WriteFile(summaryFile, append(data, '\n'), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: write the benchmark summary:", err)
	}
}
