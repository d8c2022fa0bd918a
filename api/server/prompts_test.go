package server

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/prompts"
)

func TestListPromptsShowsEveryPairsSource(t *testing.T) {
	f := newConfigFixture(t)
	f.writeFile("prompts/base/urgency.txt", "BASE {text}")
	f.writeFile("prompts/overrides/annotator_2/urgency.txt", "OVERRIDE {text}")
	f.writeFile("prompts/overrides/annotator_3/intensity.txt", "no placeholder")
	got := decodeInto[struct{ Prompts []PromptSummary }](t, f.call(http.MethodGet, "/api/prompts", nil, http.StatusOK)).Prompts
	if len(got) != 6*6 {
		t.Fatalf("%d entries, want 36 (shared + 5 annotators, 6 domains each)", len(got))
	}
	find := func(annotator, domain string) PromptSummary {
		i := slices.IndexFunc(got, func(p PromptSummary) bool { return p.Annotator == annotator && p.Domain == domain })
		if i < 0 {
			t.Fatalf("no entry for %q %s", annotator, domain)
		}
		return got[i]
	}
	builtin, _ := prompts.Builtin(labels.Therapeutic)
	for _, tc := range []struct {
		annotator, domain, source, hash string
	}{
		{"", "urgency", prompts.SourceBase, prompts.Hash("BASE {text}")},
		{"1", "urgency", prompts.SourceBase, prompts.Hash("BASE {text}")},
		{"2", "urgency", prompts.SourceOverride, prompts.Hash("OVERRIDE {text}")},
		{"5", "therapeutic", prompts.SourceBuiltin, prompts.Hash(builtin)},
	} {
		if p := find(tc.annotator, tc.domain); p.Source != tc.source || p.Hash != tc.hash || p.Error != "" {
			t.Errorf("%q %s = %+v, want source %s", tc.annotator, tc.domain, p, tc.source)
		}
	}
	if p := find("3", "intensity"); p.Error == "" || !strings.Contains(p.Error, "placeholder") {
		t.Errorf("a broken override should be reported, got %+v", p)
	}
}

func TestPromptVersionsFromSaveToDelete(t *testing.T) {
	f := newConfigFixture(t)
	base := "/api/prompts/urgency"
	q := "?annotator=1"

	state := decodeInto[PromptState](t, f.call(http.MethodGet, base+q, nil, http.StatusOK))
	builtin, _ := prompts.Builtin(labels.Urgency)
	if state.Active.Source != prompts.SourceBuiltin || state.Active.Template != builtin || len(state.Versions) != 0 || state.Annotator != "1" {
		t.Fatalf("initial state = %+v", state)
	}

	tmpl := strings.Replace(builtin, "STUDENT TEXT", "THE STUDENT'S TEXT", 1)
	rec := f.call(http.MethodPost, base+q, map[string]string{"name": "reworded", "description": "clearer heading", "template": tmpl}, http.StatusCreated)
	v := decodeInto[PromptVersion](t, rec)
	if v.File != "v1_reworded.txt" || v.Number != 1 || v.Active || v.Hash != prompts.Hash(tmpl) || v.Description != "clearer heading" || v.CreatedAt.IsZero() {
		t.Fatalf("saved = %+v", v)
	}
	if b, err := os.ReadFile(f.path("prompts/versions/annotator_1/urgency/v1_reworded.txt")); err != nil || string(b) != tmpl {
		t.Fatalf("version file: %v", err)
	}
	f.call(http.MethodPost, base+q, map[string]string{"name": "second", "template": "SECOND {text}\n"}, http.StatusCreated)

	got := decodeInto[PromptVersion](t, f.call(http.MethodGet, base+"/versions/v1_reworded.txt"+q, nil, http.StatusOK))
	if got.Template != tmpl || got.File != "v1_reworded.txt" || got.Description != "clearer heading" {
		t.Errorf("version = %+v", got)
	}

	state = decodeInto[PromptState](t, f.call(http.MethodPost, base+"/versions/v1_reworded.txt/activate"+q, nil, http.StatusOK))
	if state.Active.Source != prompts.SourceVersion || state.Active.Version != "v1_reworded.txt" || state.Active.Template != tmpl ||
		len(state.Versions) != 2 || !state.Versions[0].Active || state.Versions[1].Active {
		t.Fatalf("after activate: %+v", state)
	}
	if p, _ := (prompts.Library{Dir: f.path("prompts")}).Active("1", labels.Urgency); p.Version != "v1_reworded.txt" {
		t.Errorf("runs would use %+v", p)
	}
	if p, _ := (prompts.Library{Dir: f.path("prompts")}).Active("2", labels.Urgency); p.Source != prompts.SourceBuiltin {
		t.Errorf("annotator 2 would use %+v", p)
	}

	diff := decodeInto[PromptDiff](t, f.call(http.MethodGet, base+"/diff"+q+"&from=builtin&to=active", nil, http.StatusOK))
	if diff.From != "builtin" || diff.To != "active" || !strings.HasPrefix(diff.Unified, "--- builtin\n+++ active\n@@ ") ||
		!strings.Contains(diff.Unified, "\n-STUDENT TEXT") || !strings.Contains(diff.Unified, "\n+THE STUDENT'S TEXT") {
		t.Errorf("diff = %+v", diff)
	}
	if got := applyUnified(t, builtin, diff.Unified); got != tmpl {
		t.Errorf("the diff does not turn builtin into the version")
	}
	same := decodeInto[PromptDiff](t, f.call(http.MethodGet, base+"/diff"+q+"&from=active&to=v1_reworded.txt", nil, http.StatusOK))
	if same.Unified != "" {
		t.Errorf("diff of a version with itself: %q", same.Unified)
	}
	two := decodeInto[PromptDiff](t, f.call(http.MethodGet, base+"/diff"+q+"&from=v1_reworded.txt&to=v2_second.txt", nil, http.StatusOK))
	if applyUnified(t, tmpl, two.Unified) != "SECOND {text}\n" {
		t.Errorf("diff between versions:\n%s", two.Unified)
	}

	rec = f.call(http.MethodDelete, base+"/versions/v1_reworded.txt"+q, nil, http.StatusConflict)
	wantProblem(t, rec, "path.file", "v1_reworded.txt is the active urgency version of annotator 1", "activate another version first")
	if _, err := os.Stat(f.path("prompts/versions/annotator_1/urgency/v1_reworded.txt")); err != nil {
		t.Fatalf("the refused delete removed the file: %v", err)
	}

	state = decodeInto[PromptState](t, f.call(http.MethodDelete, base+"/active"+q, nil, http.StatusOK))
	if state.Active.Source != prompts.SourceBuiltin {
		t.Errorf("after deactivating: %+v", state.Active)
	}
	state = decodeInto[PromptState](t, f.call(http.MethodDelete, base+"/versions/v1_reworded.txt"+q, nil, http.StatusOK))
	if len(state.Versions) != 1 || state.Versions[0].File != "v2_second.txt" {
		t.Errorf("after delete: %+v", state.Versions)
	}
	for _, name := range []string{"v1_reworded.txt", "v1_reworded.json"} {
		if _, err := os.Stat(f.path("prompts/versions/annotator_1/urgency/" + name)); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", name, err)
		}
	}
	f.call(http.MethodDelete, base+"/versions/v1_reworded.txt"+q, nil, http.StatusNotFound)
	for _, line := range []string{"prompt version saved", "prompt version activated", "prompt version deleted"} {
		if !strings.Contains(f.logs.String(), line) {
			t.Errorf("no %q log line", line)
		}
	}
}

func TestSharedPromptVersionsServeAnnotatorsWithoutTheirOwn(t *testing.T) {
	f := newConfigFixture(t)
	f.call(http.MethodPost, "/api/prompts/adjunct", map[string]string{"name": "shared", "template": "SHARED {text}"}, http.StatusCreated)
	f.call(http.MethodPost, "/api/prompts/adjunct/versions/v1_shared.txt/activate?annotator=", nil, http.StatusOK)
	for _, target := range []string{"/api/prompts/adjunct", "/api/prompts/adjunct?annotator=4"} {
		state := decodeInto[PromptState](t, f.call(http.MethodGet, target, nil, http.StatusOK))
		if state.Active.Source != prompts.SourceSharedVersion || state.Active.Template != "SHARED {text}" {
			t.Errorf("%s: %+v", target, state.Active)
		}
	}
	if _, err := os.Stat(f.path("prompts/versions/shared/adjunct/v1_shared.txt")); err != nil {
		t.Error(err)
	}
	// Annotator 4 has no versions of its own, so the shared file is no version of its.
	f.call(http.MethodGet, "/api/prompts/adjunct/versions/v1_shared.txt?annotator=4", nil, http.StatusNotFound)
}

func TestPromptRoutesRefuseBadParameters(t *testing.T) {
	f := newConfigFixture(t)
	f.call(http.MethodPost, "/api/prompts/urgency?annotator=1", map[string]string{"name": "ok", "template": "OK {text}"}, http.StatusCreated)
	for _, tc := range []struct {
		method, target string
		body           any
		status         int
		location, msg  string
	}{
		{http.MethodGet, "/api/prompts/mood", nil, 422, "path.domain", ""},
		{http.MethodGet, "/api/prompts/urgency?annotator=9", nil, 422, "query.annotator", "annotator 9 is not in the config"},
		{http.MethodGet, "/api/prompts/urgency?annotator=..%2F..%2Fsettings", nil, 422, "query.annotator", "not in the config"},
		{http.MethodGet, "/api/prompts/urgency/versions/settings.json?annotator=1", nil, 422, "path.file", "v<N>_<name>.txt"},
		{http.MethodGet, "/api/prompts/urgency/versions/v1_ok.json?annotator=1", nil, 422, "path.file", ""},
		{http.MethodGet, "/api/prompts/urgency/versions/..?annotator=1", nil, 422, "path.file", ""},
		{http.MethodGet, "/api/prompts/urgency/versions/%2E%2E%2F%2E%2E%2Fapi_keys.json?annotator=1", nil, 404, "", ""},
		{http.MethodGet, "/api/prompts/urgency/versions/v9_none.txt?annotator=1", nil, 404, "path.file", "there is no version v9_none.txt"},
		{http.MethodPost, "/api/prompts/urgency/versions/v9_none.txt/activate?annotator=1", nil, 404, "path.file", ""},
		{http.MethodPost, "/api/prompts/urgency/versions/..%5Cx.txt/activate?annotator=1", nil, 422, "path.file", ""},
		{http.MethodDelete, "/api/prompts/urgency/versions/v1_ok.txt?annotator=2", nil, 404, "path.file", ""},
		{http.MethodPost, "/api/prompts/urgency?annotator=1", map[string]string{"name": "bad name", "template": "no placeholder"}, 422, "body.template", "no {text} placeholder"},
		{http.MethodPost, "/api/prompts/urgency?annotator=1", map[string]string{"name": "bad name", "template": "no placeholder"}, 422, "body.name", "use 1-50 letters"},
		{http.MethodPost, "/api/prompts/urgency?annotator=1", map[string]string{"name": "../x", "template": "{text}"}, 422, "body.name", ""},
		{http.MethodPost, "/api/prompts/urgency?annotator=1", map[string]string{"name": "big", "template": "{text}" + strings.Repeat("x", maxTemplateBytes)}, 422, "body.template", "256 KiB"},
		{http.MethodGet, "/api/prompts/urgency/diff?annotator=1&from=builtin", nil, 422, "query.to", ""},
		{http.MethodGet, "/api/prompts/urgency/diff?annotator=1&from=base&to=../x", nil, 422, "query.from", "active or builtin"},
		{http.MethodGet, "/api/prompts/urgency/diff?annotator=1&from=builtin&to=v7_gone.txt", nil, 404, "query.to", ""},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			rec := f.call(tc.method, tc.target, tc.body, tc.status)
			if tc.location != "" {
				wantProblem(t, rec, tc.location, tc.msg)
			}
		})
	}
	vs, err := (prompts.Library{Dir: f.path("prompts")}).Versions("1", labels.Urgency)
	if err != nil || len(vs) != 1 {
		t.Errorf("versions after refused requests: %+v, %v", vs, err)
	}
	entries, _ := os.ReadDir(f.dir)
	for _, e := range entries {
		if e.Name() != "settings.json" && e.Name() != "prompts" {
			t.Errorf("unexpected file in the config dir: %s", e.Name())
		}
	}
}

func TestUnifiedDiff(t *testing.T) {
	tests := []struct {
		name, a, b, want string
	}{
		{"same", "a\nb\n", "a\nb\n", ""},
		{"one line changed", "a\nb\nc\n", "a\nB\nc\n", "--- x\n+++ y\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"},
		{"into an empty text", "", "new\n", "--- x\n+++ y\n@@ -0,0 +1 @@\n+new\n"},
		{"to an empty text", "old\n", "", "--- x\n+++ y\n@@ -1 +0,0 @@\n-old\n"},
		{"a missing last line break", "a\nb", "a\nb\n", "--- x\n+++ y\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"},
		{"far apart changes make two hunks", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", "one\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\ntwelve\n",
			"--- x\n+++ y\n@@ -1,4 +1,4 @@\n-1\n+one\n 2\n 3\n 4\n@@ -9,4 +9,4 @@\n 9\n 10\n 11\n-12\n+twelve\n"},
		{"near changes share a hunk", "1\n2\n3\n4\n5\n6\n7\n8\n", "one\n2\n3\n4\n5\n6\n7\neight\n",
			"--- x\n+++ y\n@@ -1,8 +1,8 @@\n-1\n+one\n 2\n 3\n 4\n 5\n 6\n 7\n-8\n+eight\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := unifiedDiff("x", "y", tt.a, tt.b)
			if got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
			if got != "" && applyUnified(t, tt.a, got) != tt.b {
				t.Errorf("applying the diff does not give b")
			}
		})
	}
}

func TestUnifiedDiffAppliesBackForManyEdits(t *testing.T) {
	builtins := make([]string, len(labels.Domains))
	for i, d := range labels.Domains {
		builtins[i], _ = prompts.Builtin(d)
	}
	for i, a := range builtins {
		for j, b := range builtins {
			if got := applyUnified(t, a, unifiedDiff("a", "b", a, b)); got != b {
				t.Fatalf("diff %d→%d does not apply", i, j)
			}
		}
	}
	// Past the size of the line table, the middle is replaced wholesale: still a correct diff.
	var big, other strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&big, "line %d\n", i)
		fmt.Fprintf(&other, "line %d\n", i*7%3001)
	}
	if got := applyUnified(t, big.String(), unifiedDiff("a", "b", big.String(), other.String())); got != other.String() {
		t.Fatal("the wholesale diff does not apply")
	}
}

// applyUnified applies a unified diff made by unifiedDiff to a.
func applyUnified(t *testing.T, a, diff string) string {
	t.Helper()
	if diff == "" {
		return a
	}
	src := splitLines(a)
	lines := splitLines(diff)
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "--- ") || !strings.HasPrefix(lines[1], "+++ ") {
		t.Fatalf("no header:\n%s", diff)
	}
	var out []string
	next := 0 // the next line of src to copy
	for i := 2; i < len(lines); {
		var aStart, aCount, bStart, bCount int
		header := strings.TrimSuffix(lines[i], "\n")
		if !parseHunkHeader(header, &aStart, &aCount, &bStart, &bCount) {
			t.Fatalf("bad hunk header %q", header)
		}
		from := aStart - 1
		if aCount == 0 {
			from = aStart
		}
		out = append(out, src[next:from]...)
		next = from
		i++
		seenA, seenB := 0, 0
		for i < len(lines) && !strings.HasPrefix(lines[i], "@@ ") {
			l := lines[i]
			i++
			body := l[1:]
			if i < len(lines) && lines[i] == "\\ No newline at end of file\n" {
				body = strings.TrimSuffix(body, "\n")
				i++
			}
			switch l[0] {
			case ' ':
				if src[next] != body {
					t.Fatalf("context %q does not match %q", body, src[next])
				}
				out = append(out, body)
				next++
				seenA++
				seenB++
			case '-':
				if src[next] != body {
					t.Fatalf("removed %q does not match %q", body, src[next])
				}
				next++
				seenA++
			case '+':
				out = append(out, body)
				seenB++
			default:
				t.Fatalf("bad diff line %q", l)
			}
		}
		if seenA != aCount || seenB != bCount {
			t.Fatalf("hunk %q holds %d/%d lines", header, seenA, seenB)
		}
	}
	out = append(out, src[next:]...)
	return strings.Join(out, "")
}

func parseHunkHeader(h string, aStart, aCount, bStart, bCount *int) bool {
	var a, b string
	if _, err := fmt.Sscanf(h, "@@ -%s +%s @@", &a, &b); err != nil {
		return false
	}
	parse := func(r string, start, count *int) bool {
		s, c, found := strings.Cut(r, ",")
		var err error
		if *start, err = strconv.Atoi(s); err != nil {
			return false
		}
		*count = 1
		if found {
			*count, err = strconv.Atoi(c)
		}
		return err == nil
	}
	return parse(a, aStart, aCount) && parse(b, bStart, bCount)
}
