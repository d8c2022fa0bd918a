package dataset

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// ReadJSONL reads one JSON object per line. The ID may be a JSON string or number; a number keeps
// its literal text (12 → "12", 1e3 → "1e3"). Text must be a string. Lines may be of any length;
// blank lines are ignored.
//
// A line is skipped and reported when it is not a JSON object, is not valid UTF-8, lacks the ID
// or Text key, repeats one (e.g. "id" and "ID"), or holds a value of the wrong type. The file is
// refused only when no line at all has an ID key, or none has a Text key: then the file is of
// another shape, not a file with a few bad lines.
func ReadJSONL(r io.Reader) (Result, error) {
	br := bufio.NewReader(r)
	skipBOM(br)

	var (
		lines          []jsonLine
		keys           []string // every key seen, first spelling, in order, for the refusal message
		seenKey        = map[string]bool{}
		anyID, anyText bool
		nonBlank       bool
	)
	for n := 1; ; n++ {
		raw, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return Result{}, fmt.Errorf("jsonl: line %d: %w", n, err)
		}
		if len(bytes.TrimSpace(raw)) > 0 {
			nonBlank = true
			l := parseLine(n, bytes.TrimSpace(raw))
			for _, k := range l.keys {
				if !seenKey[k] {
					seenKey[k] = true
					keys = append(keys, k)
				}
			}
			anyID = anyID || l.id != nil
			anyText = anyText || l.text != nil
			lines = append(lines, l)
		}
		if err != nil { // io.EOF, after the last line, which may lack a newline
			break
		}
	}
	if !nonBlank {
		return Result{}, fmt.Errorf("jsonl: %w", errEmpty)
	}
	if err := missing("key", anyID, anyText, keys); err != nil {
		return Result{}, fmt.Errorf("jsonl: %w", err)
	}

	c := newCollector()
	for _, l := range lines {
		if reason := l.problem(); reason != "" {
			c.skip(l.row, reason)
			continue
		}
		id, text, reason := l.values()
		if reason != "" {
			c.skip(l.row, reason)
			continue
		}
		c.add(l.row, id, text)
	}
	return c.res, nil
}

// jsonLine is one non-blank line, parsed far enough to tell whether the file has the keys.
type jsonLine struct {
	row      int
	keys     []string
	id, text json.RawMessage // nil when the key is absent
	reason   string          // why the line is skipped whatever its keys hold
}

func parseLine(row int, line []byte) jsonLine {
	l := jsonLine{row: row}
	// encoding/json would quietly replace invalid bytes with U+FFFD, changing the text.
	if !utf8.Valid(line) {
		l.reason = "not valid UTF-8 (save the file with UTF-8 encoding)"
		return l
	}
	if err := json.Unmarshal(line, new(json.RawMessage)); err != nil {
		l.reason = "invalid JSON: " + err.Error()
		return l
	}
	if line[0] != '{' {
		l.reason = "not a JSON object"
		return l
	}
	// Walk the keys by hand: decoding into a map would hide a repeated key.
	dec := json.NewDecoder(bytes.NewReader(line))
	_, _ = dec.Token() // the '{' checked above
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			l.reason = "invalid JSON: " + err.Error()
			return l
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			l.reason = "invalid JSON: " + err.Error()
			return l
		}
		l.keys = append(l.keys, key)
		for _, k := range []struct {
			name string
			val  *json.RawMessage
		}{{idName, &l.id}, {textName, &l.text}} {
			if !sameName(key, k.name) {
				continue
			}
			if *k.val != nil && l.reason == "" {
				l.reason = fmt.Sprintf("more than one %q key", k.name)
			}
			*k.val = val
		}
	}
	return l
}

// problem is why the line cannot give a sample before its values are looked at, or "".
func (l jsonLine) problem() string {
	switch {
	case l.reason != "":
		return l.reason
	case l.id == nil && l.text == nil:
		return fmt.Sprintf("missing keys %q and %q", idName, textName)
	case l.id == nil:
		return fmt.Sprintf("missing key %q", idName)
	case l.text == nil:
		return fmt.Sprintf("missing key %q", textName)
	}
	return ""
}

// values turns the ID and Text values into strings; null reads as empty.
func (l jsonLine) values() (id, text, reason string) {
	switch l.id[0] {
	case '"':
		_ = json.Unmarshal(l.id, &id) // valid: the whole line was
	case 'n':
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		id = string(l.id)
	default:
		return "", "", fmt.Sprintf("%s must be a string or a number", idName)
	}
	switch l.text[0] {
	case '"':
		_ = json.Unmarshal(l.text, &text)
	case 'n':
	default:
		return "", "", fmt.Sprintf("%s must be a string", textName)
	}
	return id, text, ""
}
