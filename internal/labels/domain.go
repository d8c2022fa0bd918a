// Package labels holds the six clinical domains, their label sets and the parsers that turn an
// LLM reply into a label.
package labels

import (
	"fmt"
	"strings"
)

// Domain names one clinical labelling task. Its string form is used in workflow IDs, config keys
// and the store, so it never changes.
type Domain string

// The six domains, in the order people see them.
const (
	Urgency     Domain = "urgency"
	Therapeutic Domain = "therapeutic"
	Intensity   Domain = "intensity"
	Adjunct     Domain = "adjunct"
	Modality    Domain = "modality"
	Redressal   Domain = "redressal"
)

// Domains lists every domain in display order.
var Domains = []Domain{Urgency, Therapeutic, Intensity, Adjunct, Modality, Redressal}

// ParseDomain accepts a domain name in any letter case.
func ParseDomain(s string) (Domain, error) {
	d := Domain(strings.ToLower(strings.TrimSpace(s)))
	for _, known := range Domains {
		if d == known {
			return d, nil
		}
	}
	return "", fmt.Errorf("unknown domain %q (want one of %s)", s, DomainList())
}

// DomainList is the comma-separated list of domain names, for messages.
func DomainList() string {
	names := make([]string, len(Domains))
	for i, d := range Domains {
		names[i] = string(d)
	}
	return strings.Join(names, ", ")
}
