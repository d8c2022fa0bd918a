package fake

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mhannotator/mha/internal/labels"
)

// domainPrompt is a small prompt shaped like the templates: the domain's code list, then the
// sample text.
func domainPrompt(d labels.Domain, text string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Choose the %s label for the student's text.\n", d)
	for _, c := range labels.Catalog[d] {
		fmt.Fprintf(&b, "- %s: %s\n", c.Code, c.Description)
	}
	fmt.Fprintf(&b, "Finish with the answer inside double angle brackets.\n\nSTUDENT TEXT:\n%s\n", text)
	return b.String()
}

func TestRepliesParseInEveryDomain(t *testing.T) {
	s := start(t, Options{})
	for _, d := range labels.Domains {
		seen := map[string]bool{}
		for i := range 25 {
			prompt := domainPrompt(d, fmt.Sprintf("Sample %d: exams, sleep and worry.", i))
			replies := map[string]string{
				"gemini": path(t, gemini(t, s, key1, prompt).json(t), "candidates", 0, "content", "parts", 0, "text").(string),
				"openai": path(t, openai(t, s, key1, prompt).json(t), "choices", 0, "message", "content").(string),
			}
			if replies["gemini"] != replies["openai"] {
				t.Errorf("%s: the formats answer the same prompt differently:\n%s\n%s", d, replies["gemini"], replies["openai"])
			}
			text := replies["gemini"]
			if !strings.HasSuffix(text, ">>") {
				t.Errorf("%s: the tag is not the last thing: %q", d, text)
			}
			o := labels.Parse(d, text)
			if !o.OK() {
				t.Errorf("%s: reply does not parse: %+v\n%s", d, o, text)
			}
			seen[o.Label] = true
		}
		if len(seen) < 3 {
			t.Errorf("%s: only %d distinct labels over 25 prompts: %v", d, len(seen), seen)
		}
		if d == labels.Adjunct && !seen[labels.NoAdjunct] {
			t.Errorf("adjunct never answered NONE: %v", seen)
		}
	}
}

func TestRepliesAreDeterministic(t *testing.T) {
	a := start(t, Options{})
	b := start(t, Options{Seed: 99})
	prompt := domainPrompt(labels.Therapeutic, plainText)
	first := path(t, gemini(t, a, key1, prompt).json(t), "candidates", 0, "content", "parts", 0, "text")
	again := path(t, gemini(t, b, key2, prompt).json(t), "candidates", 0, "content", "parts", 0, "text")
	if first != again {
		t.Errorf("same prompt, different replies:\n%v\n%v", first, again)
	}
}

func TestDetectDomain(t *testing.T) {
	for _, d := range labels.Domains {
		if got := detectDomain(domainPrompt(d, plainText)); got != d {
			t.Errorf("detectDomain(%s prompt) = %s", d, got)
		}
	}
}

func TestDomainComesFromTheSystemInstructionToo(t *testing.T) {
	s := start(t, Options{})
	body := geminiBody(plainText)
	body["systemInstruction"] = map[string]any{"parts": []any{map[string]any{"text": domainPrompt(labels.Urgency, "")}}}
	res := do(t, geminiRequest(t, s, key1, mustJSON(t, body), false))
	text := path(t, res.json(t), "candidates", 0, "content", "parts", 0, "text").(string)
	if o := labels.Parse(labels.Urgency, text); !o.OK() {
		t.Errorf("reply is not an urgency label: %+v\n%s", o, text)
	}
}
