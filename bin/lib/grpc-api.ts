/**
 * The gRPC client and the generated proto code, loaded by a command when it first talks to the
 * control plane: together they are most of a command's start-up (~100 ms of CPU here), which
 * `--help`, a usage error or a command that never dials should not pay (issue 15).
 */
export async function loadGrpc() {
  const [client, proto] = await Promise.all([import("./grpc-client.js"), import("@sluice/proto")]);
  return { ...client, proto };
}
