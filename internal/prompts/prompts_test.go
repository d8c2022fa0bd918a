package prompts

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mhannotator/mha/internal/labels"
)

func TestEveryDomainHasABuiltinTemplateThatStatesItsLabels(t *testing.T) {
	for _, d := range labels.Domains {
		tmpl, err := Builtin(d)
		if err != nil {
			t.Fatalf("Builtin(%s): %v", d, err)
		}
		if strings.Count(tmpl, Placeholder) != 1 {
			t.Errorf("%s template has %d placeholders, want 1", d, strings.Count(tmpl, Placeholder))
		}
		for _, c := range labels.Catalog[d] {
			if !strings.Contains(tmpl, c.Code) {
				t.Errorf("%s template does not state label %s", d, c.Code)
			}
		}
		if !strings.Contains(tmpl, "<<") || !strings.Contains(tmpl, ">>") {
			t.Errorf("%s template does not show the <<...>> output format", d)
		}
	}
}

func TestTheTemplatesOwnExampleTagParses(t *testing.T) {
	// The example in each template is what a model copies; it must be a valid answer.
	for _, d := range labels.Domains {
		tmpl, _ := Builtin(d)
		tag, ok := labels.LastTag(tmpl)
		if !ok {
			t.Fatalf("%s template has no example tag", d)
		}
		if o := labels.Parse(d, "<<"+tag+">>"); !o.OK() {
			t.Errorf("%s template example <<%s>> does not parse: %+v", d, tag, o)
		}
	}
}

func TestRenderIsSafeWithBraces(t *testing.T) {
	cases := []struct{ name, tmpl, text, want string }{
		{"plain", "Text: {text}.", "hello", "Text: hello."},
		{"braces in the template stay", `JSON {"a": 1} then {text} and {other}`, "x", `JSON {"a": 1} then x and {other}`},
		{"braces in the text stay", "T={text}", "I wrote {} and {0} and {text}", "T=I wrote {} and {0} and {text}"},
		{"percent signs are not format verbs", "{text} 100%", "50% %s", "50% %s 100%"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Render(tc.tmpl, tc.text); got != tc.want {
				t.Fatalf("Render(%q, %q) = %q, want %q", tc.tmpl, tc.text, got, tc.want)
			}
		})
	}
}

func TestActiveResolvesVersionThenOverrideThenBaseThenBuiltin(t *testing.T) {
	dir := t.TempDir()
	lib := Library{Dir: dir}
	builtin, _ := Builtin(labels.Urgency)

	p, err := lib.Active("1", labels.Urgency)
	if err != nil || p.Source != SourceBuiltin || p.Template != builtin || p.Hash != Hash(builtin) {
		t.Fatalf("no files: got %+v, %v; want the built-in template", p, err)
	}

	write(t, filepath.Join(dir, "base", "urgency.txt"), "BASE {text}")
	if p, _ = lib.Active("1", labels.Urgency); p.Source != SourceBase || p.Template != "BASE {text}" {
		t.Fatalf("with base file: got %+v", p)
	}

	write(t, filepath.Join(dir, "overrides", "annotator_1", "urgency.txt"), "OVERRIDE {text}")
	if p, _ = lib.Active("1", labels.Urgency); p.Source != SourceOverride {
		t.Fatalf("with override: got %+v", p)
	}
	if p, _ = lib.Active("2", labels.Urgency); p.Source != SourceBase {
		t.Fatalf("another annotator must not see annotator 1's override: got %+v", p)
	}

	v, err := lib.SaveVersion("1", labels.Urgency, "short", "a shorter prompt", "V1 {text}")
	if err != nil {
		t.Fatal(err)
	}
	if p, _ = lib.Active("1", labels.Urgency); p.Source != SourceOverride {
		t.Fatalf("saving a version must not activate it: got %+v", p)
	}
	if err := lib.Activate("1", labels.Urgency, v.File); err != nil {
		t.Fatal(err)
	}
	if p, _ = lib.Active("1", labels.Urgency); p.Source != SourceVersion || p.Version != "v1_short.txt" || p.Template != "V1 {text}" {
		t.Fatalf("with active version: got %+v", p)
	}
	if err := lib.Activate("1", labels.Urgency, ""); err != nil {
		t.Fatal(err)
	}
	if p, _ = lib.Active("1", labels.Urgency); p.Source != SourceOverride {
		t.Fatalf("after deactivating: got %+v", p)
	}
}

func TestVersionsAreNumberedAndSortedPastNine(t *testing.T) {
	lib := Library{Dir: t.TempDir()}
	for i := 0; i < 11; i++ {
		if _, err := lib.SaveVersion("1", labels.Intensity, "try", "", "T {text}"); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := lib.Versions("1", labels.Intensity)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 11 {
		t.Fatalf("got %d versions, want 11", len(vs))
	}
	for i, v := range vs {
		if v.Number != i+1 {
			t.Fatalf("version %d has number %d (order %v)", i, v.Number, vs)
		}
	}
}

func TestConcurrentSavesGetDistinctNumbers(t *testing.T) {
	lib := Library{Dir: t.TempDir()}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Go(func() {
			if _, err := lib.SaveVersion("1", labels.Modality, "p", "", "P {text}"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	vs, _ := lib.Versions("1", labels.Modality)
	if len(vs) != 8 || vs[7].Number != 8 {
		t.Fatalf("got %d versions (%v), want numbers 1..8", len(vs), vs)
	}
}

func TestVersionKeepsItsDescription(t *testing.T) {
	lib := Library{Dir: t.TempDir()}
	if _, err := lib.SaveVersion("3", labels.Adjunct, "v", "why this version exists", "A {text}"); err != nil {
		t.Fatal(err)
	}
	vs, _ := lib.Versions("3", labels.Adjunct)
	if len(vs) != 1 || vs[0].Description != "why this version exists" || vs[0].Hash != Hash("A {text}") {
		t.Fatalf("got %+v", vs)
	}
}

func TestBadTemplatesAndNamesAreRefused(t *testing.T) {
	lib := Library{Dir: t.TempDir()}
	if _, err := lib.SaveVersion("1", labels.Urgency, "ok", "", "no placeholder"); err == nil || !strings.Contains(err.Error(), "{text}") {
		t.Fatalf("template without {text}: err = %v", err)
	}
	if _, err := lib.SaveVersion("1", labels.Urgency, "bad name!", "", "{text}"); err == nil || !strings.Contains(err.Error(), "version name") {
		t.Fatalf("bad name: err = %v", err)
	}
	if err := lib.Activate("1", labels.Urgency, "v9_missing.txt"); err == nil {
		t.Fatal("activating a missing version succeeded")
	}
	write(t, filepath.Join(lib.Dir, "overrides", "annotator_1", "urgency.txt"), "broken override")
	if _, err := lib.Active("1", labels.Urgency); err == nil || !strings.Contains(err.Error(), "placeholder") {
		t.Fatalf("override without placeholder: err = %v", err)
	}
}

func TestSeedActiveVersionsWithNullLoad(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "active_versions.json"), `{"annotator_1": {"urgency": null}}`)
	p, err := Library{Dir: dir}.Active("1", labels.Urgency)
	if err != nil || p.Source != SourceBuiltin {
		t.Fatalf("got %+v, %v", p, err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSharedVersionsServeEveryAnnotatorWithoutItsOwnPrompt(t *testing.T) {
	dir := t.TempDir()
	lib := Library{Dir: dir}
	write(t, filepath.Join(dir, "base", "urgency.txt"), "BASE {text}")
	v, err := lib.SaveVersion(Shared, labels.Urgency, "shared", "", "SHARED {text}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "versions", "shared", "urgency", v.File)); err != nil {
		t.Fatalf("shared version not under versions/shared: %v", err)
	}
	if p, _ := lib.Active("1", labels.Urgency); p.Source != SourceBase {
		t.Fatalf("a saved shared version must not be used before it is activated: got %+v", p)
	}
	if err := lib.Activate(Shared, labels.Urgency, v.File); err != nil {
		t.Fatal(err)
	}
	for _, annotator := range []string{Shared, "1", "2"} {
		if p, _ := lib.Active(annotator, labels.Urgency); p.Source != SourceSharedVersion || p.Template != "SHARED {text}" || p.Version != v.File {
			t.Fatalf("annotator %q: got %+v, want the shared version", annotator, p)
		}
	}
	write(t, filepath.Join(dir, "overrides", "annotator_1", "urgency.txt"), "OVERRIDE {text}")
	if p, _ := lib.Active("1", labels.Urgency); p.Source != SourceOverride {
		t.Fatalf("an annotator's override outranks the shared version: got %+v", p)
	}
	own, _ := lib.SaveVersion("2", labels.Urgency, "own", "", "OWN {text}")
	if err := lib.Activate("2", labels.Urgency, own.File); err != nil {
		t.Fatal(err)
	}
	if p, _ := lib.Active("2", labels.Urgency); p.Source != SourceVersion || p.Template != "OWN {text}" {
		t.Fatalf("an annotator's own version outranks the shared one: got %+v", p)
	}
	if vs, _ := lib.Versions(Shared, labels.Urgency); len(vs) != 1 || !vs[0].Active {
		t.Fatalf("shared versions: %+v", vs)
	}
	if vs, _ := lib.Versions("1", labels.Urgency); len(vs) != 0 {
		t.Fatalf("annotator 1 has no versions of its own, got %+v", vs)
	}
}

func TestReadVersionReturnsTheTemplateAndItsMetadata(t *testing.T) {
	lib := Library{Dir: t.TempDir()}
	v, err := lib.SaveVersion("1", labels.Modality, "calm", "calmer wording", "CALM {text}")
	if err != nil {
		t.Fatal(err)
	}
	got, tmpl, err := lib.ReadVersion("1", labels.Modality, v.File)
	if err != nil || tmpl != "CALM {text}" || got.Description != "calmer wording" || got.Hash != Hash(tmpl) || got.Number != 1 || got.Active {
		t.Fatalf("ReadVersion = %+v, %q, %v", got, tmpl, err)
	}
	if _, _, err := lib.ReadVersion("1", labels.Modality, "v2_none.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing version: err = %v, want fs.ErrNotExist", err)
	}
	for _, bad := range []string{"../../../settings.json", "v1_calm.json", "v1_calm.txt/..", "", "sub/v1_calm.txt", "v1_../x.txt"} {
		if _, _, err := lib.ReadVersion("1", labels.Modality, bad); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadVersion(%q): err = %v, want a refused name", bad, err)
		}
		if IsVersionFile(bad) {
			t.Errorf("IsVersionFile(%q) = true", bad)
		}
	}
}

func TestDeleteRefusesTheActiveVersionAndRemovesOthers(t *testing.T) {
	lib := Library{Dir: t.TempDir()}
	a, _ := lib.SaveVersion("1", labels.Therapeutic, "a", "", "A {text}")
	b, _ := lib.SaveVersion("1", labels.Therapeutic, "b", "", "B {text}")
	if err := lib.Activate("1", labels.Therapeutic, a.File); err != nil {
		t.Fatal(err)
	}
	err := lib.Delete("1", labels.Therapeutic, a.File)
	if !errors.Is(err, ErrActive) || !strings.Contains(err.Error(), "activate another version first") {
		t.Fatalf("deleting the active version: err = %v", err)
	}
	if p, _ := lib.Active("1", labels.Therapeutic); p.Version != a.File {
		t.Fatalf("refused delete changed the active prompt: %+v", p)
	}
	if err := lib.Delete("1", labels.Therapeutic, b.File); err != nil {
		t.Fatal(err)
	}
	vs, _ := lib.Versions("1", labels.Therapeutic)
	if len(vs) != 1 || vs[0].File != a.File {
		t.Fatalf("after delete: %+v", vs)
	}
	dir := filepath.Join(lib.Dir, "versions", "annotator_1", "therapeutic")
	if _, err := os.Stat(filepath.Join(dir, "v2_b.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("metadata left behind: %v", err)
	}
	if err := lib.Delete("1", labels.Therapeutic, b.File); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("deleting a missing version: err = %v, want fs.ErrNotExist", err)
	}
	if err := lib.Delete("1", labels.Therapeutic, "../../../active_versions.json"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("deleting a path: err = %v, want a refused name", err)
	}
	if _, err := os.Stat(filepath.Join(lib.Dir, "active_versions.json")); err != nil {
		t.Fatal(err)
	}
	// The same name in another annotator's or the shared versions is another version.
	if err := lib.Activate(Shared, labels.Therapeutic, ""); err != nil {
		t.Fatal(err)
	}
	s, _ := lib.SaveVersion(Shared, labels.Therapeutic, "a", "", "S {text}")
	if err := lib.Delete(Shared, labels.Therapeutic, s.File); err != nil {
		t.Fatalf("deleting a shared version named like annotator 1's active one: %v", err)
	}
}

// Providers cache a repeated prompt prefix: the instructions must come first and the sample's
// text last, so every call of a run shares all of the template before it.
func TestBuiltinTemplatesPutTheTextLast(t *testing.T) {
	for _, d := range labels.Domains {
		tmpl, err := Builtin(d)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(tmpl, Placeholder); n != 1 {
			t.Errorf("%s: %d placeholders; want one", d, n)
			continue
		}
		before, after, _ := strings.Cut(tmpl, Placeholder)
		if len(after) > 40 || len(before) < 10*len(after) {
			t.Errorf("%s: %d bytes follow the text (%q); the fixed part must come before it", d, len(after), after)
		}
	}
}
