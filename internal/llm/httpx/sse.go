package httpx

import (
	"bufio"
	"bytes"
	"io"
)

// MaxFrame is the longest line a stream may hold. bufio.Scanner stops at 64 KiB by default,
// and one event of a long reply can be far larger.
const MaxFrame = 32 << 20

// SSE reads a server-sent event stream.
type SSE struct {
	sc      *bufio.Scanner
	data    []byte // the data lines of the event being read, joined by "\n"
	hasData bool
	pending []byte // a bare JSON line read while an event was still open
}

// NewSSE reads events from r. Lines may end in LF, CRLF or CR; a data field may be written
// "data:" or "data: ".
func NewSSE(r io.Reader) *SSE {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxFrame)
	sc.Split(splitLines())
	return &SSE{sc: sc}
}

// Next returns the data of the next event. An event ends at a blank line, or at the end of
// the stream. A line that is not SSE at all but a bare JSON object or array is returned on
// its own with bare set: Gemini writes mid-stream errors that way. Next returns io.EOF after
// the last event, or the error that broke the stream (bufio.ErrTooLong for a line longer than
// MaxFrame).
func (s *SSE) Next() (data []byte, bare bool, err error) {
	if s.pending != nil {
		data, s.pending = s.pending, nil
		return data, true, nil
	}
	for s.sc.Scan() {
		line := s.sc.Bytes()
		switch {
		case len(line) == 0:
			if s.hasData {
				return s.flush(), false, nil
			}
		case line[0] == '{' || line[0] == '[':
			bare := bytes.Clone(line)
			if s.hasData {
				s.pending = bare
				return s.flush(), false, nil
			}
			return bare, true, nil
		default:
			name, value, _ := bytes.Cut(line, []byte(":"))
			if string(name) != "data" { // comments (":...") and event, id, retry fields
				continue
			}
			value = bytes.TrimPrefix(value, []byte(" "))
			if s.hasData {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, value...)
			s.hasData = true
		}
	}
	if err := s.sc.Err(); err != nil {
		return nil, false, err
	}
	if s.hasData { // no blank line before the end: the event still counts
		return s.flush(), false, nil
	}
	return nil, false, io.EOF
}

func (s *SSE) flush() []byte {
	data := bytes.Clone(s.data)
	s.data, s.hasData = s.data[:0], false
	return data
}

// splitLines splits at LF, CRLF or CR. A CR that ends the data read so far ends its line at
// once, so a CR-framed event is handed over as soon as it arrives; an LF right after it is
// then skipped.
func splitLines() bufio.SplitFunc {
	skipLF := false
	return func(data []byte, atEOF bool) (int, []byte, error) {
		if skipLF && len(data) > 0 {
			skipLF = false
			if data[0] == '\n' {
				return 1, nil, nil
			}
		}
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			if data[i] == '\n' {
				return i + 1, data[:i], nil
			}
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			skipLF = true
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	}
}
