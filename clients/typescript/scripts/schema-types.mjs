// Generates src/schema.ts from the server's OpenAPI schema (../../schema.yml) with
// openapi-typescript, the version pinned in package-lock.json.
//
//   node scripts/schema-types.mjs           write src/schema.ts       (npm run generate)
//   node scripts/schema-types.mjs --check   regenerate into a temporary directory and fail
//                                           if src/schema.ts differs  (npm run check-types)
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const here = (relative) => fileURLToPath(new URL(relative, import.meta.url));
const SCHEMA = here("../../../schema.yml");
const OUTPUT = here("../src/schema.ts");
const CLI = here("../node_modules/openapi-typescript/bin/cli.js");
// --enum-values also emits the enums as runtime arrays (kernelStatusStateEnumValues).
const FLAGS = ["--enum-values"];

function generate(output) {
  execFileSync(process.execPath, [CLI, SCHEMA, ...FLAGS, "--output", output], {
    stdio: ["ignore", "ignore", "inherit"],
  });
}

function firstDifference(expected, actual) {
  const want = expected.split("\n");
  const got = actual.split("\n");
  for (let i = 0; i < Math.max(want.length, got.length); i++) {
    if (want[i] !== got[i]) {
      return `line ${i + 1}:\n  committed:   ${JSON.stringify(got[i])}\n  regenerated: ${JSON.stringify(want[i])}`;
    }
  }
  return "";
}

if (process.argv.includes("--check")) {
  const dir = mkdtempSync(join(tmpdir(), "kernel-status-schema-"));
  try {
    const fresh = join(dir, "schema.ts");
    generate(fresh);
    const expected = readFileSync(fresh, "utf8");
    let committed = "";
    try {
      committed = readFileSync(OUTPUT, "utf8");
    } catch {
      console.error("src/schema.ts is missing: run `npm run generate` in clients/typescript.");
      process.exit(1);
    }
    if (committed !== expected) {
      console.error(
        "src/schema.ts is stale against schema.yml: run `npm run generate` in clients/typescript.\n" +
          `First difference at ${firstDifference(expected, committed)}`,
      );
      process.exit(1);
    }
    console.log("src/schema.ts is up to date with schema.yml.");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  generate(OUTPUT);
  console.log("Wrote src/schema.ts from schema.yml.");
}
