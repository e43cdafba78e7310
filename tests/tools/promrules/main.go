// Command promrules checks Prometheus rule files and Grafana dashboards with Prometheus' own
// parsers: rulefmt.ParseFile for the rule file format, the PromQL parser for every expression, and
// a list of metric names (an exporter's /metrics text) for every metric an expression selects.
// Every problem is printed on its own line; the exit code is 1 when there was any, 2 on bad usage.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var rules, dashboards, extra listFlag
	flag.Var(&rules, "rules", "a Prometheus rule file (repeatable)")
	flag.Var(&dashboards, "dashboard", "a Grafana dashboard JSON file (repeatable)")
	metricsFile := flag.String("metrics", "", "Prometheus text exposition (an exporter's /metrics): the metric names expressions may select")
	flag.Var(&extra, "extra", "a metric name Prometheus itself provides (e.g. up), accepted without the exposition (repeatable)")
	flag.Parse()
	if len(rules)+len(dashboards) == 0 || *metricsFile == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: promrules -metrics FILE [-extra NAME]... (-rules FILE | -dashboard FILE)...")
		os.Exit(2)
	}
	known, err := metricNames(*metricsFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", *metricsFile, err)
		os.Exit(2)
	}
	for _, name := range extra {
		known[name] = true
	}
	p := parser.NewParser(parser.Options{})
	var problems []string
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	exprs := 0
	for _, file := range rules {
		groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
		for _, e := range errs {
			report("%v", e)
		}
		if groups == nil {
			continue
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				name := r.Alert + r.Record
				where := fmt.Sprintf("%s: group %q, rule %q", file, g.Name, name)
				if r.Alert != "" {
					if r.Labels["severity"] == "" {
						report("%s: no severity label", where)
					}
					if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
						report("%s: needs both a summary and a description annotation", where)
					}
				}
				exprs++
				checkExpr(p, r.Expr, where, known, report)
			}
		}
	}
	for _, file := range dashboards {
		targets, err := dashboardExprs(file)
		if err != nil {
			report("%s: %v", file, err)
			continue
		}
		if len(targets) == 0 {
			report("%s: no panel has a PromQL target", file)
		}
		for _, t := range targets {
			exprs++
			checkExpr(p, grafanaToPromQL(t.expr), fmt.Sprintf("%s: panel %q", file, t.panel), known, report)
		}
	}
	for _, problem := range problems {
		fmt.Println(problem)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
	fmt.Printf("ok: %d expressions, %d known metric names\n", exprs, len(known))
}

// checkExpr parses one expression and reports every metric it selects that is not known.
func checkExpr(p parser.Parser, expr, where string, known map[string]bool, report func(string, ...any)) {
	node, err := p.ParseExpr(expr)
	if err != nil {
		report("%s: %v", where, err)
		return
	}
	selects := 0
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		selects++
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			report("%s: a selector without a metric name (%s)", where, vs.String())
		} else if !known[name] {
			report("%s: metric %s is not exposed", where, name)
		}
		return nil
	})
	if selects == 0 {
		report("%s: selects no metric", where)
	}
}

var typeLine = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)`)
var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]`)

// metricNames reads the names of an exposition: every sample's name, and the series names every
// declared metric has even before it has a sample (a histogram's _bucket, _sum and _count).
func metricNames(file string) (map[string]bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if m := typeLine.FindStringSubmatch(line); m != nil {
			switch m[2] {
			case "histogram":
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					names[m[1]+suffix] = true
				}
			case "summary":
				names[m[1]] = true
				names[m[1]+"_sum"] = true
				names[m[1]+"_count"] = true
			default:
				names[m[1]] = true
			}
		} else if m := sampleLine.FindStringSubmatch(line); m != nil {
			names[m[1]] = true
		}
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no metric names in it")
	}
	return names, nil
}

type target struct{ panel, expr string }

type panel struct {
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// dashboardExprs reads every target expression of a dashboard's panels, rows' panels included.
func dashboardExprs(file string) ([]target, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	var d panel
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	var out []target
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				out = append(out, target{p.Title, t.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	sort.SliceStable(out, func(i, j int) bool { return out[i].panel < out[j].panel })
	return out, nil
}

var grafanaRange = regexp.MustCompile(`\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}`)
var grafanaVar = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)

// grafanaToPromQL replaces Grafana's variables by values PromQL parses: its range variables by a
// duration, any other variable (used inside label values) by a plain word.
func grafanaToPromQL(expr string) string {
	expr = grafanaRange.ReplaceAllString(expr, "5m")
	return grafanaVar.ReplaceAllString(expr, "x")
}
