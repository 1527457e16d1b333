#!/usr/bin/env node
// Parse PromQL expressions with Prometheus' own grammar (@prometheus-io/lezer-promql, the
// parser of the Prometheus UI) and list the metric names each one selects.
//
//   echo '[{"id": "MyAlert", "expr": "rate(x_total[5m]) > 1"}]' | node promql-check.mjs
//
// Prints a JSON array: {id, ok, error, metrics} per input. Grafana's variables
// ($__rate_interval, $__interval, $__range) are replaced by durations and other $vars
// only occur inside label-matcher strings, so dashboard queries parse too.
// Used by deploy/tests/test_chart.py.

import { parser } from "@prometheus-io/lezer-promql";

function check(expr) {
  const text = expr
    .replace(/\$__(rate_interval|interval|range)/g, "5m")
    .replace(/\$\{__(rate_interval|interval|range)\}/g, "5m");
  const tree = parser.parse(text);
  let error = null;
  const metrics = new Set();
  tree.iterate({
    enter(node) {
      if (node.type.isError && error === null) {
        const from = Math.max(0, node.from - 20);
        error = `syntax error at offset ${node.from}: …${text.slice(from, node.from)}⟨here⟩${text.slice(node.from, node.from + 20)}…`;
      }
      if (node.name === "Identifier" && node.node.parent?.name === "VectorSelector") {
        metrics.add(text.slice(node.from, node.to));
      }
      // {__name__="metric"} selects a metric too.
      if (node.name === "UnquotedLabelMatcher" || node.name === "LabelMatcher") {
        const m = /^__name__\s*=\s*"([^"]+)"$/.exec(text.slice(node.from, node.to));
        if (m) metrics.add(m[1]);
      }
    },
  });
  if (text.trim() === "") error = "empty expression";
  return { ok: error === null, error, metrics: [...metrics].sort() };
}

let input = "";
for await (const chunk of process.stdin) input += chunk;
const items = JSON.parse(input);
console.log(JSON.stringify(items.map((it) => ({ id: it.id, ...check(it.expr) }))));
