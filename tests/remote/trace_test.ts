// The trace never costs a device its service: a full disk, a reader that
// lags and the size limit each end or thin the trace, with one log line,
// and never block or throw into the request that recorded.

import {
  assert,
  assertEquals,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import {
  Errno,
  O_NONBLOCK,
  openPath,
  OwnedFd,
  readFd,
  SysError,
} from "../../ffi/mod.ts";
import type { Severity } from "../../lib/log.ts";
import { Tracer } from "../../lib/remote/trace.ts";
import { withTempDir } from "../temp_dir.ts";

function collect(): { lines: string[]; log: (l: string, s: Severity) => void } {
  const lines: string[] = [];
  return { lines, log: (line) => lines.push(line) };
}

async function mkfifo(path: string): Promise<void> {
  const { success } = await new Deno.Command("mkfifo", { args: [path] })
    .output();
  assert(success, `mkfifo ${path}`);
}

// What a FIFO holds now, up to `most` bytes.
function drain(fd: number, most = Infinity): string {
  const buf = new Uint8Array(Math.min(65536, most));
  let text = "";
  const decoder = new TextDecoder();
  for (;;) {
    let n: number;
    try {
      n = readFd(fd, buf);
    } catch (e) {
      if (e instanceof SysError && e.errno === Errno.EAGAIN) return text;
      throw e;
    }
    if (n === 0) return text;
    text += decoder.decode(buf.subarray(0, n), { stream: true });
    most -= n;
    if (most <= 0) return text;
  }
}

Deno.test("trace: a full disk stops tracing with one line, never throws", () => {
  const { lines, log } = collect();
  const t = new Tracer("/dev/full", { log });
  for (let i = 0; i < 3000; i++) t.event("dev0", "intx", { level: i & 1 });
  t.flush();
  t.event("dev0", "intx", { level: 1 });
  t.close();
  assertEquals(lines.length, 2, lines.join("\n"));
  assertStringIncludes(lines[0], "trace /dev/full: write: ENOSPC");
  assertStringIncludes(lines[0], "tracing stopped");
  assertEquals(lines[1], "trace /dev/full: 3001 records not written");
});

Deno.test("trace: stops at its size limit, whole lines up to there", () => {
  const dir = Deno.makeTempDirSync({ prefix: "iohub-trace-" });
  try {
    const path = `${dir}/t.jsonl`;
    const { lines, log } = collect();
    const t = new Tracer(path, { log, maxBytes: 100_000 });
    const total = 10_000;
    for (let i = 0; i < total; i++) t.event("dev0", "intx", { level: 1, i });
    t.close();
    const written = Deno.readTextFileSync(path).trim().split("\n");
    written.forEach((l, i) => assertEquals(JSON.parse(l).i, i));
    assert(Deno.statSync(path).size >= 100_000);
    assert(written.length < total);
    assertEquals(lines.length, 2, lines.join("\n"));
    assertStringIncludes(lines[0], "reached its limit of 100000 bytes");
    assertEquals(
      lines[1],
      `trace ${path}: ${total - written.length} records not written`,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("trace: a FIFO whose reader lags is never waited for; what it gets is whole lines", async () => {
  await withTempDir("iohub-trace-", async (dir) => {
    const path = `${dir}/fifo`;
    await mkfifo(path);
    assertThrows(
      () => new Tracer(path),
      SysError,
      "ENXIO",
      "a FIFO without its reader",
    );
    using reader = new OwnedFd(openPath(path, O_NONBLOCK));
    const { lines, log } = collect();
    const t = new Tracer(path, { log });
    // Far more than the pipe and the queue together hold.
    const total = 200_000;
    const extra = 50_000;
    const t0 = performance.now();
    for (let i = 0; i < total; i++) t.event("dev0", "intx", { level: 1, i });
    assert(performance.now() - t0 < 20_000, "recording never blocks");
    let got = drain(reader.fd);
    // The reader caught up once; more comes, it reads a little of it, and
    // the trace closes: what it finds still ends with a whole line.
    for (let i = total; i < total + extra; i++) {
      t.event("dev0", "intx", { level: 1, i });
    }
    t.flush();
    got += drain(reader.fd, 10_000);
    t.close();
    got += drain(reader.fd);
    assert(got.endsWith("\n"), `ends in half a line: ${got.slice(-80)}`);
    const recs = got.trim().split("\n").map((l) => JSON.parse(l));
    const ids = recs.map((r) => r.i as number);
    assert(ids.every((id, k) => k === 0 || id > ids[k - 1]), "in order");
    assert(lines.some((l) => l.includes("its reader lags")), lines.join("\n"));
    assertEquals(
      lines.at(-1),
      `trace ${path}: ${total + extra - recs.length} records not written`,
    );
  });
});
