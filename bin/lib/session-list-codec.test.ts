/**
 * The written-out codec of `sluice sessions list` against the generated code (the schema's own) and
 * a real grpc-js server: the same bytes, the same objects in the same key order, and the call's
 * status as the CLI's one-line error.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Server, ServerCredentials, status as grpcStatus, type sendUnaryData, type ServerUnaryCall } from "@grpc/grpc-js";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { ListSessionsRequest, ListSessionsResponse, SessionServiceService, type SessionSummary } from "@sluice/proto";
import { SluiceError } from "@sluice/shared/errors";
import { decodeListSessionsResponse, encodeListSessionsRequest } from "./session-list-codec.js";
import { grpcUnary, http2Authority } from "./grpc-unary.js";
import { freePort } from "./free-port.js";

const full: SessionSummary = {
  sessionId: "0193a1b2-0000-7000-8000-000000000001", region: "eu", node: "node-ä", resource: "orders", clientAddress: "10.0.0.1:5555",
  identity: "repo:acme/orders:ref:refs/heads/main", issuer: "https://token.actions.githubusercontent.com", groups: ["ci", "deployers", ""],
  status: "ended", denyReason: "", endReason: "client disconnected", startedAt: "2026-12-01T10:00:00.000Z", authenticatedAt: "2026-12-01T10:00:00.010Z",
  endedAt: "2026-12-01T10:00:01.000Z", statements: 2 ** 40 + 3, blocked: 7, policyRevision: 0, clientUser: "app", applicationName: "psql ✓",
};

test("the request encodes as the generated code encodes it", () => {
  const cases: ListSessionsRequest[] = [
    ListSessionsRequest.fromPartial({}),
    ListSessionsRequest.fromPartial({ identity: "ci", resource: "orders", since: "2026-12-01T00:00:00Z", until: "2026-12-02T00:00:00Z", decision: "deny", status: "ended", limit: 100, node: "n1" }),
    ListSessionsRequest.fromPartial({ limit: 2 ** 31 - 1, identity: "ü".repeat(200) }),
    ListSessionsRequest.fromPartial({ limit: -1 }),
  ];
  for (const r of cases) assert.deepEqual(encodeListSessionsRequest(r), Buffer.from(ListSessionsRequest.encode(r).finish()), JSON.stringify(r));
});

test("the answer decodes to the generated code's objects, key for key and in its order", () => {
  const answers = [
    ListSessionsResponse.fromPartial({}),
    ListSessionsResponse.fromPartial({ sessions: [full, {}, { sessionId: "x", statements: 1 }] }),
  ];
  for (const a of answers) {
    const bytes = Buffer.from(ListSessionsResponse.encode(a).finish());
    const mine = decodeListSessionsResponse(bytes);
    const theirs = ListSessionsResponse.decode(bytes);
    assert.deepEqual(mine, theirs);
    assert.equal(JSON.stringify(mine), JSON.stringify(theirs), "--json prints the same text");
  }
});

test("fields the codec does not know are skipped; a truncated answer is refused", () => {
  const w = new BinaryWriter();
  w.uint32((1 << 3) | 2).fork();
  w.uint32((1 << 3) | 2).string("s1");
  w.uint32((40 << 3) | 0).uint64(12345n); // a field added later
  w.uint32((41 << 3) | 1).fixed64(1n);
  w.uint32((42 << 3) | 5).fixed32(1);
  w.uint32((43 << 3) | 2).string("later");
  w.uint32((15 << 3) | 0).int64(9n);
  w.join();
  w.uint32((9 << 3) | 2).string("a later field of the answer");
  const bytes = Buffer.from(w.finish());
  const r = decodeListSessionsResponse(bytes);
  assert.equal(r.sessions.length, 1);
  assert.equal(r.sessions[0]!.sessionId, "s1");
  assert.equal(r.sessions[0]!.statements, 9);
  assert.deepEqual(r, ListSessionsResponse.decode(bytes));
  assert.throws(() => decodeListSessionsResponse(bytes.subarray(0, bytes.length - 30)), /truncated/);
});

test("http2Authority takes the address forms of the context and flags, nothing else", () => {
  assert.equal(http2Authority("127.0.0.1:7400"), "127.0.0.1:7400");
  assert.equal(http2Authority("dns:///cp.example.com:443"), "cp.example.com:443");
  assert.equal(http2Authority("[::1]:7400"), "[::1]:7400");
  assert.equal(http2Authority("unix:/run/sluice.sock"), null);
  assert.equal(http2Authority("127.0.0.1"), null);
  assert.equal(http2Authority("http://x:1/path"), null);
});

test("one call against a real grpc-js server: the answer, the bearer token, a refusal's status and message, an unreachable server", { timeout: 60_000 }, async (t) => {
  const seen: Array<{ auth: string; req: ListSessionsRequest }> = [];
  const server = new Server();
  server.addService(SessionServiceService, {
    list(call: ServerUnaryCall<ListSessionsRequest, ListSessionsResponse>, cb: sendUnaryData<ListSessionsResponse>) {
      const auth = String(call.metadata.get("authorization")[0] ?? "");
      seen.push({ auth, req: call.request });
      if (auth !== "Bearer good") return cb({ code: grpcStatus.PERMISSION_DENIED, details: "not an admin: ci-bot (50% sure)" });
      cb(null, ListSessionsResponse.fromPartial({ sessions: [full] }));
    },
    get: (_c: unknown, cb: sendUnaryData<unknown>) => cb({ code: grpcStatus.UNIMPLEMENTED }),
    rebuildReadModel: (_c: unknown, cb: sendUnaryData<unknown>) => cb({ code: grpcStatus.UNIMPLEMENTED }),
  });
  const port = await new Promise<number>((res, rej) => server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  t.after(() => server.forceShutdown());
  const server_ = `127.0.0.1:${port}`;
  const req = ListSessionsRequest.fromPartial({ resource: "orders", limit: 5 });

  const ok = decodeListSessionsResponse(await grpcUnary({ server: server_, token: "good" }, "/sluice.v1.SessionService/List", encodeListSessionsRequest(req)));
  assert.deepEqual(ok.sessions, [full]);
  assert.deepEqual(seen[0], { auth: "Bearer good", req });

  await assert.rejects(grpcUnary({ server: server_, token: "bad" }, "/sluice.v1.SessionService/List", encodeListSessionsRequest(req)), (e: unknown) => {
    assert.ok(e instanceof SluiceError);
    assert.equal(e.code, "permission_denied");
    assert.equal(e.message, "not an admin: ci-bot (50% sure)");
    return true;
  });
  await assert.rejects(grpcUnary({ server: server_, token: "good" }, "/sluice.v1.SessionService/NoSuchMethod", Buffer.alloc(0)), (e: unknown) => {
    assert.ok(e instanceof SluiceError);
    assert.equal(e.code, "internal"); // UNIMPLEMENTED, as fromGrpcStatus maps it
    return true;
  });
  const closed = await freePort();
  await assert.rejects(grpcUnary({ server: `127.0.0.1:${closed}`, token: "good" }, "/sluice.v1.SessionService/List", Buffer.alloc(0)), (e: unknown) => {
    assert.ok(e instanceof SluiceError);
    assert.equal(e.code, "unavailable");
    assert.equal(e.message, `cannot reach the control plane at 127.0.0.1:${closed}`);
    return true;
  });
});
