package labels

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Outcome is what the parser made of one reply. Exactly one of three things is true: the label
// is valid (both errors empty), the reply has no tag (ParseError), or the tag holds no valid
// label (ValidityError).
type Outcome struct {
	Label         string
	ParseError    string
	ValidityError string
}

// OK reports whether the reply carried a valid label.
func (o Outcome) OK() bool { return o.ParseError == "" && o.ValidityError == "" }

// Err is the parse or validity error, or "" for a valid label.
func (o Outcome) Err() string {
	if o.ParseError != "" {
		return o.ParseError
	}
	return o.ValidityError
}

var tagPattern = regexp.MustCompile(`(?s)<<(.*?)>>`)

// LastTag returns the content of the last <<...>> tag in reply, trimmed. The last one counts
// because replies often echo the template's example tag before giving their answer.
func LastTag(reply string) (string, bool) {
	matches := tagPattern.FindAllStringSubmatch(reply, -1)
	if len(matches) == 0 {
		return "", false
	}
	return strings.TrimSpace(matches[len(matches)-1][1]), true
}

// Parse extracts d's label from an LLM reply.
func Parse(d Domain, reply string) Outcome {
	if strings.TrimSpace(reply) == "" {
		return Outcome{ParseError: "empty reply"}
	}
	content, ok := LastTag(reply)
	if !ok {
		return Outcome{ParseError: "no <<...>> tag in reply"}
	}
	if content == "" {
		return Outcome{ValidityError: "the <<>> tag is empty"}
	}
	var (
		label string
		err   error
	)
	switch d {
	case Urgency:
		label, err = urgency.single(content)
	case Intensity:
		label, err = intensity.single(content)
	case Therapeutic:
		label, err = therapeutic.multi(content)
	case Modality:
		label, err = modality.multi(content)
	case Adjunct:
		label, err = parseAdjunct(content)
	case Redressal:
		label, err = parseRedressal(content)
	default:
		err = fmt.Errorf("unknown domain %q", d)
	}
	if err != nil {
		return Outcome{ValidityError: err.Error()}
	}
	return Outcome{Label: label}
}

// codeFamily is one domain's numbered codes, such as TA-1..TA-9.
type codeFamily struct {
	domain  Domain
	pattern *regexp.Regexp // captures the number
	format  string         // canonical form of code n
	max     int            // codes run 1..max (0..max when zero is true)
	zero    bool
}

var (
	urgency     = codeFamily{Urgency, regexp.MustCompile(`(?i)\bLEVEL[_\s]*(\d+)\b`), "LEVEL_%d", 4, true}
	intensity   = codeFamily{Intensity, regexp.MustCompile(`(?i)\bINT-(\d+)\b`), "INT-%d", 5, false}
	therapeutic = codeFamily{Therapeutic, regexp.MustCompile(`(?i)\bTA-(\d+)\b`), "TA-%d", 9, false}
	adjunct     = codeFamily{Adjunct, regexp.MustCompile(`(?i)\bADJ-(\d+)\b`), "ADJ-%d", 8, false}
	modality    = codeFamily{Modality, regexp.MustCompile(`(?i)\bMOD-(\d+)\b`), "MOD-%d", 6, false}
)

// codes returns the distinct valid codes in content, sorted by number. A code with a number
// out of range is an error rather than ignored, so "TA-12" is never read as nothing.
func (f codeFamily) codes(content string) ([]int, error) {
	var nums []int
	for _, m := range f.pattern.FindAllStringSubmatch(content, -1) {
		n, err := strconv.Atoi(m[1])
		low := 1
		if f.zero {
			low = 0
		}
		if err != nil || n < low || n > f.max {
			return nil, fmt.Errorf("%s is not a valid %s code (allowed %s..%s): %q",
				m[0], f.domain, fmt.Sprintf(f.format, low), fmt.Sprintf(f.format, f.max), content)
		}
		if !slices.Contains(nums, n) {
			nums = append(nums, n)
		}
	}
	if len(nums) == 0 {
		return nil, fmt.Errorf("no valid %s code found: %q", f.domain, content)
	}
	slices.Sort(nums)
	return nums, nil
}

func (f codeFamily) join(nums []int) string {
	parts := make([]string, len(nums))
	for i, n := range nums {
		parts[i] = fmt.Sprintf(f.format, n)
	}
	return strings.Join(parts, ", ")
}

// single accepts exactly one distinct code: a reply that names two urgency levels has not
// decided, and taking the first would hide that.
func (f codeFamily) single(content string) (string, error) {
	nums, err := f.codes(content)
	if err != nil {
		return "", err
	}
	if len(nums) > 1 {
		return "", fmt.Errorf("%s takes one label but the tag has %d (%s): %q", f.domain, len(nums), f.join(nums), content)
	}
	return f.join(nums), nil
}

func (f codeFamily) multi(content string) (string, error) {
	nums, err := f.codes(content)
	if err != nil {
		return "", err
	}
	return f.join(nums), nil
}

// NoAdjunct is the adjunct label for "no adjunct service needed".
const NoAdjunct = "NONE"

// parseAdjunct returns NONE only when the whole tag says so: "none" inside other words
// ("nonetheless", "NONE of ADJ-2") must not erase the codes or invent a NONE.
func parseAdjunct(content string) (string, error) {
	if strings.EqualFold(strings.Trim(content, " \t\r\n.\"'`"), NoAdjunct) {
		return NoAdjunct, nil
	}
	return adjunct.multi(content)
}

// Redressal lists hold between MinRedressal and MaxRedressal points.
const (
	MinRedressal = 2
	MaxRedressal = 10
)

func parseRedressal(content string) (string, error) {
	var raw any
	if err := json.Unmarshal([]byte(content), &raw); err != nil {
		return "", fmt.Errorf("redressal points are not valid JSON (%v): %q", err, content)
	}
	items, ok := raw.([]any)
	if !ok {
		return "", fmt.Errorf("redressal points must be a JSON array of strings: %q", content)
	}
	points := make([]string, 0, len(items))
	for i, item := range items {
		s, ok := item.(string)
		if !ok {
			return "", fmt.Errorf("redressal point %d is not a string: %q", i+1, content)
		}
		if strings.TrimSpace(s) == "" {
			return "", fmt.Errorf("redressal point %d is empty: %q", i+1, content)
		}
		points = append(points, strings.TrimSpace(s))
	}
	if len(points) < MinRedressal {
		return "", fmt.Errorf("too few redressal points (%d, minimum %d): %q", len(points), MinRedressal, content)
	}
	if len(points) > MaxRedressal {
		return "", fmt.Errorf("too many redressal points (%d, maximum %d): %q", len(points), MaxRedressal, content)
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(points); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}
