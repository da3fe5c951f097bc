// A hostile peer against a real remote process: guest memory truncated under
// DMA, irqfds that would block, resamplefds that would spin. The remote must
// survive, stay idle, log little, and keep serving the other device.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import {
  addSeals,
  closeFd,
  EventFd,
  eventfd,
  F_SEAL_SHRINK,
  memfd,
  MFD_ALLOW_SEALING,
  pollReadable,
  SysError,
  truncateFd,
  writeFd,
} from "../../ffi/mod.ts";
import { Reg, TESTDEV_ID } from "../../lib/pci/devices/testdev.ts";
import { type Client, spawnRemote } from "./remote_process.ts";
import { openFds } from "../fd_check.ts";

const BAR0 = 0xfebf0000n;
const reg = (o: number): bigint => BAR0 + BigInt(o);

function enable(c: Client): void {
  c.cfgWrite(0x10, Number(BAR0));
  c.cfgWrite(0x04, 0x3, 2);
}

/** Runs a 16-byte DMA at GPA 0x1000 in direction `cmd`; its DMA_STATUS. */
function dma(c: Client, cmd: number): bigint {
  c.barWrite(reg(Reg.DMA_ADDR_LO), 0x1000n);
  c.barWrite(reg(Reg.DMA_ADDR_HI), 0n);
  c.barWrite(reg(Reg.DMA_LEN), 16n);
  c.barWrite(reg(Reg.DMA_CMD), BigInt(cmd));
  return c.barRead(reg(Reg.DMA_STATUS));
}

/** User + system CPU time of process `pid` in clock ticks (/proc/PID/stat). */
function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the parenthesised command name; utime and stime are 14, 15.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]);
}

/** CPU ticks (1/100 s) the remote burns over one second of wall time. */
async function cpuOverOneSecond(pid: number): Promise<number> {
  const before = cpuTicks(pid);
  await new Promise((r) => setTimeout(r, 1000));
  return cpuTicks(pid) - before;
}

Deno.test("isolation: guest memory truncated under the remote fails the DMA, not the process", async () => {
  await using r = spawnRemote(["bad", "good"]);
  const [bad, good] = r.clients;
  enable(bad);
  enable(good);
  const fd = memfd("unsealed-ram", 0x10000);
  const sealed = memfd("sealed-ram", 0x10000, MFD_ALLOW_SEALING);
  try {
    addSeals(sealed, F_SEAL_SHRINK);
    bad.syncSysmem([{ gpa: 0n, size: 0x10000n, offset: 0n, fd }]);
    good.syncSysmem([{ gpa: 0n, size: 0x10000n, offset: 0n, fd: sealed }]);
    assertEquals(dma(bad, 1), 0n, "DMA works before the truncation");
    assertEquals(dma(bad, 2), 0n);
    truncateFd(fd, 0);
    // Today's remote died here by SIGBUS.
    assertEquals(dma(bad, 2), 1n, "guest -> device fails");
    assertEquals(dma(bad, 1), 0n, "device -> guest grows the file back");
    truncateFd(fd, 0);
    assertEquals(dma(bad, 2), 1n);
    assertEquals(bad.barRead(BAR0), BigInt(TESTDEV_ID), "bad still served");
    // A file sealed against shrinking cannot be truncated: it is mapped.
    let refused = "";
    try {
      truncateFd(sealed, 0);
    } catch (e) {
      refused = (e as SysError).code;
    }
    assertEquals(refused, "EPERM");
    assertEquals(dma(good, 2), 0n);
    const maps = Deno.readTextFileSync(`/proc/${r.child.pid}/maps`);
    assertStringIncludes(maps, "memfd:sealed-ram");
    assert(!maps.includes("memfd:unsealed-ram"), "unsealed RAM is not mapped");
  } finally {
    closeFd(fd);
    closeFd(sealed);
  }
  const { code, stderr } = await r.finish();
  assertEquals(code, 0, stderr);
  const lines = stderr.split("\n").filter((l) => l.includes("DMA refused"));
  assertEquals(lines.length, 1, stderr);
  assertStringIncludes(lines[0], "bad: refused: BAR_WRITE: DMA refused");
});
