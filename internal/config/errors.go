package config

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Problem is one thing wrong with the configuration.
type Problem struct {
	// Path names the setting with dots, e.g. "annotators.3.urgency.target_count".
	Path string
	// Value is the offending value: int, float64, string or bool when it had the right type,
	// otherwise the JSON value as encoding/json decodes it (numbers as json.Number). It is nil
	// when there is no value to show, e.g. a missing API key; secrets never appear here.
	Value any
	// Reason is the full sentence after the path, including the value as written, so a
	// Problem reads well on its own: "200000 is out of range (allowed 0..100000)".
	Reason string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Reason
	}
	return p.Path + ": " + p.Reason
}

// ValidationError lists every problem found, so a user can fix them all in one go.
type ValidationError struct {
	Problems []Problem
}

// Error lists the problems one per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// SyntaxError reports a file that is not valid JSON, with the position of the fault.
type SyntaxError struct {
	File   string
	Line   int // 1-based
	Column int // 1-based, in characters
	// Msg is encoding/json's description; it is empty for the keys file, whose
	// description could quote a character of a secret.
	Msg string
}

func (e *SyntaxError) Error() string {
	s := fmt.Sprintf("%s: invalid JSON at line %d, column %d", e.File, e.Line, e.Column)
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// newSyntaxError locates the byte encoding/json stopped at (offset counts the bytes read,
// so the faulty one is the one before it).
func newSyntaxError(file string, data []byte, offset int64, msg string) *SyntaxError {
	pos := int(min(max(offset-1, 0), int64(len(data))))
	before := data[:pos]
	lineStart := bytes.LastIndexByte(before, '\n') + 1
	return &SyntaxError{
		File:   file,
		Line:   bytes.Count(before, []byte{'\n'}) + 1,
		Column: utf8.RuneCount(before[lineStart:]) + 1,
		Msg:    msg,
	}
}

// problems collects Problems in the order they are found.
type problems []Problem

func (ps *problems) add(path string, value any, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Value: value, Reason: fmt.Sprintf(format, args...)})
}
