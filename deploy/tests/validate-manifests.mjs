#!/usr/bin/env node
// Validate Kubernetes manifests against the API schemas of Kubernetes and of the CRDs
// shopmesh uses (Istio, KEDA, cert-manager, prometheus-operator, Argo CD), with the
// model classes of the `kubernetes-models` packages.
//
//   node validate-manifests.mjs [--summary FILE.json] FILE_OR_DIR...
//
// Every YAML document must have an apiVersion/kind that one of the packages models
// (unknown kinds fail), pass that model's schema, and carry no field the schema does
// not know (like `kubectl apply --validate=strict`: the packages' validators accept
// unknown fields, so every object read or enumerated during validation is tracked and
// whatever the validator never looked at is reported). Also: names are DNS-1123, and
// no (group, kind, namespace, name) appears twice within one FILE_OR_DIR argument.
// Exit status 1 when anything fails.
//
// Installed with its packages by scripts/check-deploy.sh (.work/tools/node).

import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";

// API group -> package holding its models.
const PACKAGES = [
  [/\.istio\.io$/, "@kubernetes-models/istio"],
  [/^keda\.sh$/, "@kubernetes-models/keda"],
  [/(^|\.)cert-manager\.io$/, "@kubernetes-models/cert-manager"],
  [/^monitoring\.coreos\.com$/, "@kubernetes-models/prometheus-operator"],
  [/^argoproj\.io$/, "@kubernetes-models/argo-cd"],
];

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
// Declared fields whose compiled validator has nothing to check, so it never reads them:
// the models' generator drops a property's schema when the property is itself named
// like the JSON-schema keyword (Argo CD's AppProject spec.description).
const SCHEMALESS_FIELDS = new Set(["description"]);
// Kinds whose name becomes a DNS label (Service) or a label value.
const LABEL_NAMED = new Set(["Service", "Namespace"]);

function modulePath(apiVersion) {
  const slash = apiVersion.indexOf("/");
  const group = slash < 0 ? "" : apiVersion.slice(0, slash);
  const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
  for (const [re, pkg] of PACKAGES) if (re.test(group)) return `${pkg}/${group}/${version}`;
  return group === "" ? `kubernetes-models/${version}` : `kubernetes-models/${group}/${version}`;
}

const moduleCache = new Map();
async function modelClass(apiVersion, kind) {
  const path = modulePath(apiVersion);
  if (!moduleCache.has(path)) {
    moduleCache.set(path, await import(path).catch(() => null));
  }
  const mod = moduleCache.get(path);
  const cls = mod && mod[kind];
  return typeof cls === "function" && cls.apiVersion === apiVersion && cls.kind === kind ? cls : null;
}

// Wrap `value` so that every property the validator reads (or every object whose keys it
// enumerates) is recorded; returns the wrapped value and fills `records`.
function track(value, path, records) {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v, i) => track(v, `${path}/${i}`, records));
  const rec = { path, keys: Object.keys(value), read: new Set(), touched: false, enumerated: false };
  records.push(rec);
  const inner = {};
  for (const [k, v] of Object.entries(value)) inner[k] = track(v, `${path}/${k}`, records);
  const note = (k) => {
    if (typeof k === "string") {
      rec.touched = true;
      rec.read.add(k);
    }
  };
  return new Proxy(inner, {
    get(t, k, r) {
      note(k);
      return Reflect.get(t, k, r);
    },
    has(t, k) {
      note(k);
      return Reflect.has(t, k);
    },
    ownKeys(t) {
      rec.enumerated = true;
      return Reflect.ownKeys(t);
    },
  });
}

function validate(cls, doc) {
  const errors = [];
  const records = [];
  try {
    cls.prototype.validate.call(track(doc, "", records));
  } catch (e) {
    errors.push(e.message);
  }
  for (const rec of records) {
    // Never looked into (free-form, x-kubernetes-preserve-unknown-fields) or iterated
    // (additionalProperties/patternProperties): nothing to say about its keys.
    if (!rec.touched || rec.enumerated) continue;
    for (const k of rec.keys) {
      if (!rec.read.has(k) && !SCHEMALESS_FIELDS.has(k)) errors.push(`unknown field ${rec.path}/${k}`);
    }
  }
  return errors;
}

// A directory stands for every file in it: a file there that is not a manifest fails.
function yamlFiles(arg) {
  if (statSync(arg).isDirectory()) {
    return readdirSync(arg)
      .sort()
      .map((f) => join(arg, f))
      .filter((f) => statSync(f).isFile());
  }
  return [arg];
}

async function main(argv) {
  let summaryFile = null;
  const inputs = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--summary") summaryFile = argv[++i];
    else inputs.push(argv[i]);
  }
  if (inputs.length === 0) {
    console.error("usage: validate-manifests.mjs [--summary FILE.json] FILE_OR_DIR...");
    return 2;
  }
  const failures = [];
  const byKind = {};
  let total = 0;
  for (const input of inputs) {
    const seen = new Map();
    for (const file of yamlFiles(input)) {
      const docs = parseAllDocuments(readFileSync(file, "utf8"));
      for (const [i, d] of docs.entries()) {
        const where = `${file} #${i + 1}`;
        if (d.errors.length) {
          failures.push(`${where}: YAML: ${d.errors.map((e) => e.message).join("; ")}`);
          continue;
        }
        const doc = d.toJS();
        if (doc === null || doc === undefined) continue;
        const { apiVersion, kind } = doc;
        const name = doc.metadata?.name;
        const id = `${where} ${apiVersion}/${kind} ${doc.metadata?.namespace ?? "-"}/${name}`;
        total++;
        if (typeof apiVersion !== "string" || typeof kind !== "string") {
          failures.push(`${id}: no apiVersion/kind`);
          continue;
        }
        const cls = await modelClass(apiVersion, kind);
        if (!cls) {
          failures.push(`${id}: unknown kind (no model for ${apiVersion} ${kind} in ${modulePath(apiVersion)})`);
          continue;
        }
        const errors = validate(cls, doc);
        if (typeof name !== "string" || !DNS1123_SUBDOMAIN.test(name) || name.length > 253) {
          errors.push(`metadata.name ${JSON.stringify(name)} is not a DNS-1123 subdomain`);
        } else if (LABEL_NAMED.has(kind) && (!DNS1123_LABEL.test(name) || name.length > 63)) {
          errors.push(`metadata.name ${JSON.stringify(name)} is not a DNS-1123 label (max 63)`);
        }
        for (const [k, v] of Object.entries(doc.metadata?.labels ?? {})) {
          if (typeof v !== "string" || v.length > 63 || !/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(v)) {
            errors.push(`label ${k}=${JSON.stringify(v)} is not a valid label value`);
          }
        }
        const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "core";
        const key = `${group}/${kind}/${doc.metadata?.namespace ?? ""}/${name}`;
        if (seen.has(key)) errors.push(`duplicate of ${seen.get(key)}`);
        seen.set(key, where);
        if (errors.length) failures.push(`${id}:\n    ${errors.join("\n    ")}`);
        const k = `${apiVersion} ${kind}`;
        byKind[k] = (byKind[k] ?? 0) + 1;
      }
    }
  }
  for (const k of Object.keys(byKind).sort()) console.log(`  ${String(byKind[k]).padStart(4)}  ${k}`);
  console.log(`${total} objects, ${total - failures.length} valid, ${failures.length} invalid`);
  for (const f of failures) console.error(`INVALID ${f}`);
  if (summaryFile) writeFileSync(summaryFile, JSON.stringify({ total, invalid: failures.length, byKind, failures }, null, 2));
  return failures.length ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
