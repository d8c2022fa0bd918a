package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/prompts"
)

func init() { registrations = append(registrations, (*Server).promptRoutes) }

// Names a diff takes besides version files.
const (
	diffActive  = "active"
	diffBuiltin = "builtin"
)

// maxTemplateBytes bounds a saved template; the built-in ones are a few kilobytes.
const maxTemplateBytes = 256 << 10

// PromptSummary is the prompt one (annotator, domain) pair uses now.
type PromptSummary struct {
	Annotator string `json:"annotator" doc:"empty for the shared template, which every annotator without its own version or override uses"`
	Domain    string `json:"domain"`
	Source    string `json:"source" enum:"version,override,shared_version,base,builtin"`
	Version   string `json:"version,omitempty" doc:"the active version file, when source is version or shared_version"`
	Hash      string `json:"hash,omitempty" doc:"the template's content hash, recorded on every annotation"`
	Error     string `json:"error,omitempty" doc:"why the prompt cannot be used (a file without {text}, say)"`
}

// ActivePrompt is the template a pair uses, with its text.
type ActivePrompt struct {
	Source   string `json:"source" enum:"version,override,shared_version,base,builtin"`
	Version  string `json:"version,omitempty"`
	Hash     string `json:"hash"`
	Template string `json:"template"`
}

// PromptVersion is one saved version.
type PromptVersion struct {
	File        string    `json:"file" example:"v2_shorter.txt"`
	Number      int       `json:"number"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Hash        string    `json:"hash"`
	CreatedAt   time.Time `json:"created_at"`
	Active      bool      `json:"active"`
	Template    string    `json:"template,omitempty"`
}

// PromptState is a pair's active prompt and its saved versions.
type PromptState struct {
	Annotator string          `json:"annotator"`
	Domain    string          `json:"domain"`
	Active    ActivePrompt    `json:"active"`
	Versions  []PromptVersion `json:"versions"`
}

// PromptDiff compares two templates.
type PromptDiff struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Unified string `json:"unified" doc:"unified diff, 3 lines of context; empty when the templates are the same"`
}

// PromptDomainParam, PromptAnnotatorParam and PromptFileParam are the prompt routes'
// parameters (exported: huma fills embedded structs only when they are).
type PromptDomainParam struct {
	Domain string `path:"domain" enum:"urgency,therapeutic,intensity,adjunct,modality,redressal" doc:"the domain"`
}

type PromptAnnotatorParam struct {
	Annotator string `query:"annotator" maxLength:"32" doc:"an annotator of the config; empty for the shared template"`
}

type PromptFileParam struct {
	File string `path:"file" maxLength:"80" doc:"a version file name, v<N>_<name>.txt" example:"v1_shorter.txt"`
}

type promptStateInput struct {
	PromptDomainParam
	PromptAnnotatorParam
}

type promptVersionInput struct {
	PromptDomainParam
	PromptFileParam
	PromptAnnotatorParam
}

type promptSaveInput struct {
	PromptDomainParam
	PromptAnnotatorParam
	Body struct {
		Name        string `json:"name" doc:"1-50 letters, digits or underscores; the file is v<N>_<name>.txt" example:"shorter"`
		Description string `json:"description,omitempty" maxLength:"2000"`
		Template    string `json:"template" doc:"the prompt, with {text} where the sample goes"`
	}
}

type promptDiffInput struct {
	PromptDomainParam
	PromptAnnotatorParam
	From string `query:"from" required:"true" maxLength:"80" doc:"a version file, active or builtin"`
	To   string `query:"to" required:"true" maxLength:"80" doc:"a version file, active or builtin"`
}

type promptsOutput struct {
	Body struct {
		Prompts []PromptSummary `json:"prompts"`
	}
}

type promptStateOutput struct {
	Body PromptState
}

type promptVersionOutput struct {
	Body PromptVersion
}

type promptDiffOutput struct {
	Body PromptDiff
}

func (s *Server) promptRoutes() {
	tags := []string{"prompts"}
	huma.Register(s.api, huma.Operation{OperationID: "list-prompts", Method: http.MethodGet, Path: "/api/prompts",
		Summary: "The prompt each (annotator, domain) uses", Tags: tags,
		Description: "One entry per domain for the shared template (annotator empty), then one per annotator and domain."}, s.listPrompts)
	huma.Register(s.api, huma.Operation{OperationID: "get-prompt", Method: http.MethodGet, Path: "/api/prompts/{domain}",
		Summary: "A pair's active prompt and its saved versions", Tags: tags}, s.getPrompt)
	huma.Register(s.api, huma.Operation{OperationID: "save-prompt-version", Method: http.MethodPost, Path: "/api/prompts/{domain}",
		Summary: "Save a new prompt version", Tags: tags, DefaultStatus: http.StatusCreated,
		Description: "Numbered one above the highest version; it is not activated."}, s.savePromptVersion)
	huma.Register(s.api, huma.Operation{OperationID: "get-prompt-version", Method: http.MethodGet, Path: "/api/prompts/{domain}/versions/{file}",
		Summary: "A saved version with its template", Tags: tags}, s.getPromptVersion)
	huma.Register(s.api, huma.Operation{OperationID: "activate-prompt-version", Method: http.MethodPost, Path: "/api/prompts/{domain}/versions/{file}/activate",
		Summary: "Make a version the one runs use", Tags: tags,
		Description: "Runs pick it up at their next batch; each annotation records the hash of the template it used."}, s.activatePromptVersion)
	huma.Register(s.api, huma.Operation{OperationID: "deactivate-prompt-version", Method: http.MethodDelete, Path: "/api/prompts/{domain}/active",
		Summary: "Go back from versions to the override, shared or built-in template", Tags: tags}, s.deactivatePromptVersion)
	huma.Register(s.api, huma.Operation{OperationID: "delete-prompt-version", Method: http.MethodDelete, Path: "/api/prompts/{domain}/versions/{file}",
		Summary: "Delete a saved version", Tags: tags, Description: "The active version is refused (409): activate another one first."}, s.deletePromptVersion)
	huma.Register(s.api, huma.Operation{OperationID: "diff-prompts", Method: http.MethodGet, Path: "/api/prompts/{domain}/diff",
		Summary: "Compare two templates", Tags: tags}, s.diffPrompts)
}

func (s *Server) promptLibrary() prompts.Library {
	return prompts.Library{Dir: filepath.Join(s.configDir(), "prompts")}
}

// promptOwner checks the annotator query: one of the config, or empty for the shared template.
func (s *Server) promptOwner(annotator string) error {
	if annotator == prompts.Shared {
		return nil
	}
	cfg, _, err := s.configWithoutKeys()
	if err != nil {
		return err
	}
	if _, ok := cfg.Annotator(annotator); ok {
		return nil
	}
	ids := make([]string, len(cfg.Annotators))
	for i, a := range cfg.Annotators {
		ids[i] = a.ID
	}
	return huma.Error422UnprocessableEntity("no such annotator", &huma.ErrorDetail{Location: "query.annotator",
		Message: "annotator " + annotator + " is not in the config (annotators: " + strings.Join(ids, ", ") + "; empty for the shared template)", Value: annotator})
}

// checkVersionFile refuses anything but a plain version file name, so no path reaches the disk.
func checkVersionFile(file, location string) error {
	if prompts.IsVersionFile(file) {
		return nil
	}
	return huma.Error422UnprocessableEntity("not a version file", &huma.ErrorDetail{Location: location,
		Message: "expected a version file name such as v1_shorter.txt (v<N>_<name>.txt)", Value: file})
}

// promptError turns a library error into problem details.
func promptError(err error, file string) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return huma.Error404NotFound("no such prompt version", &huma.ErrorDetail{Location: "path.file", Message: "there is no version " + file, Value: file})
	case errors.Is(err, prompts.ErrActive):
		return huma.Error409Conflict(err.Error(), &huma.ErrorDetail{Location: "path.file", Message: err.Error(), Value: file})
	}
	return huma.Error500InternalServerError("prompts: " + err.Error())
}

func (s *Server) listPrompts(context.Context, *struct{}) (*promptsOutput, error) {
	cfg, _, err := s.configWithoutKeys()
	if err != nil {
		return nil, err
	}
	lib := s.promptLibrary()
	out := &promptsOutput{}
	owners := []string{prompts.Shared}
	for _, a := range cfg.Annotators {
		owners = append(owners, a.ID)
	}
	for _, owner := range owners {
		for _, d := range labels.Domains {
			sum := PromptSummary{Annotator: owner, Domain: string(d)}
			if p, err := lib.Active(owner, d); err != nil {
				sum.Error = err.Error()
			} else {
				sum.Source, sum.Version, sum.Hash = p.Source, p.Version, p.Hash
			}
			out.Body.Prompts = append(out.Body.Prompts, sum)
		}
	}
	return out, nil
}

func (s *Server) promptState(annotator string, d labels.Domain) (*promptStateOutput, error) {
	lib := s.promptLibrary()
	p, err := lib.Active(annotator, d)
	if err != nil {
		return nil, huma.Error500InternalServerError("the active prompt cannot be read: " + err.Error())
	}
	versions, err := lib.Versions(annotator, d)
	if err != nil {
		return nil, huma.Error500InternalServerError(err.Error())
	}
	out := &promptStateOutput{Body: PromptState{Annotator: annotator, Domain: string(d),
		Active:   ActivePrompt{Source: p.Source, Version: p.Version, Hash: p.Hash, Template: p.Template},
		Versions: make([]PromptVersion, len(versions))}}
	for i, v := range versions {
		out.Body.Versions[i] = promptVersion(v)
	}
	return out, nil
}

func promptVersion(v prompts.Version) PromptVersion {
	return PromptVersion{File: v.File, Number: v.Number, Name: v.Name, Description: v.Description, Hash: v.Hash, CreatedAt: v.Created, Active: v.Active}
}

func (s *Server) getPrompt(_ context.Context, in *promptStateInput) (*promptStateOutput, error) {
	if err := s.promptOwner(in.Annotator); err != nil {
		return nil, err
	}
	return s.promptState(in.Annotator, labels.Domain(in.Domain))
}

func (s *Server) getPromptVersion(_ context.Context, in *promptVersionInput) (*promptVersionOutput, error) {
	if err := checkVersionFile(in.File, "path.file"); err != nil {
		return nil, err
	}
	if err := s.promptOwner(in.Annotator); err != nil {
		return nil, err
	}
	v, tmpl, err := s.promptLibrary().ReadVersion(in.Annotator, labels.Domain(in.Domain), in.File)
	if err != nil {
		return nil, promptError(err, in.File)
	}
	out := &promptVersionOutput{Body: promptVersion(v)}
	out.Body.Template = tmpl
	return out, nil
}

func (s *Server) savePromptVersion(_ context.Context, in *promptSaveInput) (*promptVersionOutput, error) {
	if err := s.promptOwner(in.Annotator); err != nil {
		return nil, err
	}
	var problems []error
	if err := prompts.CheckVersionName(in.Body.Name); err != nil {
		problems = append(problems, &huma.ErrorDetail{Location: "body.name", Message: err.Error(), Value: in.Body.Name})
	}
	if len(in.Body.Template) > maxTemplateBytes {
		problems = append(problems, &huma.ErrorDetail{Location: "body.template", Message: "is longer than 256 KiB"})
	} else if err := prompts.Validate(in.Body.Template); err != nil {
		problems = append(problems, &huma.ErrorDetail{Location: "body.template", Message: err.Error()})
	}
	if len(problems) > 0 {
		return nil, huma.Error422UnprocessableEntity("the version cannot be saved", problems...)
	}
	s.configMu.Lock()
	defer s.configMu.Unlock()
	v, err := s.promptLibrary().SaveVersion(in.Annotator, labels.Domain(in.Domain), in.Body.Name, in.Body.Description, in.Body.Template)
	if err != nil {
		return nil, huma.Error500InternalServerError(err.Error())
	}
	s.o.Logger.Info("prompt version saved", "annotator", in.Annotator, "domain", in.Domain, "file", v.File, "hash", v.Hash)
	out := &promptVersionOutput{Body: promptVersion(v)}
	out.Body.Template = in.Body.Template
	return out, nil
}

func (s *Server) activatePromptVersion(_ context.Context, in *promptVersionInput) (*promptStateOutput, error) {
	if err := checkVersionFile(in.File, "path.file"); err != nil {
		return nil, err
	}
	if err := s.promptOwner(in.Annotator); err != nil {
		return nil, err
	}
	s.configMu.Lock()
	defer s.configMu.Unlock()
	lib := s.promptLibrary()
	d := labels.Domain(in.Domain)
	// Activate reports a missing file with its path; answer with the name only.
	if _, _, err := lib.ReadVersion(in.Annotator, d, in.File); err != nil {
		return nil, promptError(err, in.File)
	}
	if err := lib.Activate(in.Annotator, d, in.File); err != nil {
		return nil, huma.Error422UnprocessableEntity("the version cannot be activated", &huma.ErrorDetail{Location: "path.file", Message: err.Error(), Value: in.File})
	}
	s.o.Logger.Info("prompt version activated", "annotator", in.Annotator, "domain", in.Domain, "file", in.File)
	return s.promptState(in.Annotator, d)
}

func (s *Server) deactivatePromptVersion(_ context.Context, in *promptStateInput) (*promptStateOutput, error) {
	if err := s.promptOwner(in.Annotator); err != nil {
		return nil, err
	}
	s.configMu.Lock()
	defer s.configMu.Unlock()
	d := labels.Domain(in.Domain)
	if err := s.promptLibrary().Activate(in.Annotator, d, ""); err != nil {
		return nil, huma.Error500InternalServerError(err.Error())
	}
	s.o.Logger.Info("prompt version deactivated", "annotator", in.Annotator, "domain", in.Domain)
	return s.promptState(in.Annotator, d)
}

func (s *Server) deletePromptVersion(_ context.Context, in *promptVersionInput) (*promptStateOutput, error) {
	if err := checkVersionFile(in.File, "path.file"); err != nil {
		return nil, err
	}
	if err := s.promptOwner(in.Annotator); err != nil {
		return nil, err
	}
	s.configMu.Lock()
	defer s.configMu.Unlock()
	d := labels.Domain(in.Domain)
	if err := s.promptLibrary().Delete(in.Annotator, d, in.File); err != nil {
		return nil, promptError(err, in.File)
	}
	s.o.Logger.Info("prompt version deleted", "annotator", in.Annotator, "domain", in.Domain, "file", in.File)
	return s.promptState(in.Annotator, d)
}

func (s *Server) diffPrompts(_ context.Context, in *promptDiffInput) (*promptDiffOutput, error) {
	var problems []error
	for _, q := range []struct{ name, value string }{{"from", in.From}, {"to", in.To}} {
		if q.value != diffActive && q.value != diffBuiltin && !prompts.IsVersionFile(q.value) {
			problems = append(problems, &huma.ErrorDetail{Location: "query." + q.name,
				Message: "expected a version file name (v<N>_<name>.txt), active or builtin", Value: q.value})
		}
	}
	if len(problems) > 0 {
		return nil, huma.Error422UnprocessableEntity("nothing to compare", problems...)
	}
	if err := s.promptOwner(in.Annotator); err != nil {
		return nil, err
	}
	d := labels.Domain(in.Domain)
	from, err := s.promptText(in.Annotator, d, in.From, "query.from")
	if err != nil {
		return nil, err
	}
	to, err := s.promptText(in.Annotator, d, in.To, "query.to")
	if err != nil {
		return nil, err
	}
	return &promptDiffOutput{Body: PromptDiff{From: in.From, To: in.To, Unified: unifiedDiff(in.From, in.To, from, to)}}, nil
}

// promptText resolves a diff side: a version file, active or builtin.
func (s *Server) promptText(annotator string, d labels.Domain, name, location string) (string, error) {
	switch name {
	case diffActive:
		p, err := s.promptLibrary().Active(annotator, d)
		if err != nil {
			return "", huma.Error500InternalServerError("the active prompt cannot be read: " + err.Error())
		}
		return p.Template, nil
	case diffBuiltin:
		t, err := prompts.Builtin(d)
		if err != nil {
			return "", huma.Error500InternalServerError(err.Error())
		}
		return t, nil
	}
	_, t, err := s.promptLibrary().ReadVersion(annotator, d, name)
	if errors.Is(err, fs.ErrNotExist) {
		return "", huma.Error404NotFound("no such prompt version", &huma.ErrorDetail{Location: location, Message: "there is no version " + name, Value: name})
	}
	if err != nil {
		return "", huma.Error500InternalServerError(err.Error())
	}
	return t, nil
}

// diffContext is the number of unchanged lines around each change, as diff -u shows.
const diffContext = 3

// maxDiffCells bounds the line-matching table; beyond it the changed middle of two very
// different long texts is shown as replaced wholesale, still a correct diff.
const maxDiffCells = 4 << 20

// diffOp is one line of an edit script: ' ' kept, '-' removed, '+' added.
type diffOp struct {
	kind byte
	line string // with its line break, if it has one
}

// unifiedDiff is the unified diff (diff -u, without timestamps) that turns a into b; "" when
// they are the same. A last line without a line break is marked as diff marks it.
func unifiedDiff(fromName, toName, a, b string) string {
	if a == b {
		return ""
	}
	ops := diffLines(splitLines(a), splitLines(b))
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", fromName, toName)
	// aBefore[i] and bBefore[i] count the lines of a and b before ops[i].
	aBefore := make([]int, len(ops)+1)
	bBefore := make([]int, len(ops)+1)
	for i, op := range ops {
		aBefore[i+1], bBefore[i+1] = aBefore[i], bBefore[i]
		if op.kind != '+' {
			aBefore[i+1]++
		}
		if op.kind != '-' {
			bBefore[i+1]++
		}
	}
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		// A hunk runs from diffContext lines before this change to diffContext lines after
		// the last change that is at most 2*diffContext kept lines from the one before it.
		start := max(i-diffContext, 0)
		end := i
		for j := i; j < len(ops); j++ {
			if ops[j].kind != ' ' {
				end = j + 1
				continue
			}
			if j-end >= 2*diffContext {
				break
			}
		}
		stop := min(end+diffContext, len(ops))
		aStart, aCount := aBefore[start], aBefore[stop]-aBefore[start]
		bStart, bCount := bBefore[start], bBefore[stop]-bBefore[start]
		fmt.Fprintf(&out, "@@ -%s +%s @@\n", hunkRange(aStart, aCount), hunkRange(bStart, bCount))
		for _, op := range ops[start:stop] {
			out.WriteByte(op.kind)
			out.WriteString(op.line)
			if !strings.HasSuffix(op.line, "\n") {
				out.WriteString("\n\\ No newline at end of file\n")
			}
		}
		i = stop
	}
	return out.String()
}

// hunkRange writes a hunk's line range as diff does: "start,count", "start" alone for one line,
// and for no lines the line before the hunk.
func hunkRange(before, count int) string {
	switch count {
	case 0:
		return fmt.Sprintf("%d,0", before)
	case 1:
		return fmt.Sprintf("%d", before+1)
	}
	return fmt.Sprintf("%d,%d", before+1, count)
}

// splitLines cuts s after each line break, so "a\nb" is ["a\n", "b"] and a last line with or
// without its break are different lines.
func splitLines(s string) []string {
	var lines []string
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			lines = append(lines, s)
			break
		}
		lines = append(lines, s[:i+1])
		s = s[i+1:]
	}
	return lines
}

// diffLines is an edit script from a to b that keeps a longest common subsequence of lines.
func diffLines(a, b []string) []diffOp {
	var head, tail []diffOp
	for len(a) > 0 && len(b) > 0 && a[0] == b[0] {
		head = append(head, diffOp{' ', a[0]})
		a, b = a[1:], b[1:]
	}
	for len(a) > 0 && len(b) > 0 && a[len(a)-1] == b[len(b)-1] {
		tail = append(tail, diffOp{' ', a[len(a)-1]})
		a, b = a[:len(a)-1], b[:len(b)-1]
	}
	ops := head
	if (len(a)+1)*(len(b)+1) > maxDiffCells {
		for _, l := range a {
			ops = append(ops, diffOp{'-', l})
		}
		for _, l := range b {
			ops = append(ops, diffOp{'+', l})
		}
	} else {
		// lcs[i][j] is the length of a longest common subsequence of a[i:] and b[j:].
		w := len(b) + 1
		lcs := make([]int32, (len(a)+1)*w)
		for i := len(a) - 1; i >= 0; i-- {
			for j := len(b) - 1; j >= 0; j-- {
				if a[i] == b[j] {
					lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
				} else {
					lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
				}
			}
		}
		i, j := 0, 0
		for i < len(a) || j < len(b) {
			switch {
			case i < len(a) && j < len(b) && a[i] == b[j]:
				ops = append(ops, diffOp{' ', a[i]})
				i, j = i+1, j+1
			case i < len(a) && (j == len(b) || lcs[(i+1)*w+j] >= lcs[i*w+j+1]):
				// Removals first, as diff shows them.
				ops = append(ops, diffOp{'-', a[i]})
				i++
			default:
				ops = append(ops, diffOp{'+', b[j]})
				j++
			}
		}
	}
	for k := len(tail) - 1; k >= 0; k-- {
		ops = append(ops, tail[k])
	}
	return ops
}
