// Package offline is a deterministic, rule-based annotator: a keyword-and-pattern baseline, not a
// language model. It needs no key or network, so the whole platform runs on a fresh machine,
// and it gives the LLM annotators a transparent floor to be compared against.
package offline

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mhannotator/mha/internal/labels"
	"github.com/mhannotator/mha/internal/llm"
)

// Model is the name recorded on the baseline's annotations.
const Model = "offline-keyword-baseline-v1"

// Annotator is the offline baseline. Its zero value is ready to use.
type Annotator struct {
	// Latency is waited before each answer, so demos and fault tests can watch a run
	// progress sample by sample.
	Latency time.Duration
}

// Complete reads req.Text (not the prompt) and answers in the same <<label>> format an LLM is
// asked for, with a short account of the rules that fired.
func (a Annotator) Complete(ctx context.Context, req llm.Request) (llm.Response, error) {
	if a.Latency > 0 {
		t := time.NewTimer(a.Latency)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return llm.Response{}, ctx.Err()
		case <-t.C:
		}
	}
	if err := ctx.Err(); err != nil {
		return llm.Response{}, err
	}
	found := match(req.Text)
	var label string
	switch req.Domain {
	case labels.Urgency:
		label = fmt.Sprintf("LEVEL_%d", urgencyLevel(found))
	case labels.Intensity:
		// Support intensity follows urgency in this baseline: the more acute, the more intensive.
		label = fmt.Sprintf("INT-%d", urgencyLevel(found)+1)
	case labels.Therapeutic:
		label = codes(found, "TA-", func(t theme) int { return t.therapy }, 9)
	case labels.Adjunct:
		label = codes(found, "ADJ-", func(t theme) int { return t.adjunct }, 0)
		if label == "" {
			label = labels.NoAdjunct
		}
	case labels.Modality:
		label = codes(found, "MOD-", func(t theme) int { return t.modality }, 1)
	case labels.Redressal:
		label = redressal(found)
	default:
		return llm.Response{}, fmt.Errorf("offline annotator: unknown domain %q", req.Domain)
	}
	return llm.Response{Text: explain(found) + "\n<<" + label + ">>", Model: Model}, nil
}

// theme is a group of cues and what the baseline concludes from it in each domain
// (0 = nothing for that domain).
type theme struct {
	name     string
	cues     []string
	urgency  int
	therapy  int
	adjunct  int
	modality int
	advice   string
}

// themes are checked in order; urgency takes the highest level among the themes found.
var themes = []theme{
	{"suicidal intent", []string{"kill myself", "end my life", "end it all", "suicid", "want to die", "don't want to be alive", "do not want to be alive",
		"better off without me", "took pills", "overdose", "goodbye letter", "not wake up", "wrote a note"}, 4, 2, 5, 1,
		"Contact a crisis line or emergency services today and stay with someone you trust"},
	{"danger or psychosis", []string{"voices", "hurt someone", "being watched", "poison", "not real", "haven't slept in days", "hallucinat"}, 4, 7, 1, 1,
		"See a doctor or psychiatrist within a day to assess these experiences"},
	{"self-harm", []string{"self-harm", "self harm", "cutting", "cut myself", "hurt myself", "burn myself", "hurting myself"}, 3, 2, 5, 1,
		"Make a safety plan with a counsellor and remove means of self-harm"},
	{"abuse or trauma", []string{"abuse", "hit me", "hits me", "assault", "flashback", "nightmares about", "trauma", "threaten", "controls my"}, 3, 3, 2, 1,
		"Talk to a counsellor trained in trauma and consider the campus safety office"},
	{"collapse of functioning", []string{"can't get out of bed", "cannot get out of bed", "haven't left my room", "stopped eating", "stopped going", "hopeless",
		"no point", "can't function", "cannot function"}, 3, 1, 1, 1,
		"Arrange an appointment within days and tell someone close how bad things are"},
	{"eating", []string{"binge", "purg", "throw up after", "skipping meals", "calories", "weight", "eating"}, 2, 1, 7, 1,
		"Ask the health centre about an eating-concerns assessment and nutrition support"},
	{"substance use", []string{"drinking", "drunk", "alcohol", "cannabis", "weed", "pills to", "cocaine", "vaping", "high every"}, 2, 8, 6, 1,
		"Talk openly with a counsellor about your drinking or drug use and set a goal"},
	{"panic", []string{"panic", "heart racing", "can't breathe", "cannot breathe"}, 2, 1, 0, 1,
		"Practise a breathing exercise daily and learn what panic attacks are"},
	{"loss", []string{"died", "passed away", "funeral", "grief", "grieving", "lost my"}, 2, 9, 4, 1,
		"Give yourself time to grieve and join a bereavement support group"},
	{"family", []string{"my parents", "my mother", "my father", "my mom", "my dad", "family"}, 1, 6, 0, 3,
		"Consider a family session to talk through the conflict at home"},
	{"partner", []string{"boyfriend", "girlfriend", "partner", "husband", "wife", "breakup", "broke up"}, 1, 4, 0, 4,
		"Talk about the relationship with a counsellor, together with your partner if safe"},
	{"low mood", []string{"depress", "sad", "empty", "crying", "low mood", "numb", "worthless"}, 1, 1, 1, 1,
		"Book a counselling appointment to talk about your low mood"},
	{"anxiety", []string{"anxious", "anxiety", "worry", "worried", "overthink", "nervous", "intrusive", "checking"}, 1, 1, 0, 1,
		"Try a structured worry time each day and a CBT self-help course"},
	{"sleep", []string{"sleep", "insomnia", "awake at night", "tired all the time", "exhausted"}, 1, 1, 2, 0,
		"Keep regular sleep and wake times and cut screens before bed"},
	{"isolation", []string{"lonely", "alone", "no friends", "isolated", "homesick", "international student", "far from home"}, 1, 4, 4, 2,
		"Join a student society or peer support group to meet people"},
	{"identity", []string{"gay", "lesbian", "bisexual", "transgender", "queer", "coming out", "lgbt"}, 1, 9, 4, 2,
		"Connect with the LGBTQ+ student network for peer support"},
	{"study pressure", []string{"exam", "deadline", "grades", "assignment", "failing", "fail", "thesis", "perfect"}, 0, 5, 3, 6,
		"Ask your tutor about extensions and join a study skills workshop"},
	{"attention", []string{"adhd", "focus", "concentrat", "procrastinat", "disorganis", "disorganiz"}, 0, 7, 8, 6,
		"Ask about an ADHD assessment and planning and organisation coaching"},
	{"money", []string{"money", "rent", "debt", "afford", "loan", "job"}, 0, 9, 3, 1,
		"Speak to the student finance office about hardship funds"},
	{"remote", []string{"online", "video call", "far away", "can't travel", "placement", "abroad"}, 0, 0, 0, 5,
		"Use the online counselling option so distance is no barrier"},
}

// cuePatterns match a theme's cues at the start of a word, so "rent" does not fire inside
// "parent" while "suicid" still finds "suicidal".
var cuePatterns = func() []*regexp.Regexp {
	out := make([]*regexp.Regexp, len(themes))
	for i, t := range themes {
		quoted := make([]string, len(t.cues))
		for j, c := range t.cues {
			quoted[j] = regexp.QuoteMeta(c)
		}
		out[i] = regexp.MustCompile(`(?i)\b(?:` + strings.Join(quoted, "|") + `)`)
	}
	return out
}()

// match returns the themes whose cues appear in text, with the cue that fired.
func match(text string) []found {
	var out []found
	for i, t := range themes {
		if cue := cuePatterns[i].FindString(text); cue != "" {
			out = append(out, found{t, strings.ToLower(cue)})
		}
	}
	return out
}

type found struct {
	theme
	cue string
}

func urgencyLevel(found []found) int {
	level := 0
	for _, f := range found {
		level = max(level, f.urgency)
	}
	return level
}

// codes joins the distinct non-zero codes the themes give; fallback is used when none does
// (0 = no fallback).
func codes(found []found, prefix string, pick func(theme) int, fallback int) string {
	var nums []int
	for _, f := range found {
		if n := pick(f.theme); n != 0 && !slices.Contains(nums, n) {
			nums = append(nums, n)
		}
	}
	if len(nums) == 0 && fallback != 0 {
		nums = []int{fallback}
	}
	slices.Sort(nums)
	parts := make([]string, len(nums))
	for i, n := range nums {
		parts[i] = fmt.Sprintf("%s%d", prefix, n)
	}
	return strings.Join(parts, ", ")
}

func redressal(found []found) string {
	var points []string
	for _, f := range found {
		points = append(points, f.advice)
	}
	for _, generic := range []string{
		"Reach out to the university counselling service to talk things through",
		"Keep a simple daily routine with meals, movement and rest",
	} {
		if len(points) >= labels.MinRedressal {
			break
		}
		points = append(points, generic)
	}
	if len(points) > labels.MaxRedressal {
		points = points[:labels.MaxRedressal]
	}
	b, _ := json.Marshal(points) // a []string always marshals
	return string(b)
}

func explain(found []found) string {
	if len(found) == 0 {
		return "Offline keyword baseline: no cue matched, so the lowest-need labels apply."
	}
	parts := make([]string, len(found))
	for i, f := range found {
		parts[i] = fmt.Sprintf("%s (%q)", f.name, f.cue)
	}
	return "Offline keyword baseline: matched " + strings.Join(parts, ", ") + "."
}
