package clip

import "testing"

func TestStringCutsOnACharacterBoundary(t *testing.T) {
	cases := []struct {
		s     string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"a longer text", 6, "a long…"},
		{"héllo", 2, "h…"}, // é is two bytes: byte 2 is inside it
		{"日本語", 4, "日…"},
	}
	for _, c := range cases {
		if got := String(c.s, c.limit); got != c.want {
			t.Errorf("String(%q, %d) = %q, want %q", c.s, c.limit, got, c.want)
		}
	}
}
