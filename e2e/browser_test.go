package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/runs"
)

// browser starts headless Chromium (Debian's chromium; .ci/run installs it) for one test.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("no chromium on PATH (apt-get install chromium): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// TestDashboardShowsLiveProgressAndPauses opens the dashboard in a real browser, sees a run's
// count go up without reloading, clicks its pause button and sees it paused. The screenshots
// it takes are the test's artifacts (go test -artifacts keeps them).
func TestDashboardShowsLiveProgressAndPauses(t *testing.T) {
	s := newStack(t, map[string]any{"offline_latency_seconds": 0.1}, map[string]map[labels.Domain]int{"b1": {labels.Urgency: 300, labels.Therapeutic: 300}, "b2": {labels.Urgency: 300}}, 300)
	s.startWorker()
	base := s.startAPI()
	var started results
	if code := call(t, http.MethodPost, base+"/api/control/start", map[string]any{"all": true}, &started); code != http.StatusOK {
		t.Fatalf("start: %d", code)
	}
	ctx := browser(t)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	id := contract.RunID("b1", labels.Urgency)
	row := fmt.Sprintf(`[data-run=%q]`, id)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`body[data-ready="1"]`)),
		chromedp.WaitVisible(chromedp.CSS(row+` .done`)),
	); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	first, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(row+` .done`)))
	if err != nil {
		t.Fatalf("read the done count: %v", err)
	}
	n0, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		t.Fatalf("the done count %q is not a number", first)
	}
	// Live: the count rises while the page stays loaded.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(
		`Number(document.querySelector('%s .done').textContent) >= %d && document.getElementById('conn').dataset.state === 'live'`, row, n0+5),
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		shot(ctx, t, "dashboard-not-live.png")
		seen, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(
			`document.querySelector('%s .done').textContent + ' done, connection ' + document.getElementById('conn').dataset.state`, row)))
		t.Fatalf("the run's count did not rise from %d on the page with a live connection (the page shows %s): %v", n0, seen, err)
	}
	shot(ctx, t, "dashboard-running.png")

	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(row+` [data-action="pause"]`))); err != nil {
		t.Fatalf("click pause: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`document.querySelector('%s .status').textContent.trim() === 'paused'`, row),
		chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("the page did not show the run paused after clicking pause: %v", err)
	}
	if st := s.status(runs.Pair{Annotator: "b1", Domain: labels.Urgency}); st.Status != contract.StatusPaused {
		t.Fatalf("the page says paused but the run is %s", st.Status)
	}
	shot(ctx, t, "dashboard-paused.png")

	// Dark theme and a phone-sized window, for a person to look at.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#theme`)), chromedp.EmulateViewport(390, 844)); err != nil {
		t.Errorf("dark theme on a phone: %v", err)
	}
	shot(ctx, t, "dashboard-phone-dark.png")
}

// shot saves a full-page screenshot among the test's artifacts.
func shot(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot: %s", path)
}
