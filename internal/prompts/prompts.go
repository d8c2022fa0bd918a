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
	SourceVersion       = "version"        // the annotator's active version
	SourceOverride      = "override"       // the annotator's override file
	SourceSharedVersion = "shared_version" // the active shared version
	SourceBase          = "base"
	SourceBuiltin       = "builtin"
)

// Shared is the annotator "" that names the versions shared by every annotator: an active
// shared version replaces the base file for every annotator without a version or override of
// its own.
const Shared = ""

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
//	versions/shared/<domain>/v<N>_<name>.txt      numbered versions shared by every annotator
//	active_versions.json                          {"annotator_<id>": {"<domain>": "v<N>_<name>.txt"}, "shared": {...}}
//
// Methods taking an annotator take Shared ("") for the shared versions.
type Library struct {
	Dir string
}

// Active resolves the template a run of (annotator, domain) uses: the annotator's active
// version, else its override, else the active shared version, else the shared base file, else
// the built-in template. For Shared it resolves the template of an annotator with neither a
// version nor an override of its own.
func (l Library) Active(annotator string, d labels.Domain) (Prompt, error) {
	active, err := l.activeVersions()
	if err != nil {
		return Prompt{}, err
	}
	owners := []string{Shared}
	if annotator != Shared {
		owners = []string{annotator, Shared}
	}
	for _, owner := range owners {
		if name := active[annotatorKey(owner)][string(d)]; name != "" {
			tmpl, err := l.readTemplate(filepath.Join(l.versionDir(owner, d), name))
			if err != nil {
				return Prompt{}, fmt.Errorf("active prompt version of %s, %s: %w", ownerName(owner), d, err)
			}
			source := SourceVersion
			if owner == Shared {
				source = SourceSharedVersion
			}
			return newPrompt(tmpl, source, name), nil
		}
		if owner == Shared {
			break
		}
		tmpl, err := l.readTemplate(filepath.Join(l.Dir, "overrides", annotatorKey(owner), string(d)+".txt"))
		if err == nil {
			return newPrompt(tmpl, SourceOverride, ""), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return Prompt{}, err
		}
	}
	tmpl, err := l.readTemplate(filepath.Join(l.Dir, "base", string(d)+".txt"))
	if err == nil {
		return newPrompt(tmpl, SourceBase, ""), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return Prompt{}, err
	}
	tmpl, err = Builtin(d)
	if err != nil {
		return Prompt{}, err
	}
	return newPrompt(tmpl, SourceBuiltin, ""), nil
}

func ownerName(annotator string) string {
	if annotator == Shared {
		return "the shared versions"
	}
	return "annotator " + annotator
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

// CheckVersionName refuses a name SaveVersion would refuse.
func CheckVersionName(name string) error {
	if !versionName.MatchString(name) {
		return fmt.Errorf("version name %q: use 1-50 letters, digits or underscores", name)
	}
	return nil
}

// IsVersionFile reports whether file is a version file name as SaveVersion makes them
// (v<N>_<name>.txt): a plain name, never a path.
func IsVersionFile(file string) bool { return versionFile.MatchString(file) }

// ErrActive refuses to delete the active version.
var ErrActive = errors.New("the version is active")

// SaveVersion stores a new version numbered one above the highest existing one. It does not
// activate it.
func (l Library) SaveVersion(annotator string, d labels.Domain, name, description, template string) (Version, error) {
	if err := CheckVersionName(name); err != nil {
		return Version{}, err
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
		if v, ok := describe(dir, e.Name(), active[annotatorKey(annotator)][string(d)]); ok {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b Version) int { return a.Number - b.Number })
	return out, nil
}

// describe reads the metadata of version file name in dir; ok is false when name is not a
// version file name.
func describe(dir, name, activeFile string) (Version, bool) {
	m := versionFile.FindStringSubmatch(name)
	if m == nil {
		return Version{}, false
	}
	n, _ := strconv.Atoi(m[1])
	v := Version{File: name, Number: n, Name: m[2]}
	if b, err := os.ReadFile(filepath.Join(dir, strings.TrimSuffix(name, ".txt")+".json")); err == nil {
		_ = json.Unmarshal(b, &v) // the metadata is a convenience; the file name is authoritative
		v.File, v.Number, v.Name = name, n, m[2]
	}
	if tmpl, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
		v.Hash = Hash(string(tmpl))
	}
	v.Active = activeFile == name
	return v, true
}

// ReadVersion returns version file of (annotator, domain) and its template. A version that does
// not exist is an error wrapping fs.ErrNotExist.
func (l Library) ReadVersion(annotator string, d labels.Domain, file string) (Version, string, error) {
	if !IsVersionFile(file) {
		return Version{}, "", fmt.Errorf("%q is not a version file name (v<N>_<name>.txt)", file)
	}
	active, err := l.activeVersions()
	if err != nil {
		return Version{}, "", err
	}
	dir := l.versionDir(annotator, d)
	tmpl, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return Version{}, "", fmt.Errorf("read prompt version: %w", err)
	}
	v, _ := describe(dir, file, active[annotatorKey(annotator)][string(d)])
	return v, string(tmpl), nil
}

// Delete removes version file of (annotator, domain) and its metadata. The active version is
// refused with an error wrapping ErrActive (activate another one first); a version that does
// not exist is an error wrapping fs.ErrNotExist.
func (l Library) Delete(annotator string, d labels.Domain, file string) error {
	if !IsVersionFile(file) {
		return fmt.Errorf("%q is not a version file name (v<N>_<name>.txt)", file)
	}
	active, err := l.activeVersions()
	if err != nil {
		return err
	}
	if active[annotatorKey(annotator)][string(d)] == file {
		return fmt.Errorf("%s is the active %s version of %s: activate another version first: %w", file, d, ownerName(annotator), ErrActive)
	}
	dir := l.versionDir(annotator, d)
	if err := os.Remove(filepath.Join(dir, file)); err != nil {
		return fmt.Errorf("delete prompt version: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, strings.TrimSuffix(file, ".txt")+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete prompt version metadata: %w", err)
	}
	return nil
}

// Activate makes file the active version of (annotator, domain); "" goes back to the
// override, base or built-in template.
func (l Library) Activate(annotator string, d labels.Domain, file string) error {
	if file != "" {
		if !IsVersionFile(file) {
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

// annotatorKey names an annotator's entry in active_versions.json and its directories.
func annotatorKey(annotator string) string {
	if annotator == Shared {
		return "shared"
	}
	return "annotator_" + annotator
}

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
