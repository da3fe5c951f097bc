// One remote at its limit: 256 testdevs (one IOHUB PIRQ each, as QEMU's
// IOHUB maps devfn) each answer on their own channel and raise INTx on
// their own irqfd only; a 257th device is a usage error.

import { assert, assertEquals } from "@std/assert";
import { waitReadable } from "../../ffi/mod.ts";
import { Reg } from "../../lib/pci/devices/testdev.ts";
import { ProxyDevice } from "../../lib/proxy/proxy_device.ts";
import { spawnTestdevRemote } from "../../lib/qemu/spawn_remote.ts";
import { MAX_DEVICES } from "../../lib/remote/remote.ts";
import { iohub } from "../cli/cli_run.ts";
import { assertNoFdLeak } from "../fd_check.ts";

const TESTDEV_IDS = 0x10b11234; // device << 16 | vendor, config 0x00

// Raises INTx on `dev` and checks it arrives on that device's irqfd and on
// no other, then acknowledges and EOIs so the line is low again.
function raiseOnlyOn(proxies: ProxyDevice[], dev: number): void {
  const p = proxies[dev];
  p.barWrite(0, Reg.IRQ_RAISE, 1n, 4);
  const sink = p.startUserSink();
  assert(sink.wait(5000), `device ${dev}: no interrupt on its irqfd`);
  const others = proxies.filter((q, i) =>
    i !== dev && waitReadable(q.irq!.irqfd, 0)
  ).map((q) => q.name);
  assertEquals(others, [], `device ${dev}'s interrupt reached other irqfds`);
  p.barWrite(0, Reg.IRQ_ACK, 1n, 4);
  sink.eoi();
}

Deno.test("remote: 256 devices each answer and interrupt on their own PIRQ", async () => {
  await assertNoFdLeak(async () => {
    const ids = Array.from({ length: MAX_DEVICES }, (_, i) => `d${i}`);
    assertEquals(ids.length, 256);
    await using r = spawnTestdevRemote(ids);
    const proxies = r.fds.map((fd, i) => new ProxyDevice(fd, { name: ids[i] }));
    try {
      for (const p of proxies) {
        p.setupIrqfd();
        assertEquals(p.configRead(0, 4), TESTDEV_IDS, p.name);
      }
      // Full interrupt paths on the ends and the middle of the range: the
      // first and last PIRQ, and one past the 32 the IOHUB once allowed.
      for (const dev of [0, 32, 255]) {
        proxies[dev].probe();
        proxies[dev].mapBars([0xfebf0000, 0xc000]);
      }
      for (const dev of [255, 0, 32, 255]) raiseOnlyOn(proxies, dev);
    } finally {
      for (const p of proxies) p.close();
    }
    const { code, stderr } = await r.finish();
    assertEquals(code, 0, stderr);
  });
});

Deno.test("remote: 257 devices is a usage error with one line", async () => {
  const args = Array.from(
    { length: MAX_DEVICES + 1 },
    (_, i) => ["--device", `testdev,fd=${1000 + i},id=d${i}`],
  ).flat();
  const { code, stdout, stderr } = await iohub("remote", ...args);
  assertEquals(code, 2, stderr);
  assertEquals(stdout, "");
  assertEquals(
    stderr.trimEnd().split("\n"),
    ["iohub: remote: 257 devices, at most 256 per remote"],
  );
});
