/**
 * Mints a read-only project API key through a running encord-gateway and
 * lists the project's keys. Prints fingerprints, never the keys themselves.
 *
 *   ENCORD_GATEWAY_ADDRESS=127.0.0.1:50051 ENCORD_DEMO_PROJECT=<hash> npm run example
 */
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ApiKeyScope, ApiKeyService } from "../src/index.js"; // "@encord-gateway/client" outside this package

const address = process.env.ENCORD_GATEWAY_ADDRESS ?? "127.0.0.1:50051";
const projectHash = process.env.ENCORD_DEMO_PROJECT ?? "";
const token = process.env.ENCORD_GATEWAY_TOKEN;

// Sends the caller token, where the gateway is set up with them.
const bearer: Interceptor = (next) => (req) => {
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};
// Plaintext HTTP/2, for a gateway on loopback; use https:// across a network.
const transport = createGrpcTransport({ baseUrl: `http://${address}`, interceptors: [bearer] });
const client = createClient(ApiKeyService, transport);

const key = await client.createProjectApiKey(
  { projectHash, title: "labelling vendor (ts example)", scopes: [ApiKeyScope.LABEL_READ] },
  { timeoutMs: 10_000 },
);
console.log(`created "${key.title}" [${key.scopes.map((s) => ApiKeyScope[s])}] fingerprint=${key.fingerprint}`);

const { apiKeys } = await client.listProjectApiKeys({ projectHash }, { timeoutMs: 10_000 });
for (const k of apiKeys) {
  console.log(`  "${k.title}" [${k.scopes.map((s) => ApiKeyScope[s])}] fingerprint=${k.fingerprint}`);
}
