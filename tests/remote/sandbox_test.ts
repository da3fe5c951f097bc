// The remote's sandbox: a fixture that confines itself through
// lib/remote/sandbox.ts and then tries what a hostile device model would,
// and `iohub remote --sandbox` serving a peer with SYNC_SYSMEM and SET_IRQFD.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { closeFd, EventFd, memfd } from "../../ffi/mod.ts";
import { Reg, TESTDEV_ID } from "../../lib/pci/devices/testdev.ts";
import { spawnRemote } from "./remote_process.ts";

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

Deno.test("sandbox: files, exec, TCP and signals are refused, from every thread", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "iohub-sandbox-" });
  const escape = `${Deno.makeTempDirSync()}/escape`;
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const outcomes = JSON.parse(
      await fixture(dir, String(Deno.pid), String(listener.addr.port)),
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
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
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

Deno.test("sandbox: iohub remote --sandbox serves config, BARs, DMA and interrupts", async () => {
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
