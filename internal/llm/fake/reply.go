package fake

import (
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/mhannotator/mha/internal/labels"
)

// Reply texts are a little reasoning, then the tag as the last thing, as the templates ask.
var (
	openings = []string{
		"The student describes ongoing distress that is affecting study and sleep.",
		"The text mentions low mood and withdrawal from friends over several weeks.",
		"There are signs of anxiety around deadlines, with some avoidance of classes.",
		"The student reports stress and loneliness but also names people who support them.",
		"The message points to difficulties that have grown over the term.",
		"The writer sounds overwhelmed, though no immediate danger is described.",
	}
	followUps = []string{
		"Weighing severity against protective factors, the answer is as follows.",
		"Daily functioning is affected, which shapes the choice below.",
		"Taking the duration and impact into account gives this answer.",
		"",
	}
	points = []string{
		"Book an appointment with a counsellor this week",
		"Ask your tutor about a deadline extension",
		"Keep a regular sleep schedule for the next two weeks",
		"Join the peer support group that meets on campus",
		"Tell a trusted friend how you have been feeling",
		"Contact the disability office about study accommodations",
		"Use the out-of-hours support line if things get worse",
	}
)

// singleLabel lists the domains whose tag holds exactly one code.
var singleLabel = []labels.Domain{labels.Urgency, labels.Intensity}

// detectDomain reads the domain from the code list a prompt shows: each coded template lists
// its codes, starting with the first one of the catalog.
func detectDomain(input string) labels.Domain {
	for _, d := range labels.Domains {
		if codes := labels.Catalog[d]; len(codes) > 0 && strings.Contains(input, codes[0].Code) {
			return d
		}
	}
	return labels.Redressal
}

// answer builds the reasoning and tag content for c, deterministically from its prompt.
func answer(c *call) (reasoning, tag string) {
	h := fnv.New64a()
	h.Write([]byte(c.prompt))
	sum := h.Sum64()
	r := rand.New(rand.NewPCG(sum, sum>>32|1))
	reasoning = openings[r.IntN(len(openings))]
	if f := followUps[r.IntN(len(followUps))]; f != "" {
		reasoning += " " + f
	}

	d := detectDomain(c.input)
	codes := labels.Catalog[d]
	switch {
	case d == labels.Redressal:
		picked := pick(r, len(points), 2+r.IntN(3))
		list := make([]string, len(picked))
		for i, p := range picked {
			list[i] = points[p]
		}
		tag = string(encode(list, ""))
	case slices.Contains(singleLabel, d):
		tag = codes[r.IntN(len(codes))].Code
	case d == labels.Adjunct && r.IntN(4) == 0:
		tag = labels.NoAdjunct
	default:
		picked := pick(r, len(codes), 1+r.IntN(2))
		list := make([]string, len(picked))
		for i, p := range picked {
			list[i] = codes[p].Code
		}
		tag = strings.Join(list, ", ")
	}
	return reasoning, tag
}

// pick returns k distinct indexes below n, in ascending order.
func pick(r *rand.Rand, n, k int) []int {
	idx := r.Perm(n)[:k]
	slices.Sort(idx)
	return idx
}

// normalReply is the fake model's answer to c.
func normalReply(c *call) reply {
	reasoning, tag := answer(c)
	return reply{text: reasoning + "\n\n<<" + tag + ">>", finish: finishStop}
}

// malformedText is the same answer with the tag's brackets left off, as models do when they
// ignore the output format.
func malformedText(c *call) string {
	reasoning, tag := answer(c)
	return reasoning + "\n\nFinal answer: " + tag
}
