// The checked-in types are those of the document the server serves: a change
// to the document without `npm run generate` fails here.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { generate, SCHEMA_FILE, servedDocument } from "../scripts/generate.js";
import { startWallet } from "./server.js";

test("src/schema.d.ts is what openapi-typescript makes of the served /openapi.json", async () => {
  const wallet = await startWallet();
  try {
    const expected = await generate(await servedDocument(wallet.baseUrl));
    const checkedIn = await readFile(SCHEMA_FILE, "utf8");
    assert.ok(
      checkedIn === expected,
      "src/schema.d.ts has drifted from the served document: run `npm run generate -- <url of a running wallet>`",
    );
  } finally {
    await wallet.stop();
  }
});
