package config

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
)

// Secret is an API key. Every way of printing, encoding or logging it shows a mask; only
// Reveal gives the key itself, so the one place that sends it is easy to find.
type Secret string

// Reveal returns the key. Call it only to put the key on the wire.
func (s Secret) Reveal() string { return string(s) }

// String masks the key: "(none)" when empty, "****" plus the last four characters when the key
// is long enough (12+) that those four say little, otherwise "****".
func (s Secret) String() string {
	r := []rune(string(s))
	switch {
	case len(r) == 0:
		return "(none)"
	case len(r) >= 12:
		return "****" + string(r[len(r)-4:])
	default:
		return "****"
	}
}

// GoString masks the key for %#v.
func (s Secret) GoString() string { return s.String() }

// Format masks the key for every verb: without it, verbs that skip String, such as %d, would
// print the key itself, even inside a printed struct.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, s.GoString())
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), s.String())
}

// MarshalJSON encodes the mask, so a Config can be served as JSON without leaking keys.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// LogValue logs the mask.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
