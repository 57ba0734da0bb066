import { test } from "node:test";
import assert from "node:assert/strict";
import { FrameScanner, Mode, splitFrames, WireError, type ScanSink } from "./frame-scanner.js";
import { parse, query, sync } from "./encode.js";
import { decodeBind, decodeParse, decodeQuery, decodeErrorFields } from "./decode.js";
import { readStartupPacket, encodeStartupMessage, encodeCancelRequest } from "./startup.js";

/** A client session as a driver sends it: simple query, a pipelined extended batch, COPY data, Terminate. */
function recordedClientStream(): Buffer {
  const bind = Buffer.from([
    0x42, 0, 0, 0, 26, 0x00, 0x00, // portal "", statement ""
    0, 1, 0, 1, // one format: binary
    0, 2, 0, 0, 0, 4, 0, 0, 0, 42, 0xff, 0xff, 0xff, 0xff, // two params: int4 42, NULL
    0, 0, // no result formats
  ]);
  const exec = Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0]);
  const copyHead = Buffer.from([0x64, 0, 0, 0, 0]);
  copyHead.writeInt32BE(4 + 3000, 1);
  const copyData = Buffer.concat([copyHead, Buffer.alloc(3000, 0x61)]);
  const copyDone = Buffer.from([0x63, 0, 0, 0, 4]);
  const term = Buffer.from([0x58, 0, 0, 0, 4]);
  return Buffer.concat([query("SELECT 1; SELECT 'ü'"), parse("", "SELECT $1::int4, $2::text"), bind, exec, sync(), copyData, copyDone, term]);
}

function collect(chunks: Buffer[], modeOf: (code: number) => Mode): { frames: Buffer[]; passed: Buffer } {
  const frames: Buffer[] = [];
  const passed: Buffer[] = [];
  const sink: ScanSink = {
    head: (code) => modeOf(code),
    frame: (_c, f) => {
      frames.push(Buffer.from(f));
      return true;
    },
    pass: (b) => passed.push(Buffer.from(b)),
  };
  const sc = new FrameScanner(1 << 20);
  for (const c of chunks) assert.equal(sc.feed(c, sink), true);
  return { frames, passed: Buffer.concat(passed) };
}

test("a recorded client stream split at every offset yields the same frames", () => {
  const stream = recordedClientStream();
  const expected = splitFrames(stream, 1 << 20);
  assert.equal(expected.rest.length, 0);
  assert.equal(expected.frames.length, 8);
  for (let cut = 0; cut <= stream.length; cut++) {
    const chunks = [stream.subarray(0, cut), stream.subarray(cut)];
    const whole = collect(chunks, () => Mode.Whole);
    assert.deepEqual(whole.frames, expected.frames.map((f) => f.raw), `cut at ${cut}`);
    // Pass mode reproduces the exact byte stream, whatever the cut
    const pass = collect(chunks, () => Mode.Pass);
    assert.ok(pass.passed.equals(stream), `pass cut at ${cut}`);
    // mixed: keep Query/Parse whole, drop Bind, pass the rest
    const mixed = collect(chunks, (c) => (c === 0x51 || c === 0x50 ? Mode.Whole : c === 0x42 ? Mode.Drop : Mode.Pass));
    assert.equal(mixed.frames.length, 2);
    const bindLen = expected.frames[2]!.raw.length;
    assert.equal(mixed.passed.length, stream.length - mixed.frames[0]!.length - mixed.frames[1]!.length - bindLen);
  }
});

test("one byte at a time yields the same frames", () => {
  const stream = recordedClientStream();
  const chunks = [...stream].map((b) => Buffer.from([b]));
  const whole = collect(chunks, () => Mode.Whole);
  assert.deepEqual(whole.frames, splitFrames(stream, 1 << 20).frames.map((f) => f.raw));
});

test("frames decode to what was encoded", () => {
  const { frames } = splitFrames(recordedClientStream(), 1 << 20);
  assert.equal(decodeQuery(frames[0]!.raw), "SELECT 1; SELECT 'ü'");
  assert.deepEqual(decodeParse(frames[1]!.raw), { name: "", sql: "SELECT $1::int4, $2::text", paramTypes: [] });
  const b = decodeBind(frames[2]!.raw);
  assert.deepEqual(b.paramFormats, [1, 1]);
  assert.deepEqual(b.params[0], Buffer.from([0, 0, 0, 42]));
  assert.equal(b.params[1], null);
});

test("a pause after a whole frame resumes exactly where it stopped", () => {
  const stream = recordedClientStream();
  const seen: number[] = [];
  let pauseNext = true;
  const sink: ScanSink = {
    head: () => Mode.Whole,
    frame: (c) => {
      seen.push(c);
      if (pauseNext) {
        pauseNext = false;
        return false;
      }
      return true;
    },
    pass: () => assert.fail("no pass"),
  };
  const sc = new FrameScanner(1 << 20);
  assert.equal(sc.feed(stream.subarray(0, 40), sink), false);
  assert.equal(sc.feed(stream.subarray(40), sink), false); // queued while paused
  assert.deepEqual(seen, [0x51]);
  assert.equal(sc.resume(sink), true);
  assert.deepEqual(seen, splitFrames(stream, 1 << 20).frames.map((f) => f.code));
});

test("malformed lengths are precise errors", () => {
  const neg = Buffer.from([0x51, 0xff, 0xff, 0xff, 0xf0]);
  assert.throws(() => splitFrames(neg, 1000), (e: unknown) => e instanceof WireError && /invalid message length -16/.test(e.message));
  const small = Buffer.from([0x51, 0, 0, 0, 3]);
  assert.throws(() => splitFrames(small, 1000), /invalid message length 3/);
  const big = Buffer.from([0x51, 0, 0x10, 0, 0]);
  assert.throws(() => new FrameScanner(1000).feed(big, { head: () => Mode.Pass, frame: () => true, pass: () => {} }), (e: unknown) => e instanceof WireError && e.sqlstate === "08P01" && /1048576 exceeds the maximum of 1000/.test(e.message));
});

test("startup packets", () => {
  const sm = encodeStartupMessage({ user: "ci", database: "orders" });
  for (let cut = 0; cut < sm.length; cut++) assert.equal(readStartupPacket(sm.subarray(0, cut)), null);
  const st = readStartupPacket(sm)!.packet;
  assert.ok(st.kind === "startup");
  assert.deepEqual({ ...st.params }, { user: "ci", database: "orders" });
  assert.deepEqual(readStartupPacket(encodeCancelRequest(7, -3))!.packet, { kind: "cancel", pid: 7, secret: -3 });
  assert.throws(() => readStartupPacket(Buffer.from("GET / HTTP/1.1\r\n\r\n")), WireError);
  const ssl = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
  assert.deepEqual(readStartupPacket(ssl)!.packet, { kind: "ssl" });
  assert.deepEqual(decodeErrorFields(Buffer.concat([Buffer.from([0x45, 0, 0, 0, 12]), Buffer.from("C42501\0\0")])), { C: "42501" });
});
