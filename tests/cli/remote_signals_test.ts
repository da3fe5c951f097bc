// `iohub remote` as a process: SIGINT/SIGTERM close every channel with its
// counters and remove socket files; stale socket files are replaced, live
// ones refused.

import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
} from "@std/assert";
import { closeFd, connectUnix, listenUnix } from "../../ffi/mod.ts";
import { Cmd } from "../../lib/mpqemu/mod.ts";
import { Client } from "../remote/remote_process.ts";
import { withTempDir } from "../temp_dir.ts";
import { signalChild } from "../../lib/qemu/supervise.ts";
import { within } from "../../lib/timer.ts";
import { haveLandlock } from "../requirements.ts";
import { startRemote } from "./cli_run.ts";

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function connectWhenListening(path: string): Promise<Client> {
  for (let i = 0; i < 300; i++) {
    try {
      return new Client(connectUnix(path));
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  throw new Error(`nobody listens on ${path}`);
}

/** The text of a stream, read as far as asked. */
class Lines {
  text = "";
  readonly #reader: ReadableStreamDefaultReader<string>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }

  /**
   * Reads until `text` includes `s` (or the stream ends); throws if that
   * takes over `ms`, so a child that hangs fails the test instead.
   */
  async until(s: string, ms = 20_000): Promise<void> {
    const deadline = performance.now() + ms;
    while (!this.text.includes(s)) {
      const reading = this.#reader.read();
      if (!await within(reading, deadline - performance.now())) {
        throw new Error(`no "${s}" within ${ms} ms: ${this.text}`);
      }
      const read = await reading;
      if (read.done) return;
      this.text += read.value;
    }
  }

  /** Reads to the end. */
  async all(): Promise<string> {
    for (
      let x = await this.#reader.read();
      !x.done;
      x = await this.#reader.read()
    ) {
      this.text += x.value;
    }
    return this.text;
  }
}

for (const [signal, status] of [["SIGTERM", 143], ["SIGINT", 130]] as const) {
  Deno.test(`remote: ${signal} closes every channel with counters, removes socket files, exits ${status}`, async () => {
    await withTempDir("iohub-remote-signals-", async (dir) => {
      const a = `${dir}/a.sock`;
      const b = `${dir}/b.sock`;
      await using child = startRemote(
        "--device",
        `testdev,socket=${a},id=a`,
        "--device",
        `testdev,socket=${b},id=b`,
      );
      const c = await connectWhenListening(a);
      try {
        assertEquals(c.cfgRead(0), 0x10b11234n);
        child.kill(signal);
        const out = await child.output();
        const stderr = new TextDecoder().decode(out.stderr);
        assertEquals(out.code, status, stderr);
        assertStringIncludes(stderr, `${signal}: closing every channel`);
        assertStringIncludes(
          stderr,
          "a: remote shutting down; INTx asserts=0 deasserts=0",
        );
        assertStringIncludes(stderr, "b: remote shutting down");
        assert(!exists(a) && !exists(b), "socket files removed");
      } finally {
        c.close();
      }
    });
  });
}

/** Waits up to `ms` for `path` to be gone; whether it is. */
async function goneWithin(path: string, ms = 3000): Promise<boolean> {
  for (const end = performance.now() + ms; performance.now() < end;) {
    if (!exists(path)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return !exists(path);
}

// A sandboxed remote may not unlink: the files go once it has ended.
Deno.test({
  name:
    "remote --sandbox: socket files are removed after SIGTERM and SIGKILL, a file put in their place is not",
  ignore: !haveLandlock(),
}, async () => {
  await withTempDir("iohub-remote-signals-", async (dir) => {
    const a = `${dir}/a.sock`;
    const ctl = `${dir}/ctl.sock`;
    const sandboxed = (...extra: string[]): Deno.ChildProcess =>
      startRemote(
        "--sandbox",
        ...extra,
        "--device",
        `testdev,socket=${a},id=a`,
      );
    {
      await using child = sandboxed("--control", ctl);
      const c = await connectWhenListening(a);
      try {
        assertEquals(c.cfgRead(0), 0x10b11234n);
        child.kill("SIGTERM");
        assertEquals((await child.status).code, 143);
      } finally {
        c.close();
      }
      assert(await goneWithin(a), "device socket removed");
      assert(await goneWithin(ctl), "control socket removed");
    }
    {
      await using child = sandboxed();
      const c = await connectWhenListening(a);
      // Answered once serving, so after the reaper started: the socket is
      // listened on earlier, while the devices are set up.
      assertEquals(c.cfgRead(0), 0x10b11234n);
      c.close();
      child.kill("SIGKILL");
      await child.status;
      assert(await goneWithin(a), "removed after SIGKILL too");
    }
    {
      await using child = sandboxed("--control", ctl);
      const c = await connectWhenListening(a);
      try {
        // Connected and served, the remote listens no more: another may
        // take the path.
        assertEquals(c.cfgRead(0), 0x10b11234n);
        Deno.removeSync(a);
        const other = listenUnix(a);
        try {
          child.kill("SIGTERM");
          await child.status;
          // Once the reaper has removed the control socket it is done.
          assert(await goneWithin(ctl), "the reaper ran");
          assert(exists(a), "another's socket is kept");
        } finally {
          closeFd(other);
          Deno.removeSync(a);
        }
      } finally {
        c.close();
      }
    }
  });
});

// After the last channel ended the remote still closes its control socket
// (up to 200 ms): a SIGTERM then used to find no listener and kill it by
// the default action, leaving the socket file. Each attempt sends it just
// after the close line; one that comes too late (exit 0) is tried again.
Deno.test("remote: SIGTERM while it closes after the last channel ended still exits 143, files removed", async () => {
  let handled = 0;
  for (let attempt = 0; attempt < 10 && handled === 0; attempt++) {
    await withTempDir("iohub-remote-signals-", async (dir) => {
      const a = `${dir}/a.sock`;
      const ctl = `${dir}/ctl.sock`;
      await using child = startRemote(
        "--device",
        `testdev,socket=${a},id=a`,
        "--control",
        ctl,
      );
      const c = await connectWhenListening(a);
      assertEquals(c.cfgRead(0), 0x10b11234n);
      c.close();
      const stderr = new Lines(child.stderr);
      await stderr.until("a: peer closed the connection");
      // One already ended came too late for this attempt.
      signalChild(child, "SIGTERM");
      await stderr.all();
      const status = await child.status;
      assertEquals(
        status.signal,
        null,
        `killed by ${status.signal}: ${stderr.text}`,
      );
      assert(!exists(a) && !exists(ctl), "socket files removed");
      if (status.code === 143) handled++;
      else assertEquals(status.code, 0, stderr.text);
    });
  }
  assert(handled > 0, "no SIGTERM arrived while the remote was closing");
});

Deno.test("remote: a socket file left by a dead process is replaced", async () => {
  await withTempDir("iohub-remote-signals-", async (dir) => {
    const path = `${dir}/stale.sock`;
    closeFd(listenUnix(path)); // the file stays, nobody listens
    await using child = startRemote("--device", `testdev,socket=${path}`);
    const c = await connectWhenListening(path);
    try {
      assertEquals(c.cfgRead(0), 0x10b11234n);
    } finally {
      c.close();
    }
    const out = await child.output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  });
});

Deno.test("remote: a socket a live process listens on is refused, exit 2", async () => {
  await withTempDir("iohub-remote-signals-", async (dir) => {
    const path = `${dir}/live.sock`;
    const fd = listenUnix(path);
    try {
      const out = await startRemote("--device", `testdev,socket=${path}`)
        .output();
      const stderr = new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 2, stderr);
      assertEquals(
        stderr.trim(),
        `iohub: ${path}: a live process is listening on this socket`,
      );
      assert(exists(path), "the live process keeps its socket");
    } finally {
      closeFd(fd);
    }
  });
});

Deno.test("remote: a regular file at the socket path is never removed, exit 2", async () => {
  await withTempDir("iohub-remote-signals-", async (dir) => {
    const path = `${dir}/precious`;
    Deno.writeTextFileSync(path, "precious");
    const out = await startRemote("--device", `testdev,socket=${path}`)
      .output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 2, stderr);
    assertEquals(stderr.trim(), `iohub: ${path}: exists and is not a socket`);
    assertEquals(Deno.readTextFileSync(path), "precious");
  });
});

Deno.test("remote: a second remote on a live remote's path leaves the first one serving", async () => {
  await withTempDir("iohub-remote-signals-", async (dir) => {
    const path = `${dir}/live.sock`;
    await using first = startRemote("--device", `testdev,socket=${path}`);
    for (let i = 0; i < 300 && !exists(path); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const second = await startRemote("--device", `testdev,socket=${path}`)
      .output();
    assertEquals(second.code, 2, new TextDecoder().decode(second.stderr));
    const c = await connectWhenListening(path);
    try {
      assertEquals(c.cfgRead(0), 0x10b11234n, "the first remote still serves");
    } finally {
      c.close();
    }
    const out = await first.output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  });
});

// A device whose register 4 reads `body` first, behind a remote of its own
// (through bin/iohub, stderr piped); `fn` gets the remote, a client with
// BAR0 enabled, and a reader of the remote's stderr.
function withModuleRemote(
  body: string,
  fn: (
    child: Deno.ChildProcess,
    c: Client,
    stderr: Lines,
    control: string,
  ) => Promise<void>,
): Promise<void> {
  return withTempDir("iohub-remote-signals-", async (dir) => {
    const mod = `${dir}/dev.ts`;
    Deno.writeTextFileSync(
      mod,
      `export default () => ({
        identity: { vendorId: 0x1af4, deviceId: 0x10f3 },
        bars: [{ size: 4096, space: "memory" }],
        read(bar, off, data) {
          if (off === 4) { ${body} }
          data.fill(0);
        },
        write() {},
      });`,
    );
    const a = `${dir}/a.sock`;
    const control = `${dir}/ctl.sock`;
    await using child = startRemote(
      "--control",
      control,
      "--device",
      `${mod},socket=${a},id=dev`,
    );
    const c = await connectWhenListening(a);
    try {
      c.cfgWrite(0x10, 0xfebf0000);
      c.cfgWrite(0x04, 0x2, 2);
      assertEquals(c.barRead(0xfebf0000n), 0n);
      await fn(child, c, new Lines(child.stderr), control);
    } finally {
      c.close();
    }
  });
}

/** The child's exit status; SIGKILLs it and throws if that takes over `ms`. */
async function statusWithin(
  child: Deno.ChildProcess,
  ms = 20_000,
): Promise<Deno.CommandStatus> {
  if (await within(child.status, ms)) return await child.status;
  child.kill("SIGKILL");
  await child.status;
  throw new Error(`still running after ${ms} ms`);
}

/** Sends BAR_READs of register 4 without waiting for their answers. */
function readRegister4(c: Client, times = 1): void {
  for (let i = 0; i < times; i++) {
    c.ch.send(c.ch.tx.encodeBar(Cmd.BAR_READ, 0xfebf0004n, 0n, 4, true));
  }
}

const STUCK =
  /^iohub remote: device code of dev has not returned for [\d.]+ s: no device is served until it does; SIGINT or SIGTERM ends the process$/m;
const STUCK_EXIT =
  /^iohub remote: SIGTERM: device code of dev has not returned for [\d.]+ s; exiting without closing the channels$/m;

// A device callback that never returns holds the one JS thread, signal
// handlers included: the watchdog thread says so, and ends the process on
// SIGTERM.
Deno.test("remote: a device callback that never returns is reported, and SIGTERM still ends the remote", async () => {
  await withModuleRemote("for (;;) {}", async (child, c, stderr, control) => {
    readRegister4(c);
    await stderr.until("has not returned for");
    assertMatch(stderr.text, STUCK);
    assert(exists(control));
    child.kill("SIGTERM");
    await stderr.all();
    const status = await statusWithin(child);
    assertEquals([status.code, status.signal], [143, null], stderr.text);
    assertMatch(stderr.text, STUCK_EXIT);
    assert(!exists(control), "the watchdog removed the control socket");
  });
});

Deno.test("remote: a factory that never returns is reported, and SIGTERM still ends the remote", async () => {
  await withTempDir("iohub-remote-signals-", async (dir) => {
    const mod = `${dir}/dev.ts`;
    Deno.writeTextFileSync(mod, `export default () => { for (;;) {} };`);
    await using child = startRemote(
      "--device",
      `${mod},socket=${dir}/a.sock,id=dev`,
    );
    const stderr = new Lines(child.stderr);
    await stderr.until("has not returned for");
    assertMatch(stderr.text, STUCK);
    child.kill("SIGTERM");
    const status = await statusWithin(child);
    await stderr.all();
    assertEquals([status.code, status.signal], [143, null], stderr.text);
    assertMatch(stderr.text, STUCK_EXIT);
  });
});

Deno.test("remote: SIGINT while a module is still loading ends the remote at once, exit 130", async () => {
  await withTempDir("iohub-remote-signals-", async (dir) => {
    const mod = `${dir}/slow.ts`;
    Deno.writeTextFileSync(
      mod,
      `await new Promise(() => {});\nexport default () => ({});\n`,
    );
    await using child = startRemote(
      "--device",
      `${mod},socket=${dir}/a.sock,id=dev`,
    );
    const stderr = new Lines(child.stderr);
    // Its import has begun once the watchdog runs; give it a moment.
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = performance.now();
    child.kill("SIGINT");
    const status = await statusWithin(child);
    await stderr.all();
    assertEquals([status.code, status.signal], [130, null], stderr.text);
    assert(performance.now() - t0 < 5000, "not after the 20 s load limit");
    assertStringIncludes(stderr.text, `SIGINT: stopped loading ${mod}`);
    assert(!exists(`${dir}/a.sock`));
  });
});

Deno.test("remote: a SIGTERM early in a hang is not lost: the watchdog answers it once the silence lasts", async () => {
  await withModuleRemote("for (;;) {}", async (child, c, stderr) => {
    readRegister4(c);
    await new Promise((r) => setTimeout(r, 300));
    child.kill("SIGTERM");
    const status = await statusWithin(child);
    await stderr.all();
    assertEquals([status.code, status.signal], [143, null], stderr.text);
    assertMatch(stderr.text, STUCK_EXIT);
  });
});

Deno.test("remote: a device that is slow but returns is not taken for stuck; SIGTERM stops it cleanly", async () => {
  // 40 reads of 80 ms each, all read at once: the thread answers them in
  // one go, over 3 s, and only then turns to the signal.
  await withModuleRemote(
    "const t = Date.now(); while (Date.now() - t < 80) {}",
    async (child, c, stderr) => {
      readRegister4(c, 40);
      await new Promise((r) => setTimeout(r, 1500));
      child.kill("SIGTERM");
      const status = await statusWithin(child);
      await stderr.all();
      assertEquals([status.code, status.signal], [143, null], stderr.text);
      assertStringIncludes(stderr.text, "SIGTERM: closing every channel");
      assertStringIncludes(stderr.text, "dev: remote shutting down");
      assert(!stderr.text.includes("has not returned"), stderr.text);
    },
  );
});
