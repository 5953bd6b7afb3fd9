// Generates src/schema.d.ts from a running wallet's served OpenAPI document:
//
//   npm run generate -- http://127.0.0.1:8080
//
// The drift test (test/drift.test.ts) calls `generate` on the document of a
// freshly started server and compares the result with the checked-in file.
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString, COMMENT_HEADER } from "openapi-typescript";

/** The TypeScript types of an OpenAPI document, as checked in. */
export async function generate(document: object): Promise<string> {
  // The document is passed as an object, so that no file or URL of the
  // machine that generated it ends up in the output.
  const ast = await openapiTS(document as Parameters<typeof openapiTS>[0], {
    alphabetize: true,
  });
  return COMMENT_HEADER + astToString(ast);
}

/** The document a wallet at `baseUrl` serves. */
export async function servedDocument(baseUrl: string): Promise<object> {
  const response = await fetch(new URL("/openapi.json", baseUrl));
  if (!response.ok) {
    throw new Error(`GET /openapi.json answered ${response.status}`);
  }
  return (await response.json()) as object;
}

/** Where the generated types live. */
export const SCHEMA_FILE = fileURLToPath(new URL("../../src/schema.d.ts", import.meta.url));

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const baseUrl = process.argv[2] ?? "http://127.0.0.1:8080";
  const text = await generate(await servedDocument(baseUrl));
  await writeFile(SCHEMA_FILE, text);
  console.log(`wrote ${SCHEMA_FILE} from ${baseUrl}/openapi.json`);
}
