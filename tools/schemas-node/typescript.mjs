// Reads a JSON Schema on stdin and prints TypeScript declarations for it (json-schema-to-typescript).
// No banner and fixed formatting options, so the output depends only on the schema and the pinned versions.
import { readFileSync } from "node:fs";
import { compile } from "json-schema-to-typescript";

const schema = JSON.parse(readFileSync(0, "utf8"));
const ts = await compile(schema, schema.title ?? "Event", {
  bannerComment: "",
  additionalProperties: true,
  unreachableDefinitions: true,
  declareExternallyReferenced: true,
  format: true,
  style: { printWidth: 120, semi: true, singleQuote: false, trailingComma: "all" },
});
process.stdout.write(ts);
