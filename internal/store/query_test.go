package store_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mhannotator/mha/internal/store"
)

// base is the time the query fixture's annotations are created from.
var base = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

// queryFixture is a store holding the annotations of fixtureAnnotations, each named by a letter.
type queryFixture struct {
	s     store.Store
	names map[string]string // annotator/domain/sample → letter
}

type namedAnnotation struct {
	name string
	a    store.Annotation
}

// fixtureAnnotations are written in this order, which is neither the created order nor the
// order of any listing.
func fixtureAnnotations() []namedAnnotation {
	mk := func(annotator, domain, sample, status, label, raw string, created time.Duration, in, out int) store.Annotation {
		return store.Annotation{Annotator: annotator, Domain: domain, SampleID: sample, Status: status,
			Label: label, RawReply: raw, CreatedAt: at(created), InputTokens: in, OutputTokens: out}
	}
	// "TA-30" is no catalogue code; it is here to show that TA-3 does not match it.
	return []namedAnnotation{
		{"c", mk("1", "urgency", "s1", "malformed", "", "no tag here", time.Second, 300, 30)},
		{"a", mk("1", "therapeutic", "s1", "ok", "TA-1, TA-3", "<<TA-1, TA-3>>", 0, 100, 10)},
		{"e", mk("2", "urgency", "s2", "error", "", "", 2*time.Second, 0, 0)},
		{"b", mk("1", "therapeutic", "s2", "ok", "TA-30", "Réponse : ÉCOLE <<TA-30>>", 500*time.Millisecond, 200, 20)},
		{"g", mk("1", "urgency", "s3", "blocked", "", "", 3*time.Second, 60, 6)},
		{"h", mk("1", "therapeutic", "s3", "ok", "TA-1, TA-3", "<<TA-3, TA-1>>", 250*time.Millisecond, 10, 1)},
		{"d", mk("2", "therapeutic", "s1", "ok", "TA-3", "<<TA-3>>", 1500*time.Millisecond, 400, 40)},
		{"f", mk("2", "urgency", "s3", "ok", "LEVEL_2", "<<LEVEL_2>>", 2250*time.Millisecond, 50, 5)},
	}
}

func newQueryFixture(t *testing.T, b backend) queryFixture {
	t.Helper()
	s := b.open(t)
	ctx := context.Background()
	if _, err := s.ImportSamples(ctx, []store.Sample{
		{ID: "s1", Text: "Ich fühle mich ÜBERFORDERT"},
		{ID: "s2", Text: "trouble sleeping"},
		{ID: "s3", Text: "exam stress"},
		{ID: "s4", Text: "not annotated yet"},
	}); err != nil {
		t.Fatal(err)
	}
	fx := queryFixture{s: s, names: map[string]string{}}
	for _, na := range fixtureAnnotations() {
		if err := s.UpsertAnnotation(ctx, na.a); err != nil {
			t.Fatal(err)
		}
		fx.names[na.a.Annotator+"/"+na.a.Domain+"/"+na.a.SampleID] = na.name
	}
	return fx
}

func (fx queryFixture) name(a store.Annotation) string {
	return fx.names[a.Annotator+"/"+a.Domain+"/"+a.SampleID]
}

func TestFiltersSelectTheSameAnnotationsEverywhere(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		fx := newQueryFixture(t, b)
		ctx := context.Background()
		cet := time.FixedZone("CET", 3600)
		tests := []struct {
			name string
			f    store.Filter
			want string // letters, sorted
		}{
			{"an empty filter selects everything", store.Filter{}, "abcdefgh"},
			{"an annotator selects its annotations", store.Filter{Annotator: "2"}, "def"},
			{"a domain selects its annotations", store.Filter{Domain: "urgency"}, "cefg"},
			{"a status selects its annotations", store.Filter{Status: "ok"}, "abdfh"},
			{"an unknown status selects nothing", store.Filter{Status: "done"}, ""},
			{"a label code matches a list holding it", store.Filter{Label: "TA-3"}, "adh"},
			{"a label code does not match a longer code", store.Filter{Label: "TA-30"}, "b"},
			{"a whole label matches exactly", store.Filter{Label: "TA-1, TA-3"}, "ah"},
			{"a label prefix matches nothing", store.Filter{Label: "TA"}, ""},
			{"a label code in another case matches nothing", store.Filter{Label: "ta-3"}, ""},
			{"text matches the sample text in any case", store.Filter{Text: "überfordert"}, "acd"},
			{"text matches the raw reply in any case", store.Filter{Text: "école"}, "b"},
			{"text in capitals matches lower-case text", store.Filter{Text: "NO TAG"}, "c"},
			{"text wildcards are plain characters", store.Filter{Text: "%"}, ""},
			{"text underscores are plain characters", store.Filter{Text: "LEVEL_"}, "f"},
			{"From includes its own instant", store.Filter{From: at(500 * time.Millisecond)}, "bcdefg"},
			{"From just after a whole second excludes it", store.Filter{From: at(time.Millisecond)}, "bcdefgh"},
			{"To excludes its own instant", store.Filter{To: at(time.Second)}, "abh"},
			{"To within a second includes the whole second before it", store.Filter{To: at(250 * time.Millisecond)}, "a"},
			{"From and To bound a window", store.Filter{From: at(time.Second), To: at(2250 * time.Millisecond)}, "cde"},
			{"a bound in another time zone is the same instant", store.Filter{From: at(2 * time.Second).In(cet)}, "efg"},
			{"To before From selects nothing", store.Filter{From: at(2 * time.Second), To: at(time.Second)}, ""},
			{"a From beyond year 9999 selects nothing", store.Filter{From: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, ""},
			{"a To beyond year 9999 selects everything", store.Filter{To: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, "abcdefgh"},
			{"a From before year 0 selects everything", store.Filter{From: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}, "abcdefgh"},
			{"every field together narrows to one", store.Filter{Annotator: "1", Domain: "therapeutic", Status: "ok",
				Label: "TA-3", Text: "ICH", From: base, To: at(time.Second)}, "a"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var exported []string
				for _, r := range exportAll(t, fx.s, tt.f) {
					exported = append(exported, fx.name(r.Annotation))
				}
				slices.Sort(exported)
				if got := strings.Join(exported, ""); got != tt.want {
					t.Errorf("Export selected %q, want %q", got, tt.want)
				}

				rows, err := fx.s.Annotations(ctx, tt.f, 0, store.MaxAnnotationsLimit)
				if err != nil {
					t.Fatal(err)
				}
				var listed []string
				for _, r := range rows {
					listed = append(listed, fx.name(r.Annotation))
				}
				slices.Sort(listed)
				if got := strings.Join(listed, ""); got != tt.want {
					t.Errorf("Annotations selected %q, want %q", got, tt.want)
				}

				stats, err := fx.s.Stats(ctx, tt.f)
				if err != nil {
					t.Fatal(err)
				}
				calls := 0
				for _, st := range stats {
					calls += st.Calls
				}
				if calls != len(tt.want) {
					t.Errorf("Stats counted %d calls, want %d", calls, len(tt.want))
				}
			})
		}
	})
}

func TestValidateRefusesUnknownStatusesAndDomains(t *testing.T) {
	tests := []struct {
		name       string
		f          store.Filter
		wantFields []string // fields of the *FieldErrors, in order; none for a valid filter
		wantText   []string // in the message
	}{
		{name: "accepts an empty filter", f: store.Filter{}},
		{name: "accepts every status", f: store.Filter{Status: "blocked"}},
		{name: "accepts a known domain", f: store.Filter{Domain: "redressal"}},
		{name: "does not judge the annotator, label, text or times",
			f: store.Filter{Annotator: "anyone", Label: "??", Text: "%", From: base, To: base.Add(-time.Hour)}},
		{name: "refuses an unknown status", f: store.Filter{Status: "done"},
			wantFields: []string{"Status"}, wantText: []string{"Status", `"done"`, "ok, malformed, error, blocked"}},
		{name: "refuses an unknown domain", f: store.Filter{Domain: "mood"},
			wantFields: []string{"Domain"}, wantText: []string{"Domain", `"mood"`, "urgency"}},
		{name: "refuses a domain in another case", f: store.Filter{Domain: "Urgency"},
			wantFields: []string{"Domain"}, wantText: []string{"Domain", `"Urgency"`, `spell it "urgency"`}},
		{name: "names every bad field", f: store.Filter{Status: "OK", Domain: "mood"},
			wantFields: []string{"Status", "Domain"}, wantText: []string{`"OK"`, `"mood"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.f.Validate()
			if tt.wantFields == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors for %v", tt.wantFields)
			}
			errs := []error{err}
			if joined, ok := err.(interface{ Unwrap() []error }); ok {
				errs = joined.Unwrap()
			}
			var fields []string
			for _, e := range errs {
				var fe *store.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("%v is not a *store.FieldError", e)
				}
				fields = append(fields, fe.Field)
			}
			if !slices.Equal(fields, tt.wantFields) {
				t.Errorf("fields %v, want %v", fields, tt.wantFields)
			}
			for _, want := range tt.wantText {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestAnnotationsPagesNewestFirst(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t)
		ctx := context.Background()
		ids := make([]string, 130)
		for i := range ids {
			ids[i] = fmt.Sprintf("s%03d", i)
		}
		if _, err := s.ImportSamples(ctx, samples(ids...)); err != nil {
			t.Fatal(err)
		}
		for _, annotator := range []string{"1", "2", "3", "4", "5"} {
			for _, id := range ids {
				if err := s.UpsertAnnotation(ctx, annotation(annotator, "urgency", id, "ok")); err != nil {
					t.Fatal(err)
				}
			}
		}
		all := allChanges(t, s) // 650, ascending
		newest := make([]int64, len(all))
		for i, c := range all {
			newest[len(all)-1-i] = c.Seq
		}
		var newestOf2 []int64
		for i := len(all) - 1; i >= 0; i-- {
			if all[i].Annotator == "2" {
				newestOf2 = append(newestOf2, all[i].Seq)
			}
		}
		tests := []struct {
			name   string
			f      store.Filter
			before int64
			limit  int
			want   []int64
		}{
			{"a zero limit gives the default page", store.Filter{}, 0, 0, newest[:store.DefaultAnnotationsLimit]},
			{"a negative limit gives the default page", store.Filter{}, 0, -3, newest[:store.DefaultAnnotationsLimit]},
			{"a limit is honoured", store.Filter{}, 0, 7, newest[:7]},
			{"a limit above the cap is cut to the cap", store.Filter{}, 0, 1000, newest[:store.MaxAnnotationsLimit]},
			{"before returns only older annotations", store.Filter{}, newest[9], 5, newest[10:15]},
			{"before a seq that is not stored still pages", store.Filter{}, newest[0] + 100, 3, newest[:3]},
			{"before the first seq returns nothing", store.Filter{}, newest[len(newest)-1], 5, nil},
			{"before and a filter combine", store.Filter{Annotator: "2"}, newestOf2[3], 4, newestOf2[4:8]},
			{"the last page is short", store.Filter{Annotator: "2"}, newestOf2[125], 50, newestOf2[126:]},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				rows, err := s.Annotations(ctx, tt.f, tt.before, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				got := make([]int64, len(rows))
				for i, r := range rows {
					got[i] = r.Seq
					if r.Text != "text of "+r.SampleID || r.SampleID != ids[r.Position] {
						t.Errorf("seq %d: sample %s is (%q, %d)", r.Seq, r.SampleID, r.Text, r.Position)
					}
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("got %d seqs %v, want %d seqs %v", len(got), head(got), len(tt.want), head(tt.want))
				}
			})
		}

		t.Run("paging by the last seq visits every annotation once", func(t *testing.T) {
			var got []int64
			var before int64
			for {
				rows, err := s.Annotations(ctx, store.Filter{}, before, 200)
				if err != nil {
					t.Fatal(err)
				}
				if len(rows) == 0 {
					break
				}
				for _, r := range rows {
					got = append(got, r.Seq)
				}
				before = rows[len(rows)-1].Seq
			}
			if !slices.Equal(got, newest) {
				t.Errorf("paged %d seqs, want %d in descending order", len(got), len(newest))
			}
		})
	})
}

func head(seqs []int64) []int64 { return seqs[:min(len(seqs), 6)] }

func TestSampleReturnsItWithEveryAnnotation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		fx := newQueryFixture(t, b)
		ctx := context.Background()
		seq := map[string]int64{}
		for _, c := range allChanges(t, fx.s) {
			seq[fx.name(c.Annotation)] = c.Seq
		}
		tests := []struct {
			name       string
			id         string
			wantSample store.Sample
			want       string // letters in the order returned
			wantErr    error
		}{
			{"orders a sample's annotations by domain then annotator", "s1",
				store.Sample{ID: "s1", Text: "Ich fühle mich ÜBERFORDERT", Position: 0}, "a d c", nil},
			{"returns each annotator of each domain", "s3",
				store.Sample{ID: "s3", Text: "exam stress", Position: 2}, "h g f", nil},
			{"returns a sample without annotations", "s4",
				store.Sample{ID: "s4", Text: "not annotated yet", Position: 3}, "", nil},
			{"says ErrNotFound for a sample that is not stored", "nope", store.Sample{}, "", store.ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				sm, rows, err := fx.s.Sample(ctx, tt.id)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.id) {
						t.Fatalf("err = %v, want %v naming %q", err, tt.wantErr, tt.id)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if sm != tt.wantSample {
					t.Errorf("sample %+v, want %+v", sm, tt.wantSample)
				}
				var names []string
				for _, r := range rows {
					n := fx.name(r.Annotation)
					names = append(names, n)
					if r.Seq != seq[n] || r.SampleID != tt.id || r.Text != tt.wantSample.Text || r.Position != tt.wantSample.Position {
						t.Errorf("row %s: seq %d, sample (%s, %q, %d); want seq %d and the sample", n, r.Seq, r.SampleID, r.Text, r.Position, seq[n])
					}
				}
				if got := strings.Join(names, " "); got != tt.want {
					t.Errorf("annotations %q, want %q", got, tt.want)
				}
			})
		}
	})
}

func TestStatsSumsEachRun(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		fx := newQueryFixture(t, b)
		ctx := context.Background()
		therapeutic1 := store.RunStats{Annotator: "1", Domain: "therapeutic", Counts: store.Counts{OK: 3},
			Labels: map[string]int{"TA-1, TA-3": 2, "TA-30": 1}, InputTokens: 310, OutputTokens: 31, Calls: 3,
			LastAt: at(500 * time.Millisecond)}
		urgency1 := store.RunStats{Annotator: "1", Domain: "urgency", Counts: store.Counts{Malformed: 1, Blocked: 1},
			Labels: map[string]int{}, InputTokens: 360, OutputTokens: 36, Calls: 2, LastAt: at(3 * time.Second)}
		therapeutic2 := store.RunStats{Annotator: "2", Domain: "therapeutic", Counts: store.Counts{OK: 1},
			Labels: map[string]int{"TA-3": 1}, InputTokens: 400, OutputTokens: 40, Calls: 1, LastAt: at(1500 * time.Millisecond)}
		urgency2 := store.RunStats{Annotator: "2", Domain: "urgency", Counts: store.Counts{OK: 1, Error: 1},
			Labels: map[string]int{"LEVEL_2": 1}, InputTokens: 50, OutputTokens: 5, Calls: 2, LastAt: at(2250 * time.Millisecond)}
		urgency2OK := urgency2
		urgency2OK.Counts, urgency2OK.Calls = store.Counts{OK: 1}, 1
		tests := []struct {
			name string
			f    store.Filter
			want []store.RunStats
		}{
			{"sums every run, ordered by annotator then domain", store.Filter{},
				[]store.RunStats{therapeutic1, urgency1, therapeutic2, urgency2}},
			{"sums only the rows the filter selects", store.Filter{Status: "ok"},
				[]store.RunStats{therapeutic1, therapeutic2, urgency2OK}},
			{"takes the newest time among the selected rows", store.Filter{Annotator: "1", Domain: "therapeutic", To: at(500 * time.Millisecond)},
				[]store.RunStats{{Annotator: "1", Domain: "therapeutic", Counts: store.Counts{OK: 2},
					Labels: map[string]int{"TA-1, TA-3": 2}, InputTokens: 110, OutputTokens: 11, Calls: 2, LastAt: at(250 * time.Millisecond)}}},
			{"returns nothing when nothing matches", store.Filter{Annotator: "9"}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := fx.s.Stats(ctx, tt.f)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(tt.want) {
					t.Fatalf("%d entries %+v, want %d", len(got), got, len(tt.want))
				}
				for i, g := range got {
					w := tt.want[i]
					if !g.LastAt.Equal(w.LastAt) || g.LastAt.Location() != time.UTC {
						t.Errorf("%s/%s: LastAt %v, want %v in UTC", g.Annotator, g.Domain, g.LastAt, w.LastAt)
					}
					if g.Labels == nil || !maps.Equal(g.Labels, w.Labels) {
						t.Errorf("%s/%s: labels %#v, want %#v", g.Annotator, g.Domain, g.Labels, w.Labels)
					}
					g.LastAt, w.LastAt, g.Labels, w.Labels = time.Time{}, time.Time{}, nil, nil
					if !reflect.DeepEqual(g, w) {
						t.Errorf("entry %d:\n got %+v\nwant %+v", i, g, w)
					}
				}
			})
		}
	})
}
