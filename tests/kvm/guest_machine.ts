// Test helper: tests on the real-mode interrupt guest's machine
// (lib/kvm/irq_guest.ts) under KVM: where they can run, a fresh machine for
// each with an fd-leak check around it, and guest runs in the background.

import { createIrqGuestMachine } from "../../lib/kvm/irq_guest.ts";
import type {
  KvmMachine,
  RunOptions,
  RunResult,
} from "../../lib/kvm/machine.ts";
import { assertNoFdLeak } from "../fd_check.ts";
import { haveBinutils, haveKvm } from "../requirements.ts";

/** Whether the interrupt guest can run here: KVM, and binutils to build it. */
export const GUEST_MACHINE_OK: boolean = haveKvm() && haveBinutils();

/** The GSI (in-kernel PIC line) the tests route the guest's interrupt to. */
export const GSI = 5;

/**
 * A test on a fresh interrupt-guest machine (ignored where it cannot run);
 * no fd of ours may leak across it.
 */
export function machineTest(
  name: string,
  body: (m: KvmMachine) => void | Promise<void>,
): void {
  Deno.test({
    name,
    ignore: !GUEST_MACHINE_OK,
    async fn(): Promise<void> {
      await assertNoFdLeak(async () => {
        using m = await createIrqGuestMachine();
        await body(m);
      });
    },
  });
}

/** A run with `opts` plus a promise for the guest's READY (rejects if the run does). */
export function start(
  m: KvmMachine,
  opts: RunOptions,
): { run: Promise<RunResult>; ready: Promise<void> } {
  const ready = Promise.withResolvers<void>();
  const run = m.run({ ...opts, onReady: () => ready.resolve() });
  run.catch(() => {});
  return {
    run,
    ready: Promise.race([ready.promise, run.then(() => {})]),
  };
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
