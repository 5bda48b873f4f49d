/**
 * Calls every RPC of a running encord-gateway through the generated stubs.
 *
 * client_stubs/interop.sh runs it (`npm test`) under the repo's dev stack
 * (python -m encord_gateway.devstack), which sets ENCORD_GATEWAY_ADDRESS,
 * ENCORD_DEMO_PROJECT and ENCORD_DEMO_DATASET. Without them the tests are
 * skipped, unless ENCORD_INTEROP_REQUIRED is set, where that is a failure.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { before, describe, test } from "node:test";

import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import {
  ApiKeyScope,
  ApiKeyService,
  BadRequestSchema,
  DatasetScope,
  ErrorInfoSchema,
} from "../src/index.js";

const env = {
  address: process.env.ENCORD_GATEWAY_ADDRESS ?? "",
  project: process.env.ENCORD_DEMO_PROJECT ?? "",
  dataset: process.env.ENCORD_DEMO_DATASET ?? "",
};
const missing = Object.entries(env).filter(([, v]) => !v).map(([k]) => k);
if (missing.length > 0 && process.env.ENCORD_INTEROP_REQUIRED) {
  throw new Error(`not set: ${missing.join(", ")}`);
}
const skip = missing.length > 0 ? "run under `python -m encord_gateway.devstack`" : false;

const token = process.env.ENCORD_GATEWAY_TOKEN;
const bearer: Interceptor = (next) => (req) => {
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};
// Made in before(): a transport needs a valid address, which a skipped run lacks.
let client: Client<typeof ApiKeyService>;
const call = { timeoutMs: 15_000 };

const fingerprint = (apiKey: string) => createHash("sha256").update(apiKey).digest("hex").slice(0, 16);
const sorted = <T extends number>(scopes: T[]) => [...scopes].sort((a, b) => a - b);
const allProjectScopes = [
  ApiKeyScope.LABEL_READ,
  ApiKeyScope.LABEL_WRITE,
  ApiKeyScope.MODEL_INFERENCE,
  ApiKeyScope.MODEL_TRAIN,
  ApiKeyScope.LABEL_LOGS_READ,
  ApiKeyScope.ALGO_LIBRARY,
];

describe("encord-gateway through the TypeScript stubs", { skip }, () => {
  before(() => {
    const transport = createGrpcTransport({ baseUrl: `http://${env.address}`, interceptors: [bearer] });
    client = createClient(ApiKeyService, transport);
  });

  test("project keys: create, list, get-or-create", async () => {
    const title = `ts interop ${process.hrtime.bigint()}`;
    const scopes = [ApiKeyScope.LABEL_READ, ApiKeyScope.LABEL_WRITE];

    const created = await client.createProjectApiKey({ projectHash: env.project, title, scopes }, call);
    assert.notEqual(created.apiKey, "");
    assert.equal(created.title, title);
    assert.equal(created.projectHash, env.project);
    assert.deepEqual(sorted(created.scopes), scopes);
    assert.equal(created.fingerprint, fingerprint(created.apiKey));

    const { apiKeys } = await client.listProjectApiKeys({ projectHash: env.project }, call);
    const listed = apiKeys.find((k) => k.fingerprint === created.fingerprint);
    assert.ok(listed, `none of ${apiKeys.length} listed keys has fingerprint ${created.fingerprint}`);
    assert.equal(listed.title, title);
    assert.equal(listed.projectHash, env.project);
    assert.deepEqual(sorted(listed.scopes), scopes);

    const first = await client.getOrCreateProjectApiKey({ projectHash: env.project }, call);
    const second = await client.getOrCreateProjectApiKey({ projectHash: env.project }, call);
    assert.notEqual(first.apiKey, "");
    assert.equal(second.apiKey, first.apiKey, "GetOrCreateProjectApiKey twice gave two keys");
    assert.deepEqual(sorted(first.scopes), allProjectScopes);
    assert.equal(first.projectHash, env.project);
    assert.equal(first.fingerprint, fingerprint(first.apiKey));
  });

  test("dataset keys: create, list, get-or-create", async () => {
    const title = `ts interop ${process.hrtime.bigint()}`;
    const scopes = [DatasetScope.READ];

    const created = await client.createDatasetApiKey({ datasetHash: env.dataset, title, scopes }, call);
    assert.notEqual(created.apiKey, "");
    assert.notEqual(created.keyHash, "");
    assert.equal(created.title, title);
    assert.equal(created.datasetHash, env.dataset);
    assert.deepEqual(sorted(created.scopes), scopes);
    assert.equal(created.fingerprint, fingerprint(created.apiKey));

    const { apiKeys } = await client.listDatasetApiKeys({ datasetHash: env.dataset }, call);
    const listed = apiKeys.find((k) => k.keyHash === created.keyHash);
    assert.ok(listed, `none of ${apiKeys.length} listed keys has key_hash ${created.keyHash}`);
    assert.equal(listed.title, title);
    assert.equal(listed.datasetHash, env.dataset);
    assert.deepEqual(sorted(listed.scopes), scopes);

    const first = await client.getOrCreateDatasetApiKey({ datasetHash: env.dataset }, call);
    const second = await client.getOrCreateDatasetApiKey({ datasetHash: env.dataset }, call);
    assert.notEqual(first.apiKey, "");
    assert.equal(second.keyHash, first.keyHash, "GetOrCreateDatasetApiKey twice gave two keys");
    assert.equal(second.apiKey, first.apiKey);
    assert.deepEqual(sorted(first.scopes), [DatasetScope.READ, DatasetScope.WRITE]);
  });

  test("an empty project hash is INVALID_ARGUMENT with a BadRequest for project_hash", async () => {
    const err = await client
      .createProjectApiKey({ projectHash: "", title: "ts interop", scopes: [ApiKeyScope.LABEL_READ] }, call)
      .then(
        () => assert.fail("CreateProjectApiKey with an empty project_hash succeeded"),
        (e: unknown) => ConnectError.from(e),
      );
    assert.equal(err.code, Code.InvalidArgument, err.message);
    const fields = err.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations.map((v) => v.field));
    assert.ok(fields.includes("project_hash"), `BadRequest field violations: ${JSON.stringify(fields)}`);
    const [info] = err.findDetails(ErrorInfoSchema);
    assert.equal(info?.domain, "encord-gateway");
    assert.notEqual(info?.reason ?? "", "");
  });
});
