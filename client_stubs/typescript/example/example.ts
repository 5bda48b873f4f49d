/**
 * Mints a read-only project API key through a running encord-gateway and
 * lists the project's keys. Prints fingerprints, never the keys themselves.
 *
 *   ENCORD_GATEWAY_ADDRESS=127.0.0.1:50051 ENCORD_DEMO_PROJECT=<hash> npm run example
 *
 * The create carries a requestId (ENCORD_REQUEST_ID or a new UUID): sent again
 * with the same id, from any language, it returns the same key.
 */
import { randomUUID } from "node:crypto";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ApiKeyScope, ApiKeyService } from "../src/index.js"; // "@encord-gateway/client" outside this package

const address = process.env.ENCORD_GATEWAY_ADDRESS ?? "127.0.0.1:50051";
const projectHash = process.env.ENCORD_DEMO_PROJECT ?? "";
const token = process.env.ENCORD_GATEWAY_TOKEN;
const title = process.env.ENCORD_EXAMPLE_TITLE ?? "labelling vendor (ts example)";
// Retry an UNAVAILABLE or ABORTED create with this same id: never a second key.
const requestId = process.env.ENCORD_REQUEST_ID ?? randomUUID();

// Sends the caller token, where the gateway is set up with them.
const bearer: Interceptor = (next) => (req) => {
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};
// Plaintext HTTP/2, for a gateway on loopback; use https:// across a network.
const transport = createGrpcTransport({ baseUrl: `http://${address}`, interceptors: [bearer] });
const client = createClient(ApiKeyService, transport);

const key = await client.createProjectApiKey(
  { projectHash, title, scopes: [ApiKeyScope.LABEL_READ], requestId },
  { timeoutMs: 10_000 },
);
console.log(`created "${key.title}" [${key.scopes.map((s) => ApiKeyScope[s])}] fingerprint=${key.fingerprint}`);

const { apiKeys } = await client.listProjectApiKeys({ projectHash }, { timeoutMs: 10_000 });
for (const k of apiKeys) {
  console.log(`  "${k.title}" [${k.scopes.map((s) => ApiKeyScope[s])}] fingerprint=${k.fingerprint}`);
}
