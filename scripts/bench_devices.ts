// `deno task bench:devices`: many devices of one remote interrupting at
// once. One TypeScript proxy keeps every device's interrupt cycle going
// (raise, delivery on its irqfd, ACK, EOI through the resamplefd) and
// counts deliveries per device: the whole remote's interrupts/s, the spread
// between devices, and whether any device starves. QEMU 7.2's C remote
// serves the same number of devices (e1000s; one per process, all it
// accepts) in the same run, rounds alternating, because timings here drift
// several-fold within hours: only same-run ratios mean anything.

import { parseArgs } from "@std/cli/parse-args";
import { Epoll, EPOLLIN } from "../ffi/mod.ts";
import { Reg } from "../lib/pci/devices/testdev.ts";
import { defaultQemu } from "../lib/qemu/probe.ts";
import { spawnTestdevRemote } from "../lib/qemu/spawn_remote.ts";
import { spawnQemuRemote } from "../lib/qemu/qemu_remote.ts";
import type { SocketChild } from "../lib/qemu/socket_child.ts";
import { ProxyDevice, type UserIrqSink } from "../lib/proxy/proxy_device.ts";
import { MAX_DEVICES } from "../lib/remote/remote.ts";

const E1000_ICR = 0xc0;
const E1000_ICS = 0xc8;
const E1000_IMS = 0xd0;
const CAUSE = 0x2;
const WAIT_MS = 5000;
// A device below this share of the median rate counts as starved.
const STARVED_SHARE = 0.25;

/** A wrong command line: exit 2 with one line. */
class UsageError extends Error {}

/** One remote's devices behind our proxies, with its interrupt cycle. */
interface Peer {
  label: string;
  proxies: ProxyDevice[];
  sinks: UserIrqSink[];
  /** Makes device `i` raise its interrupt. */
  raise(i: number): void;
  /** Clears device `i`'s interrupt cause (before the EOI). */
  ack(i: number): void;
  /** Deliveries per device, one array per round. */
  rounds: number[][];
  /** Seconds each round lasted. */
  seconds: number[];
  stop(): Promise<void>;
}

// Distinct BAR bases per device, as firmware would assign them (a remote
// with one address space for all its devices, like QEMU's, needs them).
// 128 KiB covers an e1000's BAR0 (testdev's is 4 KiB), 64 bytes its I/O
// BAR; 256 devices fit below 64 KiB of ports.
function bases(i: number): number[] {
  return [0xe0000000 + i * 0x20000, 0xc000 + i * 0x40];
}

function prepare(p: ProxyDevice, i: number): UserIrqSink {
  p.setupIrqfd();
  p.probe();
  p.mapBars(bases(i));
  return p.startUserSink();
}

async function iohubPeer(devices: number): Promise<Peer> {
  const ids = Array.from({ length: devices }, (_, i) => `t${i}`);
  const child = spawnTestdevRemote(ids);
  const proxies = child.fds.map((fd, i) =>
    new ProxyDevice(fd, { name: ids[i] })
  );
  let sinks: UserIrqSink[];
  try {
    sinks = proxies.map(prepare);
  } catch (e) {
    for (const p of proxies) p.close();
    // Awaited: the caller exits right after, which would leave the child's
    // stderr file behind.
    await child.finish("SIGTERM");
    throw new Error(`iohub remote: ${(e as Error).message}`);
  }
  return {
    label: "iohub",
    proxies,
    sinks,
    raise: (i) => proxies[i].barWrite(0, Reg.IRQ_RAISE, 1n, 4),
    ack: (i) => proxies[i].barWrite(0, Reg.IRQ_ACK, 1n, 4),
    rounds: [],
    seconds: [],
    stop: async () => {
      for (const p of proxies) p.close();
      await child.finish();
    },
  };
}

// QEMU 7.2's x-remote-object takes one device per process (its class has
// max_devs = 1: a second one logs "Reached maximum number of devices: 1"
// and its socket is never served), so QEMU serves N devices as N remote
// processes of one e1000 each.
//
// The programmed state is read back before measuring: a device that lost
// it would otherwise show up as a missing interrupt minutes into a run.
async function qemuPeer(qemu: string, devices: number): Promise<Peer> {
  const children: SocketChild[] = [];
  const proxies: ProxyDevice[] = [];
  const sinks: UserIrqSink[] = [];
  const stop = async (): Promise<void> => {
    for (const p of proxies) p.close();
    for (const c of children) await c.finish("SIGTERM");
  };
  try {
    for (let i = 0; i < devices; i++) {
      const child = await spawnQemuRemote(qemu, [{ driver: "e1000" }]);
      children.push(child);
      const p = new ProxyDevice(child.fds[0], { name: `e1000-${i}` });
      proxies.push(p);
    }
    proxies.forEach((p, i) => {
      sinks.push(prepare(p, i));
      p.barWrite(0, E1000_IMS, BigInt(CAUSE), 4);
      const ims = p.barRead(0, E1000_IMS, 4);
      if (p.barBase(1) < 0 || ims !== BigInt(CAUSE)) {
        throw new Error(`${p.name}: reset under the setup (IMS ${ims})`);
      }
    });
  } catch (e) {
    await stop();
    throw new Error(`QEMU remote: ${(e as Error).message}`);
  }
  return {
    label: "QEMU remotes",
    proxies,
    sinks,
    raise: (i) => proxies[i].barWrite(0, E1000_ICS, BigInt(CAUSE), 4),
    // Reading ICR clears it, which lowers INTx.
    ack: (i) => void proxies[i].barRead(0, E1000_ICR, 4),
    rounds: [],
    seconds: [],
    stop,
  };
}

/**
 * One round: raise on every device, then for `seconds` take each delivery
 * epoll reports, ACK, EOI and raise again; finally settle the interrupt
 * still in flight on every device so the next round starts clean.
 */
function round(peer: Peer, seconds: number): void {
  const n = peer.proxies.length;
  const counts = new Array<number>(n).fill(0);
  using ep = new Epoll(n);
  peer.proxies.forEach((p, i) => ep.add(p.irq!.irqfd, EPOLLIN, i));
  for (let i = 0; i < n; i++) peer.raise(i);
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  while (performance.now() < end) {
    const ready = ep.wait(WAIT_MS);
    if (ready === 0) {
      throw new Error(`${peer.label}: no interrupt within ${WAIT_MS} ms`);
    }
    for (let k = 0; k < ready; k++) {
      const i = ep.token(k);
      if (!peer.sinks[i].poll()) continue;
      peer.ack(i);
      peer.sinks[i].eoi();
      counts[i]++;
      peer.raise(i);
    }
  }
  const elapsed = (performance.now() - t0) / 1000;
  for (let i = 0; i < n; i++) {
    if (!peer.sinks[i].wait(WAIT_MS)) {
      throw new Error(`${peer.proxies[i].name}: interrupt not delivered`);
    }
    peer.ack(i);
    peer.sinks[i].eoi();
  }
  peer.rounds.push(counts);
  peer.seconds.push(elapsed);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** What one peer measured, over all its rounds. */
interface Figures {
  devices: number;
  /** Median over rounds of the whole remote's interrupts/s. */
  total: number;
  /** Per-device interrupts/s over all rounds, sorted. */
  perDevice: number[];
}

function figures(peer: Peer): Figures {
  const time = peer.seconds.reduce((a, b) => a + b, 0);
  const perDevice = peer.proxies.map((_, i) =>
    peer.rounds.reduce((a, r) => a + r[i], 0) / time
  ).sort((a, b) => a - b);
  const totals = peer.rounds.map((r, k) =>
    r.reduce((a, b) => a + b, 0) / peer.seconds[k]
  );
  return { devices: peer.proxies.length, total: median(totals), perDevice };
}

// Devices (by name) whose rate is below STARVED_SHARE of the median.
function starved(peer: Peer, f: Figures): string[] {
  const time = peer.seconds.reduce((a, b) => a + b, 0);
  const floor = median(f.perDevice) * STARVED_SHARE;
  return peer.proxies.filter((_, i) =>
    peer.rounds.reduce((a, r) => a + r[i], 0) / time < floor
  ).map((p) => p.name);
}

const USAGE =
  `usage: deno task bench:devices [--devices N] [--rounds R] [--seconds S] [--qemu PATH]

  --devices N   testdevs in our remote, all interrupting at once (default 64,
                at most ${MAX_DEVICES})
  --rounds R    alternating rounds over the remotes (default 5)
  --seconds S   length of each round in seconds (default 2)
  --qemu PATH   QEMU for the C remote (default: $IOHUB_QEMU or
                qemu-system-x86_64); QEMU 7.2 serves one device per remote
                process, so it runs N processes of one e1000 each`;

interface Options {
  devices: number;
  rounds: number;
  seconds: number;
  qemu: string;
}

function options(argv: string[]): Options | null {
  const args = parseArgs(argv, {
    string: ["devices", "rounds", "seconds", "qemu"],
    boolean: ["help"],
    unknown: (arg: string) => {
      throw new UsageError(
        `bench:devices: unknown argument '${arg}' (see --help)`,
      );
    },
  });
  if (args.help) return null;
  if (args._.length > 0) {
    throw new UsageError(
      `bench:devices: unexpected argument '${args._[0]}' (see --help)`,
    );
  }
  const int = (name: string, fallback: number, max: number): number => {
    const raw = (args[name] as string | undefined) ?? String(fallback);
    if (!/^[1-9]\d*$/.test(raw) || Number(raw) > max) {
      throw new UsageError(
        `bench:devices: --${name} ${raw}: expected an integer from 1 to ${max}`,
      );
    }
    return Number(raw);
  };
  const rawSeconds = (args.seconds as string | undefined) ?? "2";
  const seconds = Number(rawSeconds);
  if (!/^\d+(\.\d+)?$/.test(rawSeconds) || !(seconds > 0) || seconds > 3600) {
    throw new UsageError(
      `bench:devices: --seconds ${rawSeconds}: expected a number of seconds above 0, at most 3600`,
    );
  }
  return {
    devices: int("devices", 64, MAX_DEVICES),
    rounds: int("rounds", 5, 1000),
    seconds,
    qemu: (args.qemu as string | undefined) ?? defaultQemu(),
  };
}

function row(peer: Peer, f: Figures): string {
  const p = f.perDevice;
  const cells = [
    peer.label.padEnd(14),
    String(f.devices).padStart(8),
    f.total.toFixed(0).padStart(14),
    p[0].toFixed(0).padStart(12),
    median(p).toFixed(0).padStart(12),
    p[p.length - 1].toFixed(0).padStart(12),
    (p[0] / p[p.length - 1]).toFixed(2).padStart(12),
  ];
  return cells.join("");
}

async function main(): Promise<number> {
  const opt = options(Deno.args);
  if (opt === null) {
    console.log(USAGE);
    return 0;
  }
  const peers: Peer[] = [];
  try {
    peers.push(await qemuPeer(opt.qemu, opt.devices));
    peers.push(await iohubPeer(opt.devices));
    for (let r = 0; r < opt.rounds; r++) {
      // Alternate the order too, so no remote always runs first.
      const order = r % 2 === 0 ? peers : [...peers].reverse();
      for (const p of order) round(p, opt.seconds);
    }
    console.log(
      `iohub bench:devices: ${opt.rounds} alternating rounds of ` +
        `${opt.seconds} s; one TypeScript proxy keeps every device's ` +
        `interrupt cycle going at once (raise, irqfd, ACK, EOI); ` +
        `total = median over rounds, per device = over all rounds`,
    );
    console.log(
      [
        "remote".padEnd(14),
        "devices".padStart(8),
        "total irq/s".padStart(14),
        "dev min".padStart(12),
        "dev median".padStart(12),
        "dev max".padStart(12),
        "min/max".padStart(12),
      ].join(""),
    );
    const figs = peers.map(figures);
    peers.forEach((p, i) => console.log(row(p, figs[i])));
    console.log(
      `ratio at ${opt.devices} devices (iohub / QEMU remote, total interrupts/s; ` +
        `above 1: iohub faster): ${
          (figs[1].total / figs[0].total).toFixed(2)
        }x`,
    );
    let ok = true;
    peers.forEach((p, i) => {
      const names = starved(p, figs[i]);
      if (names.length === 0) return;
      ok = false;
      console.log(
        `${p.label} (${figs[i].devices} devices): starved below ` +
          `${STARVED_SHARE * 100}% of the median: ${names.join(", ")}`,
      );
    });
    if (ok) console.log("fairness: no device starved in any remote");
    return ok ? 0 : 1;
  } finally {
    for (const p of peers) await p.stop();
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    console.error((e as Error).message.split("\n")[0]);
    Deno.exit(e instanceof UsageError ? 2 : 1);
  }
}
