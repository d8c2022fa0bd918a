package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mhannotator/mha/internal/contract"
	"github.com/mhannotator/mha/internal/runs"
)

// gap separates columns.
const gap = "   "

// barWidth is the number of cells of the --watch progress bar.
const barWidth = 20

// maxErrorWidth is where LAST ERROR is cut so a line fits a terminal; --json has it in full.
const maxErrorWidth = 50

// statusOrder orders the run counts of the totals line; other statuses follow alphabetically.
var statusOrder = []string{
	contract.StatusRunning, contract.StatusWaitingQuota, contract.StatusWaitingRetry, contract.StatusPaused,
	contract.StatusFailed, contract.StatusStopped, contract.StatusCompleted, runs.StatusNotStarted,
}

// renderTable lays statuses out as `starter status` shows them, with a totals line; bar adds
// the progress column of --watch.
func renderTable(sts []contract.Status, bar bool) string {
	if len(sts) == 0 {
		return "no runs to show: none is enabled in the config or has been started\n"
	}
	header := []string{"RUN", "STATUS", "DONE/TARGET"}
	if bar {
		header = append(header, "PROGRESS")
	}
	header = append(header, "MALFORMED", "ERRORS", "PER MIN", "RESTARTS", "LAST ERROR")
	right := make([]bool, len(header))
	for c := len(header) - 5; c < len(header)-1; c++ {
		right[c] = true // the counts
	}

	rows := [][]string{header}
	var done, target, malformed, errs int
	byStatus := map[string]int{}
	for _, st := range sts {
		d, t := progress(st)
		done, target, malformed, errs = done+d, target+t, malformed+st.Malformed, errs+st.Errors
		byStatus[st.Status]++
		row := []string{st.WorkflowID, st.Status, fmt.Sprintf("%d/%d %d%%", d, t, percent(d, t))}
		if bar {
			row = append(row, progressBar(d, t))
		}
		row = append(row, strconv.Itoa(st.Malformed), strconv.Itoa(st.Errors),
			strconv.FormatFloat(st.SamplesPerMinute, 'f', 1, 64), strconv.Itoa(st.Restarts),
			cut(lastError(st), maxErrorWidth))
		rows = append(rows, row)
	}

	var counts []string
	for _, s := range sortStatuses(byStatus) {
		counts = append(counts, fmt.Sprintf("%d %s", byStatus[s], s))
	}
	return layout(rows, right) + fmt.Sprintf("total: %d/%d %d%%, %d malformed, %d %s; %d %s: %s\n",
		done, target, percent(done, target), malformed, errs, plural(errs, "error", "errors"),
		len(sts), plural(len(sts), "run", "runs"), strings.Join(counts, ", "))
}

// lastError is the run's last error, for a waiting run when it goes on, and for a batch-mode
// run with chunks at the provider their states and when the oldest was sent.
func lastError(st contract.Status) string {
	msg := st.LastError
	if !st.NextTry.IsZero() {
		msg = fmt.Sprintf("next try %s: %s", st.NextTry.Local().Format(time.TimeOnly), st.LastError)
	}
	if b := st.Batch; b != nil && len(b.Chunks) > 0 {
		var states []string
		for _, s := range []string{contract.ChunkSubmitted, contract.ChunkRunning, contract.ChunkCollecting} {
			if n := b.ByState[s]; n > 0 {
				states = append(states, fmt.Sprintf("%d %s", n, s))
			}
		}
		chunks := fmt.Sprintf("batches: %s, oldest sent %s", strings.Join(states, ", "), b.OldestSent.Local().Format(time.TimeOnly))
		if msg == "" {
			return chunks
		}
		return chunks + "; " + msg
	}
	return msg
}

// progress is a run's done and target counts. A run ends at the end of the dataset when that
// comes before its target, so a smaller loaded dataset is the target that counts.
func progress(st contract.Status) (done, target int) {
	target = st.Target
	if st.DatasetSize > 0 && st.DatasetSize < target {
		target = st.DatasetSize
	}
	return min(st.Completed, target), target
}

// percent rounds down, so 59 of 60 never shows as 100%; nothing to do counts as done.
func percent(done, target int) int {
	if target <= 0 {
		return 100
	}
	return done * 100 / target
}

// progressBar draws done of target as [########------------].
func progressBar(done, target int) string {
	filled := barWidth
	if target > 0 {
		filled = done * barWidth / target
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat("-", barWidth-filled) + "]"
}

// cut puts s on one line and shortens it to n characters, ending in "…" when cut.
func cut(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func sortStatuses(byStatus map[string]int) []string {
	var known, other []string
	for _, s := range statusOrder {
		if byStatus[s] > 0 {
			known = append(known, s)
		}
	}
	for s := range byStatus {
		if !slices.Contains(statusOrder, s) {
			other = append(other, s)
		}
	}
	slices.Sort(other)
	return append(known, other...)
}

// layout lays rows out in columns separated by gap; right marks right-aligned columns. A row's
// last non-empty cell, when left-aligned, is written as it is and does not widen its column,
// so one long message at the end of a line does not push the other lines apart.
func layout(rows [][]string, right []bool) string {
	isRight := func(c int) bool { return c < len(right) && right[c] }
	last := func(row []string) int {
		for c := len(row) - 1; c >= 0; c-- {
			if row[c] != "" {
				return c
			}
		}
		return -1
	}
	var widths []int
	for _, row := range rows {
		end := last(row)
		for c := 0; c <= end; c++ {
			if c == end && !isRight(c) {
				break
			}
			for len(widths) <= c {
				widths = append(widths, 0)
			}
			widths[c] = max(widths[c], utf8.RuneCountInString(row[c]))
		}
	}
	var b strings.Builder
	for _, row := range rows {
		end := last(row)
		for c := 0; c <= end; c++ {
			if c > 0 {
				b.WriteString(gap)
			}
			pad := ""
			if c < len(widths) {
				pad = strings.Repeat(" ", max(widths[c]-utf8.RuneCountInString(row[c]), 0))
			}
			switch {
			case isRight(c):
				b.WriteString(pad + row[c])
			case c == end:
				b.WriteString(row[c])
			default:
				b.WriteString(row[c] + pad)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}
