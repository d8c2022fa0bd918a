// Package prompts holds the prompt templates: one built-in template per domain, replaceable
// for everyone or per annotator, with numbered versions and one active version per
// (annotator, domain). It is the one place that renders a prompt.
package prompts

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mhannotator/mha/internal/labels"
)

// Placeholder is replaced by the sample text.
const Placeholder = "{text}"

//go:embed templates/*.txt
var builtin embed.FS

// Sources of a resolved prompt, from most to least specific.
const (
	SourceVersion  = "version"
	SourceOverride = "override"
	SourceBase     = "base"
	SourceBuiltin  = "builtin"
)

// Prompt is the template a run uses, where it came from, and its content hash, which is
// recorded on every annotation so results can be traced to the exact wording.
type Prompt struct {
	Template string
	Source   string
	Version  string // version file name when Source is SourceVersion
	Hash     string
}

// Render puts text into the template. Only the literal {text} is replaced, once per
// occurrence in the template; other braces in the template or the text are left alone, and
// a {text} inside the sample is not expanded again.
func Render(template, text string) string {
	return strings.ReplaceAll(template, Placeholder, text)
}

// Hash identifies a template's content.
func Hash(template string) string {
	sum := sha256.Sum256([]byte(template))
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// Validate checks that a template can be used.
func Validate(template string) error {
	if !strings.Contains(template, Placeholder) {
		return fmt.Errorf("template has no %s placeholder", Placeholder)
	}
	return nil
}

// Builtin returns the template shipped for d.
func Builtin(d labels.Domain) (string, error) {
	b, err := builtin.ReadFile("templates/" + string(d) + ".txt")
	if err != nil {
		return "", fmt.Errorf("no built-in prompt for domain %q", d)
	}
	return string(b), nil
}

// Library reads and writes the prompt files under one directory (normally config/prompts):
//
//	base/<domain>.txt                             replaces the built-in template for everyone
//	overrides/annotator_<id>/<domain>.txt         one annotator's own template
//	versions/annotator_<id>/<domain>/v<N>_<name>.txt   numbered versions
//	active_versions.json                          {"annotator_<id>": {"<domain>": "v<N>_<name>.txt"}}
type Library struct {
	Dir string
}

// Active resolves the template a run of (annotator, domain) uses: the active version, else the
// annotator's override, else the shared base file, else the built-in template.
func (l Library) Active(annotator string, d labels.Domain) (Prompt, error) {
	active, err := l.activeVersions()
	if err != nil {
		return Prompt{}, err
	}
	if name := active[annotatorKey(annotator)][string(d)]; name != "" {
		tmpl, err := l.readTemplate(filepath.Join(l.versionDir(annotator, d), name))
		if err != nil {
			return Prompt{}, fmt.Errorf("active prompt version of annotator %s, %s: %w", annotator, d, err)
		}
		return newPrompt(tmpl, SourceVersion, name), nil
	}
	for _, c := range []struct{ path, source string }{
		{filepath.Join(l.Dir, "overrides", annotatorKey(annotator), string(d)+".txt"), SourceOverride},
		{filepath.Join(l.Dir, "base", string(d)+".txt"), SourceBase},
	} {
		tmpl, err := l.readTemplate(c.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Prompt{}, err
		}
		return newPrompt(tmpl, c.source, ""), nil
	}
	tmpl, err := Builtin(d)
	if err != nil {
		return Prompt{}, err
	}
	return newPrompt(tmpl, SourceBuiltin, ""), nil
}

func newPrompt(tmpl, source, version string) Prompt {
	return Prompt{Template: tmpl, Source: source, Version: version, Hash: Hash(tmpl)}
}

func (l Library) readTemplate(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if err := Validate(string(b)); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return string(b), nil
}

// Version describes one saved version.
type Version struct {
	File        string    `json:"file"`
	Number      int       `json:"number"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	Hash        string    `json:"hash"`
	Active      bool      `json:"active"`
}

var (
	versionName = regexp.MustCompile(`^[A-Za-z0-9_]{1,50}$`)
	versionFile = regexp.MustCompile(`^v([0-9]+)_([A-Za-z0-9_]+)\.txt$`)
)

// SaveVersion stores a new version numbered one above the highest existing one. It does not
// activate it.
func (l Library) SaveVersion(annotator string, d labels.Domain, name, description, template string) (Version, error) {
	if !versionName.MatchString(name) {
		return Version{}, fmt.Errorf("version name %q: use 1-50 letters, digits or underscores", name)
	}
	if err := Validate(template); err != nil {
		return Version{}, err
	}
	dir := l.versionDir(annotator, d)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Version{}, fmt.Errorf("save prompt version: %w", err)
	}
	for {
		existing, err := l.Versions(annotator, d)
		if err != nil {
			return Version{}, err
		}
		n := 1
		if len(existing) > 0 {
			n = existing[len(existing)-1].Number + 1
		}
		v := Version{File: fmt.Sprintf("v%d_%s.txt", n, name), Number: n, Name: name, Description: description,
			Created: time.Now().UTC().Truncate(time.Second), Hash: Hash(template)}
		// O_EXCL makes two concurrent saves pick different numbers instead of overwriting.
		f, err := os.OpenFile(filepath.Join(dir, v.File), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return Version{}, fmt.Errorf("save prompt version: %w", err)
		}
		_, werr := f.WriteString(template)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr == nil {
			werr = writeJSONAtomic(filepath.Join(dir, strings.TrimSuffix(v.File, ".txt")+".json"), v)
		}
		if werr != nil {
			return Version{}, fmt.Errorf("save prompt version: %w", werr)
		}
		return v, nil
	}
}

// Versions lists the saved versions of (annotator, domain) by number.
func (l Library) Versions(annotator string, d labels.Domain) ([]Version, error) {
	dir := l.versionDir(annotator, d)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list prompt versions: %w", err)
	}
	active, err := l.activeVersions()
	if err != nil {
		return nil, err
	}
	var out []Version
	for _, e := range entries {
		m := versionFile.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		v := Version{File: e.Name(), Number: n, Name: m[2]}
		if b, err := os.ReadFile(filepath.Join(dir, strings.TrimSuffix(e.Name(), ".txt")+".json")); err == nil {
			_ = json.Unmarshal(b, &v) // the metadata is a convenience; the file name is authoritative
			v.File, v.Number, v.Name = e.Name(), n, m[2]
		}
		if tmpl, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
			v.Hash = Hash(string(tmpl))
		}
		v.Active = active[annotatorKey(annotator)][string(d)] == e.Name()
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b Version) int { return a.Number - b.Number })
	return out, nil
}

// Activate makes file the active version of (annotator, domain); "" goes back to the
// override, base or built-in template.
func (l Library) Activate(annotator string, d labels.Domain, file string) error {
	if file != "" {
		if !versionFile.MatchString(file) {
			return fmt.Errorf("%q is not a version file name (v<N>_<name>.txt)", file)
		}
		if _, err := l.readTemplate(filepath.Join(l.versionDir(annotator, d), file)); err != nil {
			return fmt.Errorf("activate prompt version: %w", err)
		}
	}
	active, err := l.activeVersions()
	if err != nil {
		return err
	}
	key := annotatorKey(annotator)
	if active[key] == nil {
		active[key] = map[string]string{}
	}
	if file == "" {
		delete(active[key], string(d))
	} else {
		active[key][string(d)] = file
	}
	return writeJSONAtomic(filepath.Join(l.Dir, "active_versions.json"), active)
}

// activeVersions reads active_versions.json. The seed wrote null for "no version", which
// decodes to "" here.
func (l Library) activeVersions() (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	b, err := os.ReadFile(filepath.Join(l.Dir, "active_versions.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read active prompt versions: %w", err)
	}
	var raw map[string]map[string]*string
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("read active prompt versions: %s: %w", filepath.Join(l.Dir, "active_versions.json"), err)
	}
	for a, domains := range raw {
		out[a] = map[string]string{}
		for d, file := range domains {
			if file != nil {
				out[a][d] = *file
			}
		}
	}
	return out, nil
}

func (l Library) versionDir(annotator string, d labels.Domain) string {
	return filepath.Join(l.Dir, "versions", annotatorKey(annotator), string(d))
}

func annotatorKey(annotator string) string { return "annotator_" + annotator }

// writeJSONAtomic replaces path in one step, so a reader never sees half a file.
func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
