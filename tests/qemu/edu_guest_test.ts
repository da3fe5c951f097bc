// The edu guest (guest/edu/edu.S) through QEMU 7.2's x-pci-proxy-dev and
// our remote serving edu: SeaBIOS boots it, it finds edu on the PCI bus,
// checks ID and liveness, computes 10! and moves 4 KiB through the DMA
// buffer both ways. Under TCG (no interrupts through QEMU's proxy) it polls
// the completions and says so; under KVM it must take the interrupts.

import { assert, assertEquals } from "@std/assert";
import { buildEduImage } from "../../lib/guest/boot_image.ts";
import {
  assertGuestEnd,
  type GuestRun,
  guestRun,
  GUESTS_OK,
  KVM_GUESTS_OK,
  lineCounts,
} from "./guest_run.ts";

// Measured under TCG here: about 2 s (two 100 ms DMAs included).
const TIMEOUT_MS = 60_000;

async function eduRun(accel: "kvm" | "tcg"): Promise<GuestRun> {
  const guest = await buildEduImage();
  return await guestRun(
    accel,
    guest,
    [{ type: "edu", id: "edu0" }],
    TIMEOUT_MS,
  );
}

const PASSED = {
  device: "edu",
  devices: "1",
  id: "ok",
  liveness: "ok",
  factorial: "3628800",
  dma: "ok",
  status: "ok",
};

Deno.test({
  name: "edu guest (tcg): every check passes, completions polled",
  ignore: !GUESTS_OK,
  async fn(): Promise<void> {
    const { outcome, result, counters } = await eduRun("tcg");
    assertEquals(result, { ...PASSED, fact_irq: "polled", dma_irq: "polled" });
    assertGuestEnd(outcome, "passed");
    // edu raised INTx once per completion (factorial, DMA in, DMA out); the
    // guest's own acknowledgement lowered it each time; no EOI resampled.
    assertEquals(lineCounts(counters), [3, 3, 0]);
  },
});

Deno.test({
  name: "edu guest (kvm): every check passes, interrupts taken",
  ignore: !KVM_GUESTS_OK,
  async fn(): Promise<void> {
    const { outcome, result, counters } = await eduRun("kvm");
    assertEquals(result, { ...PASSED, fact_irq: "irq", dma_irq: "irq" });
    assertGuestEnd(outcome, "passed");
    assert(counters.asserts >= 3, JSON.stringify(counters));
    assert(counters.resamples >= 3, JSON.stringify(counters));
  },
});
