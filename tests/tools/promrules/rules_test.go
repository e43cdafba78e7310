package main

// The alerts of deploy/helm/script-operator/files/prometheus-rules.yaml evaluated by Prometheus'
// own PromQL engine (promqltest) on sample series: each fires when it should and only then.
// Run by tests/metrics_test.ts (`go test` in this folder).

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
)

const rulesFile = "../../../deploy/helm/script-operator/files/prometheus-rules.yaml"

// alertExpr is the expression of alert `name`, on one line as promqltest's `eval` takes it.
func alertExpr(t *testing.T, name string) string {
	t.Helper()
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation,
		parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("%s: %v", rulesFile, errs)
	}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == name {
				return strings.Join(strings.Fields(r.Expr), " ")
			}
		}
	}
	t.Fatalf("%s: no alert %s", rulesFile, name)
	return ""
}

func run(t *testing.T, script string) {
	t.Helper()
	promqltest.RunTest(t, script, promqltest.NewTestEngine(t, false, 0, 100000))
}

func TestScriptRunFailed(t *testing.T) {
	// Which (namespace, script) pairs the alert holds for, at each time.
	e := "count by (namespace, script) (" + alertExpr(t, "ScriptRunFailed") + ")"
	run(t, `
load 1m
  script_operator_runs_finished_total{namespace="born-at-1",script="s",result="failed"} _x10 1x40
  script_operator_runs_finished_total{namespace="from-0",script="s",result="failed"} 0x10 1x40
  script_operator_runs_finished_total{namespace="never",script="s",result="failed"} 0x50
  script_operator_runs_finished_total{namespace="ok",script="s",result="succeeded"} 0x5 1x45
  script_operator_runs_finished_total{namespace="twice",script="s",result="failed"} 0x5 1x5 2x40

eval instant at 5m `+e+`

eval instant at 11m `+e+`
  {namespace="born-at-1",script="s"} 1
  {namespace="from-0",script="s"} 1
  {namespace="twice",script="s"} 1

eval instant at 24m `+e+`
  {namespace="born-at-1",script="s"} 1
  {namespace="from-0",script="s"} 1
  {namespace="twice",script="s"} 1

eval instant at 27m `+e+`

eval instant at 45m `+e+`
`)
}

func TestScriptRunsMostlyFailing(t *testing.T) {
	e := alertExpr(t, "ScriptRunsMostlyFailing")
	run(t, `
load 1m
  script_operator_runs_finished_total{namespace="a",script="s",result="failed"} 0+1x60
  script_operator_runs_finished_total{namespace="a",script="s",result="succeeded"} 0x60
  script_operator_runs_finished_total{namespace="b",script="s",result="failed"} 0+1x60
  script_operator_runs_finished_total{namespace="b",script="s",result="succeeded"} 0+2x60
  script_operator_runs_finished_total{namespace="idle",script="s",result="failed"} 0x60
  script_operator_runs_finished_total{namespace="idle",script="s",result="succeeded"} 0x60

eval instant at 60m `+e+`
  {namespace="a",script="s"} 1
`)
}

func TestOperatorAlerts(t *testing.T) {
	noLeader := alertExpr(t, "ScriptOperatorNoLeader")
	notReady := alertExpr(t, "ScriptOperatorNotReady")
	absent := alertExpr(t, "ScriptOperatorAbsent")
	errors := alertExpr(t, "ScriptOperatorReconcileErrors")
	stuck := alertExpr(t, "ScriptOperatorWorkQueueStuck")
	run(t, `
load 1m
  leader_election_master_status{job="so",instance="i1",name="L"} 0x20
  leader_election_master_status{job="so",instance="i2",name="L"} 0x5 1x15
  leader_election_master_status{job="other-operator",instance="o1",name="X"} 0x20
  script_operator_build_info{job="so",instance="i1",version="0.1.0"} 1x20
  script_operator_build_info{job="so",instance="i2",version="0.1.0"} 1x20
  script_operator_ready{job="so",instance="i1"} 0x20
  script_operator_ready{job="so",instance="i2"} 0x5 1x15
  controller_runtime_reconcile_errors_total{job="so",instance="i2",controller="scriptrun"} 0x5 0+3x15
  workqueue_longest_running_processor_seconds{job="so",instance="i2",name="scriptrun",controller="scriptrun"} 0x5 0+60x15

eval instant at 3m `+noLeader+`
  {job="so",name="L"} 0

eval instant at 8m `+noLeader+`

eval instant at 3m `+notReady+`
  {job="so"} 0

eval instant at 8m `+notReady+`

eval instant at 3m `+absent+`

eval instant at 3m `+errors+`

eval instant at 15m count(`+errors+`)
  {} 1

eval instant at 8m `+stuck+`

eval instant at 15m count(`+stuck+`)
  {} 1

clear

eval instant at 3m `+absent+`
  {} 1
`)
}
