// The interrupt path of an iohub remote without KVM: our proxy drives a
// fresh `iohub remote`'s testdev, reads each interrupt from the irqfd in
// user space and signals end-of-interrupt on the resamplefd. The demo and
// doctor use it where QEMU's proxy cannot deliver interrupts (no KVM).

import { Reg } from "../pci/devices/testdev.ts";
import { spawnTestdevRemote } from "../qemu/spawn_remote.ts";
import { ProxyDevice } from "./proxy_device.ts";

/** What measureUserSinkInterrupts() saw. */
export interface UserSinkResult {
  /** Interrupts raised. */
  count: number;
  /** Interrupts read from the irqfd (the run stops at the first missing). */
  delivered: number;
  /** Mean time of raise -> irqfd readable -> ACK -> EOI, in microseconds. */
  microsPerInterrupt: number;
  /** An EOI while the cause was still pending made the remote re-assert. */
  reassertedWhileHeld: boolean;
  /** After IRQ_ACK and EOI no further interrupt came. */
  quietAfterAck: boolean;
  /** The remote's exit status. */
  remoteCode: number;
  /** The remote's stderr, line by line (its close line has the counters). */
  remoteLines: string[];
}

// Far above any delivery time, short enough to fail fast when broken.
const WAIT_MS = 5000;
// How long "no further interrupt" is watched for.
const QUIET_MS = 100;

/**
 * Raises `count` interrupts through BAR0 of a testdev in a new remote,
 * each read from the irqfd, ACKed and EOI'd, then holds one across an EOI
 * to see the IOHUB re-assert it. `ok()` on the result says all behaved.
 */
export async function measureUserSinkInterrupts(
  count: number,
): Promise<UserSinkResult> {
  const remote = spawnTestdevRemote(["sink0"]);
  const proxy = new ProxyDevice(remote.fds[0], { name: "sink0" });
  let delivered = 0;
  let micros = 0;
  let reasserted = false;
  let quiet = false;
  try {
    proxy.setupIrqfd();
    proxy.probe();
    proxy.mapBars([0xfebf0000, 0xc000]);
    const sink = proxy.startUserSink();
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      proxy.barWrite(0, Reg.IRQ_RAISE, 1n, 4);
      if (!sink.wait(WAIT_MS)) break;
      delivered++;
      proxy.barWrite(0, Reg.IRQ_ACK, 1n, 4);
      sink.eoi();
    }
    micros = (performance.now() - t0) * 1000 / Math.max(delivered, 1);
    proxy.barWrite(0, Reg.IRQ_RAISE, 1n, 4);
    const first = sink.wait(WAIT_MS);
    sink.eoi();
    reasserted = first && sink.wait(WAIT_MS);
    proxy.barWrite(0, Reg.IRQ_ACK, 1n, 4);
    sink.eoi();
    quiet = !sink.wait(QUIET_MS);
  } finally {
    proxy.close();
  }
  const { code, stderr } = await remote.finish();
  return {
    count,
    delivered,
    microsPerInterrupt: micros,
    reassertedWhileHeld: reasserted,
    quietAfterAck: quiet,
    remoteCode: code,
    remoteLines: stderr.split("\n").filter((l) => l !== ""),
  };
}

/** Whether every interrupt came, the held level re-asserted, and all ended clean. */
export function userSinkOk(r: UserSinkResult): boolean {
  return r.delivered === r.count && r.reassertedWhileHeld &&
    r.quietAfterAck && r.remoteCode === 0;
}
