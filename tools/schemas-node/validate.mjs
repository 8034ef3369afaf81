// Reads a JSON array of document texts on stdin; prints a JSON array of verdicts, one per document:
// {"event": bool, "own": bool|null, "errors": [...]}. "event" is event.json's verdict; "own" is the verdict
// of the document's own type schema (<type>.json) when its type is known, so the two can be compared.
// A text that is not JSON is invalid, as it is for capture.
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const schemaDir = process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), "../../schemas/jsonschema");
// strict: true turns every strict-mode check into an error, so a schema that does not compile fails here.
const ajv = new Ajv2020({ strict: true, allErrors: false });
addFormats(ajv);
const validators = {};
for (const name of readdirSync(schemaDir).filter((n) => n.endsWith(".json")).sort()) {
  validators[name.slice(0, -5)] = ajv.compile(JSON.parse(readFileSync(join(schemaDir, name), "utf8")));
}

const texts = JSON.parse(readFileSync(0, "utf8"));
const verdicts = texts.map((text) => {
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return { event: false, own: null, errors: [`invalid JSON: ${e.message}`] };
  }
  const event = validators.event(doc);
  const errors = event ? [] : validators.event.errors.map((e) => `${e.instancePath} ${e.message}`);
  const kind = doc !== null && typeof doc === "object" ? doc.type : undefined;
  const own = typeof kind === "string" && kind !== "event" && kind in validators ? validators[kind](doc) : null;
  return { event, own, errors };
});
process.stdout.write(JSON.stringify(verdicts) + "\n");
