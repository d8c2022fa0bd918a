package deployment

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// DashboardMetricNames returns every metric name that the PromQL of the shipped dashboard
// selects, in its panels' targets and its template variables, sorted and without repeats. The
// names are as written: a histogram's series keep their _bucket, _sum or _count suffix.
func DashboardMetricNames() ([]string, error) {
	queries, err := dashboardQueries(dashboardJSON)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, q := range queries {
		got, err := q.metricNames()
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", q.where, err)
		}
		names = append(names, got...)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// dashboardQuery is one PromQL expression of a dashboard, or the query of a template
// variable (label_values(...), query_result(...)), and where it stands.
type dashboardQuery struct {
	where    string
	expr     string
	variable bool
}

func (q dashboardQuery) metricNames() ([]string, error) {
	if !q.variable {
		return MetricNames(q.expr)
	}
	return variableMetricNames(q.expr)
}

// grafanaPanel is the part of a dashboard panel that holds queries; rows hold panels.
type grafanaPanel struct {
	Title   string         `json:"title"`
	Panels  []grafanaPanel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// dashboardQueries lists the PromQL of a dashboard's panels (rows' panels too) and of its
// query variables.
func dashboardQueries(data []byte) ([]dashboardQuery, error) {
	var d struct {
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("dashboard JSON: %w", err)
	}
	var out []dashboardQuery
	var walk func([]grafanaPanel)
	walk = func(panels []grafanaPanel) {
		for _, p := range panels {
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) != "" {
					out = append(out, dashboardQuery{where: fmt.Sprintf("panel %q, target %s", p.Title, t.RefID), expr: t.Expr})
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		// Grafana writes a variable's query as a string (older) or as {"query": "..."}.
		var s string
		if err := json.Unmarshal(v.Query, &s); err != nil {
			var o struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &o); err != nil {
				return nil, fmt.Errorf("dashboard variable %q: query is neither a string nor {\"query\": ...}", v.Name)
			}
			s = o.Query
		}
		out = append(out, dashboardQuery{where: fmt.Sprintf("variable %q", v.Name), expr: s, variable: true})
	}
	return out, nil
}

// variableMetricNames reads the query of a Grafana Prometheus variable: label_values(label),
// label_values(selector, label) or query_result(expr).
func variableMetricNames(q string) ([]string, error) {
	q = strings.TrimSpace(q)
	fn, inner, ok := strings.Cut(q, "(")
	if !ok || !strings.HasSuffix(inner, ")") {
		return nil, fmt.Errorf("variable query %q: want label_values(...) or query_result(...)", q)
	}
	inner = strings.TrimSuffix(inner, ")")
	switch strings.TrimSpace(fn) {
	case "query_result":
		return MetricNames(inner)
	case "label_values":
		toks, err := lexPromQL(inner)
		if err != nil {
			return nil, fmt.Errorf("variable query %q: %w", q, err)
		}
		// The last argument is the label; a selector before it names the metric.
		comma := -1
		depth := 0
		for i, t := range toks {
			switch t.text {
			case "(", "{", "[":
				depth++
			case ")", "}", "]":
				depth--
			case ",":
				if depth == 0 {
					comma = i
				}
			}
		}
		if comma < 0 {
			return nil, nil
		}
		return MetricNames(inner[:toks[comma].pos])
	}
	return nil, fmt.Errorf("variable query %q: want label_values(...) or query_result(...)", q)
}

// PromQL words that are never metric names where they stand.
var (
	// Aggregation operators: followed by ( or by a by/without clause.
	aggregators = map[string]bool{
		"sum": true, "avg": true, "count": true, "min": true, "max": true, "group": true,
		"stddev": true, "stdvar": true, "topk": true, "bottomk": true, "count_values": true,
		"quantile": true, "limitk": true, "limit_ratio": true,
	}
	// Clauses followed by a list of label names in parentheses (optional for group_*).
	labelListKeywords = map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	}
	// Binary operators and modifiers spelled as words.
	wordOperators = map[string]bool{
		"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
	}
)

// MetricNames returns the metric names a PromQL expression selects, in order of appearance and
// without repeats, as written: `rate(x_bucket[5m])` gives x_bucket. A selector named only by a
// matcher {__name__="x"} gives x. It skips function and aggregation names, keywords, label
// matchers, by/without/on/ignoring/group_left/group_right label lists, strings, numbers,
// durations, subquery and range brackets, comments and Grafana variables ($__rate_interval,
// ${var}, [[var]]). A selector whose name is a regular expression or a negation is an error:
// its names cannot be listed.
func MetricNames(expr string) ([]string, error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	add := func(n string) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch t.kind {
		case tokOpen:
			switch t.text {
			case "[":
				// A range, a subquery's range and step, or Grafana's [[var]]: nothing to select.
				i = toks.closing(i)
			case "{":
				// A selector without a name before it: the name can only be a __name__ matcher.
				end := toks.closing(i)
				n, err := nameMatcher(toks[i+1 : end])
				if err != nil {
					return nil, err
				}
				if n != "" {
					add(n)
				}
				i = end
			}
		case tokIdent:
			next := toks.at(i + 1)
			lower := strings.ToLower(t.text)
			switch {
			case labelListKeywords[lower]:
				if next.text == "(" {
					i = toks.closing(i + 1)
				}
			case wordOperators[lower], lower == "inf", lower == "nan":
			case aggregators[lower] && (next.text == "(" || labelListKeywords[strings.ToLower(next.text)]):
			case next.text == "(":
				// A function call, or start() / end() after @.
			default:
				add(t.text)
				if next.text == "{" {
					end := toks.closing(i + 1)
					if _, err := nameMatcher(toks[i+2 : end]); err != nil {
						return nil, err
					}
					i = end
				}
			}
		}
	}
	return names, nil
}

// nameMatcher returns the metric name among a selector's matchers, "" when there is none: a
// __name__="x" matcher, or a quoted name standing alone ({"x", job="y"}, Prometheus 3's form
// for names outside the classic character set).
func nameMatcher(toks tokens) (string, error) {
	name := ""
	for i, t := range toks {
		if t.kind == tokString && (i == 0 || toks[i-1].text == ",") && (i+1 == len(toks) || toks[i+1].text == ",") {
			name = unquote(t.text)
			continue
		}
		if t.kind != tokIdent || t.text != "__name__" {
			continue
		}
		op, val := toks.at(i+1), toks.at(i+2)
		if op.text != "=" || val.kind != tokString {
			return "", fmt.Errorf("selector with __name__%s%s at offset %d: only __name__=\"name\" names a metric that can be listed", op.text, val.text, t.pos)
		}
		name = unquote(val.text)
	}
	return name, nil
}

func unquote(s string) string {
	if len(s) < 2 {
		return s
	}
	body := s[1 : len(s)-1]
	if s[0] == '`' {
		return body
	}
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		if body[i] == '\\' && i+1 < len(body) {
			i++
		}
		b.WriteByte(body[i])
	}
	return b.String()
}

type tokKind int

const (
	tokIdent    tokKind = iota // metric, label, function or keyword name
	tokString                  // "...", '...' or `...`, quotes kept
	tokNumber                  // number or duration: 0.95, 1e-3, 0x1f, 5m, 1h30m
	tokVariable                // Grafana variable: $x, ${x}, ${x:fmt}
	tokOpen                    // ( { [
	tokClose                   // ) } ]
	tokOther                   // operators, comma, @, ...
)

type token struct {
	kind tokKind
	text string
	pos  int // byte offset in the expression
}

type tokens []token

// at is the token at i, or an empty one past the end.
func (ts tokens) at(i int) token {
	if i < 0 || i >= len(ts) {
		return token{kind: tokOther}
	}
	return ts[i]
}

// closing is the index of the bracket that closes the one at open; lexPromQL has checked that
// every bracket is closed.
func (ts tokens) closing(open int) int {
	depth := 0
	for i := open; i < len(ts); i++ {
		switch ts[i].kind {
		case tokOpen:
			depth++
		case tokClose:
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return len(ts) - 1
}

var closer = map[byte]byte{'(': ')', '{': '}', '[': ']'}

// lexPromQL splits a PromQL expression into tokens and checks that its brackets pair up.
func lexPromQL(s string) (tokens, error) {
	var out tokens
	var open []token
	for i := 0; i < len(s); {
		c := s[i]
		start := i
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
			continue
		case c == '"' || c == '\'' || c == '`':
			i++
			for i < len(s) && s[i] != c {
				if s[i] == '\\' && c != '`' {
					i++
				}
				i++
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated string at offset %d in %q", start, s)
			}
			i++
			out = append(out, token{tokString, s[start:i], start})
		case isIdentStart(c):
			for i < len(s) && isIdentChar(s[i]) {
				i++
			}
			out = append(out, token{tokIdent, s[start:i], start})
		case isDigit(c) || (c == '.' && i+1 < len(s) && isDigit(s[i+1])):
			for i < len(s) {
				if isIdentChar(s[i]) || s[i] == '.' {
					i++
				} else if (s[i] == '+' || s[i] == '-') && (s[i-1] == 'e' || s[i-1] == 'E') && !strings.HasPrefix(strings.ToLower(s[start:i]), "0x") {
					i++ // an exponent's sign: 1e-3
				} else {
					break
				}
			}
			out = append(out, token{tokNumber, s[start:i], start})
		case c == '$':
			i++
			if i < len(s) && s[i] == '{' {
				end := strings.IndexByte(s[i:], '}')
				if end < 0 {
					return nil, fmt.Errorf("unterminated variable at offset %d in %q", start, s)
				}
				i += end + 1
			} else {
				for i < len(s) && isIdentChar(s[i]) {
					i++
				}
			}
			out = append(out, token{tokVariable, s[start:i], start})
		case c == '(' || c == '{' || c == '[':
			i++
			t := token{tokOpen, s[start:i], start}
			out = append(out, t)
			open = append(open, t)
		case c == ')' || c == '}' || c == ']':
			i++
			if len(open) == 0 || closer[open[len(open)-1].text[0]] != c {
				return nil, fmt.Errorf("unbalanced %q at offset %d in %q", c, start, s)
			}
			open = open[:len(open)-1]
			out = append(out, token{tokClose, s[start:i], start})
		default:
			// Operators, two characters where PromQL has them: == != >= <= =~ !~.
			i++
			if i < len(s) && (s[i] == '=' || s[i] == '~') && strings.IndexByte("=!<>", c) >= 0 {
				i++
			}
			out = append(out, token{tokOther, s[start:i], start})
		}
	}
	if len(open) > 0 {
		t := open[len(open)-1]
		return nil, fmt.Errorf("unclosed %q at offset %d in %q", t.text, t.pos, s)
	}
	return out, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isIdentStart and isIdentChar follow PromQL's names: [a-zA-Z_:][a-zA-Z0-9_:]*.
func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || isDigit(c) }
