// The remote's sandbox: a fixture that confines itself through
// lib/remote/sandbox.ts and then tries what a hostile device model would,
// `iohub remote --sandbox` serving a peer with SYNC_SYSMEM and SET_IRQFD, and
// a hostile device module loaded by path behind it.

import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
} from "@std/assert";
import {
  closeFd,
  EventFd,
  memfd,
  pollReadable,
  readFd,
  writeFd,
} from "../../ffi/mod.ts";
import { Reg, TESTDEV_ID } from "../../lib/pci/devices/testdev.ts";
import { spawnWithSockets } from "../../lib/qemu/socket_child.ts";
import { iohub, MAIN, printedLaunch, startRemote } from "../cli/cli_run.ts";
import { haveLandlock } from "../requirements.ts";
import { within } from "../../lib/timer.ts";
import { withTempDir } from "../temp_dir.ts";
import { Client, spawnRemote } from "./remote_process.ts";

const landlock = haveLandlock();
const FIXTURE = new URL("./sandbox_fixture.ts", import.meta.url).pathname;
const BAR0 = 0xfebf0000n;

async function fixture(...args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", FIXTURE, ...args],
    stdin: "null",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, stderr);
  return new TextDecoder().decode(out.stdout);
}

Deno.test({
  name: "sandbox: files, exec, TCP and signals are refused, from every thread",
  ignore: !landlock,
}, async () => {
  await withTempDir("iohub-sandbox-", async (dir) => {
    await withTempDir("iohub-sandbox-outside-", async (outside) => {
      const escape = `${outside}/escape`;
      using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const outcomes = JSON.parse(
        await fixture(
          dir,
          String(Deno.pid),
          String(listener.addr.port),
          escape,
        ),
      ) as Record<string, string>;
      const denied = (key: string, text: string): void =>
        assertStringIncludes(outcomes[key], text, key);
      denied("readSync", "PermissionDenied");
      // Runs on a thread of Deno's pool that existed before the sandbox.
      denied("readAsync", "PermissionDenied");
      denied("openFfi", "EACCES");
      denied("writeOutside", "PermissionDenied");
      denied("spawn", "PermissionDenied");
      denied("connect", "PermissionDenied");
      denied("signalParent", "EPERM");
      for (const key of ["writeAllowed", "writeAllowedAsync", "signalSelf"]) {
        assertEquals(outcomes[key], "ok", key);
      }
      // What the runtime and the remote still need.
      for (const key of ["clock", "timer", "random", "fdinfo"]) {
        assertEquals(outcomes[key], "ok", key);
      }
      assertEquals(Deno.readTextFileSync(`${dir}/allowed.txt`), "x");
      assert(!(await exists(escape)));
    });
  });
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("sandbox: without Landlock, --sandbox fails with one clear line", async () => {
  assertEquals(
    (await fixture("--no-landlock")).trim(),
    "--sandbox: Landlock is not available on this kernel (landlock_create_ruleset: ENOSYS)",
  );
});

Deno.test({
  name:
    "sandbox: iohub remote --sandbox serves config, BARs, DMA and interrupts",
  ignore: !landlock,
}, async () => {
  await using r = spawnRemote(["dev"], ["--sandbox"]);
  const c = r.clients[0];
  c.cfgWrite(0x10, Number(BAR0));
  c.cfgWrite(0x04, 0x3, 2);
  assertEquals(c.barRead(BAR0), BigInt(TESTDEV_ID));
  using irq = new EventFd();
  using rs = new EventFd();
  c.setIrqfd(irq.fd, rs.fd);
  const fd = memfd("sandboxed-ram", 0x10000);
  try {
    c.syncSysmem([{ gpa: 0n, size: 0x10000n, offset: 0n, fd }]);
  } finally {
    closeFd(fd);
  }
  c.barWrite(BAR0 + BigInt(Reg.DMA_ADDR_LO), 0x1000n);
  c.barWrite(BAR0 + BigInt(Reg.DMA_LEN), 16n);
  c.barWrite(BAR0 + BigInt(Reg.DMA_CMD), 1n);
  assertEquals(c.barRead(BAR0 + BigInt(Reg.DMA_STATUS)), 0n);
  c.barWrite(BAR0 + BigInt(Reg.IRQ_RAISE), 1n);
  assertEquals(irq.drain(), 1n);
  const status = Deno.readTextFileSync(`/proc/${r.child.pid}/status`);
  assertStringIncludes(status, "NoNewPrivs:\t1");
  assertStringIncludes(status, "Seccomp:\t2");
  const { code, stderr } = await r.finish();
  assertEquals(code, 0, stderr);
  assertEquals(stderr.trim().split("\n").length, 1, stderr);
  assertStringIncludes(stderr, "dev: peer closed the connection");
});

Deno.test({
  name:
    "sandbox: with --control the remote starts confined and iohub stats answers",
  ignore: !landlock,
}, async () => {
  await withTempDir("iohub-sandbox-", async (dir) => {
    const control = `${dir}/ctl.sock`;
    // The control socket's wait for connections used to hold a thread of
    // Deno's pool busy, which the sandbox then could not confine.
    await using r = spawnRemote(["dev"], ["--sandbox", "--control", control]);
    const c = r.clients[0];
    assertEquals(c.cfgRead(0), 0x10b11234n);
    const stats = await iohub("stats", control, "--json");
    assertEquals(stats.code, 0, stats.stderr);
    const state = JSON.parse(stats.stdout);
    assertEquals(state.devices[0].id, "dev");
    const status = Deno.readTextFileSync(`/proc/${r.child.pid}/status`);
    assertStringIncludes(status, "Seccomp:\t2");
    const { code, stderr } = await r.finish();
    assertEquals(code, 0, stderr);
  });
});

Deno.test({
  name:
    "sandbox: a channel the remote drops gives its peer EOF at once, though the socket reaper runs",
  ignore: !landlock,
}, async () => {
  await withTempDir("iohub-sandbox-", async (dir) => {
    // --control makes the remote start the reaper, which must not inherit
    // the fd= sockets.
    await using r = spawnRemote(["bad", "good"], [
      "--sandbox",
      "--control",
      `${dir}/ctl.sock`,
    ]);
    const [bad, good] = r.clients;
    assertEquals(good.cfgRead(0), 0x10b11234n);
    // An unknown command: the remote closes this channel alone.
    writeFd(bad.ch.fd, new Uint8Array(16).fill(0x63));
    assert(await pollReadable(bad.ch.fd, 2000), "EOF within 2 s");
    assertEquals(readFd(bad.ch.fd, new Uint8Array(8)), 0);
    assertEquals(good.cfgRead(0), 0x10b11234n);
    const { code } = await r.finish();
    assertEquals(code, 1);
  });
});

const DEVICE_BODY =
  `({ identity: { vendorId: 0x1af4, deviceId: 0x10f9 }, bars: [], read() {}, write() {} })`;

/**
 * Serves a device module whose top level runs `prelude` under --sandbox,
 * which must refuse to start: exit 1 with one line, returned.
 */
async function refusedSandbox(dir: string, prelude: string): Promise<string> {
  const mod = `${dir}/dev.ts`;
  Deno.writeTextFileSync(
    mod,
    `${prelude}\nexport default () => ${DEVICE_BODY};`,
  );
  await using child = startRemote(
    "--sandbox",
    "--device",
    `${mod},socket=${dir}/a.sock`,
  );
  // A remote that took the sandbox would serve on: that fails the test.
  const output = child.output();
  assert(await within(output, 20_000), "the remote refused to start");
  const out = await output;
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 1, stderr);
  assertEquals(stderr.trim().split("\n").length, 1, stderr);
  return stderr;
}

// A Worker that takes the name of one of Deno's own threads, so that no
// name tells it apart.
const RENAMED_WORKER = `
const libc = Deno.dlopen("libc.so.6", {
  prctl: { parameters: ["i32", "buffer"], result: "i32" },
}).symbols;
libc.prctl(15, new TextEncoder().encode("V8 DefaultWorke\\0"));
setInterval(() => {}, 1000);
`;

Deno.test({
  name:
    "sandbox: a Worker a device started before the sandbox is refused, whatever its thread is named",
  ignore: !landlock,
}, async (t) => {
  for (
    const [name, code] of [
      ["plain", "setInterval(() => {}, 1000)"],
      ["renamed", RENAMED_WORKER],
    ]
  ) {
    await t.step(name, async () => {
      await withTempDir("iohub-sandbox-", async (dir) => {
        assertMatch(
          await refusedSandbox(
            dir,
            `new Worker("data:text/javascript," + encodeURIComponent(${
              JSON.stringify(code)
            }), { type: "module" });
            await new Promise((done) => setTimeout(done, 300));`,
          ),
          /^iohub: --sandbox: a thread started by device code before the sandbox \(.*\) would stay unconfined/,
        );
      });
    });
  }
});

Deno.test({
  name: "sandbox: a process a device started before the sandbox is refused",
  ignore: !landlock,
}, async () => {
  await withTempDir("iohub-sandbox-", async (dir) => {
    assertMatch(
      await refusedSandbox(
        dir,
        `new Deno.Command("/bin/sh", { args: ["-c", "read x"], stdin: "piped" }).spawn().unref();`,
      ),
      /^iohub: --sandbox: a process started before the sandbox \(pid \d+\) would stay unconfined/,
    );
  });
});

Deno.test({
  name:
    "sandbox: device code stuck while the sandbox is applied is still answered by the watchdog",
  ignore: !landlock,
}, async () => {
  await withTempDir("iohub-sandbox-", async (dir) => {
    const mod = `${dir}/stuck.ts`;
    // The timer fires at the first turn of the event loop after the
    // factory: inside the sandbox's own awaits.
    Deno.writeTextFileSync(
      mod,
      `export default () => { setTimeout(() => { for (;;) {} }, 0); return ${DEVICE_BODY}; };`,
    );
    await using child = startRemote(
      "--sandbox",
      "--device",
      `${mod},socket=${dir}/a.sock`,
    );
    const reader = child.stderr.pipeThrough(new TextDecoderStream())
      .getReader();
    let text = "";
    while (!text.includes("has not returned")) {
      const reading = reader.read();
      assert(await within(reading, 20_000), `no watchdog line: ${text}`);
      const read = await reading;
      if (read.done) break;
      text += read.value;
    }
    assertStringIncludes(text, "device code has not returned for");
    child.kill("SIGTERM");
    assert(await within(child.status, 20_000), "SIGTERM was answered");
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      text += r.value;
    }
    const status = await child.status;
    assertEquals(status.code, 143, text);
    assertStringIncludes(text, "SIGTERM: device code has not returned");
  });
});

// A hostile device module: a write to register 4*k starts attempt k, a read
// of register 4*k says how it went (0 pending, 1 refused, 2 done). It runs
// with every Deno permission: the sandbox alone must stop it.
const hostile = (outside: string, allowed: string, port: number): string => `
export default () => {
  const result = new Array(8).fill(0);
  const attempts = [
    () => Deno.readTextFileSync("/etc/passwd"),
    () => Deno.readTextFile("/etc/passwd"),
    () => Deno.writeTextFileSync(${JSON.stringify(outside)}, "escaped"),
    () => new Deno.Command("/bin/true").output(),
    async () => (await Deno.connect({ hostname: "127.0.0.1", port: ${port} })).close(),
    () => Deno.kill(${Deno.pid}, "SIGCONT"),
    () => Deno.writeTextFile(${JSON.stringify(allowed)}, "allowed"),
  ];
  return {
    identity: { vendorId: 0x1af4, deviceId: 0x10f1 },
    bars: [{ size: 4096, space: "memory" }],
    read(bar, off, data) { data[0] = result[off / 4] ?? 0xff; },
    write(bar, off) {
      const k = off / 4;
      (async () => { await attempts[k](); })().then(
        () => { result[k] = 2; },
        () => { result[k] = 1; },
      );
    },
  };
};
`;

Deno.test({
  name:
    "sandbox: a hostile device module behind iohub remote --sandbox is refused, serving goes on",
  ignore: !landlock,
}, async () => {
  await withTempDir("iohub-hostile-", async (dir) => {
    const allowedDir = `${dir}/allowed`;
    Deno.mkdirSync(allowedDir);
    const outside = `${dir}/escaped.txt`;
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const mod = `${dir}/hostile.ts`;
    Deno.writeTextFileSync(
      mod,
      hostile(outside, `${allowedDir}/ok.txt`, listener.addr.port),
    );
    const sc = spawnWithSockets(Deno.execPath(), 2, (fds) => [
      "run",
      "--allow-all",
      "--quiet",
      MAIN,
      "remote",
      "--sandbox",
      "--allow-path",
      allowedDir,
      "--device",
      `${mod},fd=${fds[0]},id=hostile`,
      "--device",
      `testdev,fd=${fds[1]},id=control`,
    ]);
    const [bad, control] = sc.fds.map((fd) => new Client(fd));
    try {
      bad.cfgWrite(0x10, Number(BAR0));
      bad.cfgWrite(0x04, 0x2, 2);
      control.cfgWrite(0x10, Number(BAR0));
      control.cfgWrite(0x04, 0x2, 2);
      const names = ["read", "async read", "write", "exec", "connect", "kill"];
      for (let k = 0; k <= names.length; k++) {
        bad.barWrite(BAR0 + BigInt(4 * k), 1n, 1);
        let r = 0n;
        for (let i = 0; i < 200 && r === 0n; i++) {
          await new Promise((done) => setTimeout(done, 5));
          r = bad.barRead(BAR0 + BigInt(4 * k), 1);
        }
        // The last attempt writes inside --allow-path, which must work.
        assertEquals(r, k < names.length ? 1n : 2n, names[k] ?? "allowed");
        assertEquals(control.barRead(BAR0), BigInt(TESTDEV_ID));
      }
      assert(!(await exists(outside)), "nothing written outside");
      assertEquals(Deno.readTextFileSync(`${allowedDir}/ok.txt`), "allowed");
    } finally {
      bad.close();
      control.close();
      const { code, stderr } = await sc.finish();
      assertEquals(code, 0, stderr);
    }
  });
});

Deno.test({
  name: "sandbox: SIGTERM still stops a sandboxed remote cleanly",
  ignore: !landlock,
}, async () => {
  await using r = spawnRemote(["dev"], ["--sandbox"]);
  assertEquals(r.clients[0].cfgRead(0x00), 0x10b11234n);
  r.child.kill("SIGTERM");
  // The peer stays connected: only the signal can end the remote.
  await r.child.status;
  const { code, stderr } = await r.finish();
  assertEquals(code, 143, stderr);
  assertStringIncludes(stderr, "SIGTERM: closing every channel");
});

Deno.test("sandbox: launch --sandbox --allow-path passes both to the remote", async () => {
  const { remote } = await printedLaunch(
    "--sandbox",
    "--allow-path",
    "/tmp/dev-data",
  );
  assertMatch(
    remote,
    /^remote: .* remote --device testdev,fd=\d+,id=\w+ --sandbox --allow-path=\/tmp\/dev-data --ready-fd \d+$/,
  );
  const bad = await iohub("launch", "--allow-path", "/tmp");
  assertEquals(bad.code, 2);
  assertEquals(bad.stderr, "iohub: launch: --allow-path needs --sandbox\n");
});
