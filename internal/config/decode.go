package config

import (
	"bytes"
	"encoding/json"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/mhannotator/mha/internal/clip"
)

// object is one JSON object whose fields are taken by name. Decoding through raw values keeps
// "missing" apart from "zero", and whatever is not taken is reported as unknown.
type object struct {
	path   string
	fields map[string]json.RawMessage
	taken  map[string]bool
	bad    map[string]bool // fields that had a problem, so cross-field checks can skip them
	probs  *problems
}

// decodeObject reports a problem and returns false when raw is not a JSON object. raw must be
// valid JSON (the whole document is checked before any decoding).
func decodeObject(path string, raw json.RawMessage, probs *problems) (*object, bool) {
	var fields map[string]json.RawMessage
	if kindOf(raw) != '{' || json.Unmarshal(raw, &fields) != nil {
		probs.add(path, jsonValue(raw), "expected an object, got %s", display(raw))
		return nil, false
	}
	return &object{path: path, fields: fields, taken: map[string]bool{}, bad: map[string]bool{}, probs: probs}, true
}

func (o *object) fieldPath(name string) string { return joinPath(o.path, name) }

// take returns the raw value of a field and marks it known.
func (o *object) take(name string) (json.RawMessage, bool) {
	raw, ok := o.fields[name]
	if ok {
		o.taken[name] = true
	}
	return raw, ok
}

func (o *object) fail(name string, value any, format string, args ...any) {
	o.bad[name] = true
	o.probs.add(o.fieldPath(name), value, format, args...)
}

// unknown reports every field that was not taken, in sorted order.
func (o *object) unknown(allowed []string) {
	var names []string
	for name := range o.fields {
		if !o.taken[name] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		o.probs.add(o.fieldPath(name), nil, "unknown field (allowed: %s)", strings.Join(allowed, ", "))
	}
}

// integer reads an int field in [lo, hi]; a missing or bad field yields def. Integral numbers
// written with a fraction or exponent (10.0, 1e3) are accepted: JSON has one number type.
func (o *object) integer(name string, lo, hi, def int) int {
	raw, ok := o.take(name)
	if !ok {
		return def
	}
	if kindOf(raw) != '0' {
		o.fail(name, jsonValue(raw), "expected an integer, got %s", display(raw))
		return def
	}
	lit := string(raw)
	n, err := strconv.ParseInt(lit, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(lit, 64)
		switch {
		case ferr == nil && f != math.Trunc(f):
			o.fail(name, jsonValue(raw), "expected an integer, got %s", lit)
			return def
		case ferr != nil || f < math.MinInt64 || f >= math.MaxInt64:
			o.fail(name, json.Number(lit), "%s is out of range (allowed %d..%d)", lit, lo, hi)
			return def
		}
		n = int64(f)
	}
	if n < int64(lo) || n > int64(hi) {
		o.fail(name, int(n), "%s is out of range (allowed %d..%d)", lit, lo, hi)
		return def
	}
	return int(n)
}

// optionalInteger reads an int field in [lo, hi] that may be left out: a missing, null or bad
// field yields nil.
func (o *object) optionalInteger(name string, lo, hi int) *int {
	raw, ok := o.fields[name]
	if ok && kindOf(raw) == 'n' {
		o.taken[name] = true
		return nil
	}
	const unset = math.MinInt // outside every range, so it can only mean "not given"
	if n := o.integer(name, lo, hi, unset); n != unset {
		return &n
	}
	return nil
}

// number reads a float field in [lo, hi]; a missing or bad field yields def.
func (o *object) number(name string, lo, hi, def float64) float64 {
	raw, ok := o.take(name)
	if !ok {
		return def
	}
	if kindOf(raw) != '0' {
		o.fail(name, jsonValue(raw), "expected a number, got %s", display(raw))
		return def
	}
	lit := string(raw)
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || f < lo || f > hi {
		var value any = f
		if err != nil { // beyond float64: ±Inf would not survive a JSON round trip
			value = json.Number(lit)
		}
		o.fail(name, value, "%s is out of range (allowed %s..%s)", lit, formatFloat(lo), formatFloat(hi))
		return def
	}
	return f
}

// boolean reads a bool field; a missing or bad field yields def.
func (o *object) boolean(name string, def bool) bool {
	raw, ok := o.take(name)
	if !ok {
		return def
	}
	switch string(raw) {
	case "true":
		return true
	case "false":
		return false
	}
	o.fail(name, jsonValue(raw), "expected a boolean (true or false), got %s", display(raw))
	return def
}

// str reads a string field; ok is false when it is missing or not a string.
func (o *object) str(name string) (s string, ok bool) {
	raw, present := o.take(name)
	if !present {
		return "", false
	}
	if kindOf(raw) != '"' || json.Unmarshal(raw, &s) != nil {
		o.fail(name, jsonValue(raw), "expected a string, got %s", display(raw))
		return "", false
	}
	return s, true
}

// nonEmpty reads a string field that must not be blank; a missing or bad field yields def.
func (o *object) nonEmpty(name, def string) string {
	s, ok := o.str(name)
	if !ok {
		return def
	}
	if strings.TrimSpace(s) == "" {
		o.fail(name, s, "%q must not be empty", s)
		return def
	}
	return s
}

// checkProvider reports s, read from field name, unless it is a known provider.
func (o *object) checkProvider(name, s string) bool {
	if slices.Contains(providers, s) {
		return true
	}
	o.fail(name, s, "%q is not one of %s", s, strings.Join(providers, ", "))
	return false
}

// choice reads a string field that must be one of allowed; a missing or bad field yields def.
func (o *object) choice(name string, allowed []string, def string) string {
	s, ok := o.str(name)
	if !ok {
		return def
	}
	if !slices.Contains(allowed, s) {
		quoted := make([]string, len(allowed))
		for i, a := range allowed {
			quoted[i] = strconv.Quote(a)
		}
		o.fail(name, s, "%q is not one of %s", s, strings.Join(quoted, ", "))
		return def
	}
	return s
}

// baseURL reads a URL field; "" is allowed and means the provider's default.
func (o *object) baseURL(name string) (string, bool) {
	s, ok := o.str(name)
	if !ok || s == "" {
		return "", ok
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		o.fail(name, s, "%q is not an absolute http or https URL", s)
		return "", false
	}
	return s, true
}

// matching reads a string field that must match re; a missing or bad field yields def.
func (o *object) matching(name string, re *regexp.Regexp, want, def string) string {
	s, ok := o.str(name)
	if !ok {
		return def
	}
	if !re.MatchString(s) {
		o.fail(name, s, "%q is not a valid %s", s, want)
		return def
	}
	return s
}

// kindOf classifies a valid JSON value by its first byte: '{', '[', '"', 't', 'f', 'n', or
// '0' for any number.
func kindOf(raw json.RawMessage) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	switch c := raw[0]; c {
	case '{', '[', '"', 't', 'f', 'n':
		return c
	}
	return '0'
}

// jsonValue decodes raw for Problem.Value.
func jsonValue(raw json.RawMessage) any {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	return v
}

// display renders a JSON value for a message: compact and cut short, so a huge value cannot
// bury the message.
func display(raw json.RawMessage) string {
	const limit = 60
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		buf.Reset()
		buf.Write(raw)
	}
	return clip.String(buf.String(), limit)
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// plainSegment is what a path segment may hold without quoting.
var plainSegment = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// joinPath appends a key to a dotted path, quoting keys that would make the path ambiguous or
// break the one-problem-per-line layout.
func joinPath(parent, key string) string {
	if !plainSegment.MatchString(key) {
		key = strconv.Quote(key)
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}
