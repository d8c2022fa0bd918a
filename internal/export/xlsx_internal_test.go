package export

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/xuri/excelize/v2"
)

// roundTrip writes each value through cellParts into the cells of a row, zips the workbook as
// Write does, reads it back with excelize and returns each value joined from its cells.
func roundTrip(t *testing.T, values []string) []string {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	sw, err := f.NewStreamWriter("Sheet1")
	if err != nil {
		t.Fatal(err)
	}
	counts := make([]int, len(values))
	for i, v := range values {
		parts := cellParts(v)
		counts[i] = len(parts)
		cells := make([]any, len(parts))
		for k, p := range parts {
			if n := len(utf16.Encode([]rune(p))); n > maxCellUnits {
				t.Fatalf("value %d part %d has %d UTF-16 units, more than %d", i, k, n, maxCellUnits)
			}
			cells[k] = p
		}
		if err := sw.SetRow(fmt.Sprintf("A%d", i+1), cells); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Flush(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := (&book{f: f}).writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), escMarkBytes) {
		t.Error("an escape mark is left in the zip")
	}
	r, err := excelize.OpenReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rows, err := r.GetRows("Sheet1")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(values))
	for i := range values {
		if counts[i] == 0 {
			continue
		}
		got[i] = strings.Join(rows[i], "")
		if len(rows[i]) != counts[i] {
			t.Errorf("value %d: %d cells read back, %d written", i, len(rows[i]), counts[i])
		}
	}
	return got
}

func TestCellPartsRoundTripThroughExcelize(t *testing.T) {
	tricky := []string{
		"\x00\x01\x08\x0b\x0c\x0e\x1b\x1f\x7f",
		"\uFFFE\uFFFF\uFDD0\uFDD0\uFFFD",
		"_x000B_ _x0041_ _x005F_ _x005F_x0041_ _xZZZZ_ _x12",
		"_x0041\x0b", "_x0041_\x0b", "\x0bx0041_", "_\x0b_x0000_", "__x0041\x00\x00_x0041",
		"_x005F\x0b", "_x005F_x0041\x1f_", "\uFDD0000B", "x\uFDD0",
		"tab\there\r\nCRLF\rCR\n\n  spaces  ",
		" \x0b", "\x0b ", "\t", "\r",
		"🙂🙂🙂 €",
	}
	t.Run("tricky texts", func(t *testing.T) {
		got := roundTrip(t, tricky)
		for i, want := range tricky {
			if got[i] != want {
				t.Errorf("%q came back as %q", want, got[i])
			}
		}
	})
	// Random texts over an alphabet rich in escape lookalikes, with cells so small that splits
	// fall next to and between marks.
	alphabet := []string{"_", "x", "0", "4", "1", "5", "F", "f", "B", "\x0b", "\x00", "\uFDD0", "\uFFFF", "🙂", " ", "\r", "a"}
	for _, units := range []int{0, 5, 6, 7, 11} {
		t.Run(fmt.Sprintf("random texts in cells of %d units", units), func(t *testing.T) {
			if units > 0 {
				SetXLSXLimits(t, units, 0)
			}
			rng := rand.New(rand.NewPCG(1, uint64(units)))
			values := make([]string, 400)
			for i := range values {
				var b strings.Builder
				for n := rng.IntN(40); n > 0; n-- {
					b.WriteString(alphabet[rng.IntN(len(alphabet))])
				}
				values[i] = b.String()
			}
			got := roundTrip(t, values)
			for i, want := range values {
				if got[i] != want {
					t.Errorf("%q came back as %q", want, got[i])
				}
			}
		})
	}
}

func TestCellPartsSplitsOnlyWhatIsTooLong(t *testing.T) {
	SetXLSXLimits(t, 4, 0)
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"abcd", []string{"abcd"}},
		{"abcde", []string{"abcd", "e"}},
		{"abc🙂", []string{"abc", "🙂"}}, // never half a surrogate pair
		{"ab🙂", []string{"ab🙂"}},
		{"a\x0b", []string{"a", "\uFDD0000B"}},
	}
	for _, tt := range tests {
		if got := cellParts(tt.in); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
			t.Errorf("cellParts(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUnmarkerJoinsMarksSplitAcrossWrites(t *testing.T) {
	in := []byte("a\uFDD0000Bb\uFDD0001Fc\uFDD0FDD0")
	want := "a_x000B_b_x001F_c_xFDD0_"
	for cut := 0; cut <= len(in); cut++ {
		for cut2 := cut; cut2 <= len(in); cut2++ {
			var out bytes.Buffer
			u := &unmarker{w: &out}
			for _, p := range [][]byte{in[:cut], in[cut:cut2], in[cut2:]} {
				if _, err := u.Write(p); err != nil {
					t.Fatal(err)
				}
			}
			if out.String() != want || len(u.pending) != 0 {
				t.Fatalf("cut at %d, %d: %q (pending %q)", cut, cut2, out.String(), u.pending)
			}
		}
	}
}
