// Reads a JSON list of KEDA objects on stdin; prints one line per object, "ok KIND/NAME" or
// "invalid KIND/NAME: reason", and exits 1 if any is invalid. The schemas are KEDA's CRDs',
// as @kubernetes-models/keda generates them.
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const objects = JSON.parse(Buffer.concat(chunks).toString("utf8"));
let failed = false;
for (const object of objects) {
  const name = `${object.kind}/${object.metadata?.name}`;
  const Model = object.apiVersion === "keda.sh/v1alpha1" ? keda[object.kind] : undefined;
  if (Model === undefined) {
    console.log(`invalid ${name}: no KEDA schema for ${object.apiVersion} ${object.kind}`);
    failed = true;
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`ok ${name}`);
  } catch (err) {
    console.log(`invalid ${name}: ${err.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
