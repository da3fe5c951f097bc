// `deno task bench`: round trips through our remote against QEMU 7.2's C
// remote, measured in the same run by the same TypeScript proxy, rounds
// alternating between peers because this machine's timings drift by
// several times from hour to hour. Prints ratios, never bare timings alone.

import { parseArgs } from "@std/cli/parse-args";
import { Reg } from "../lib/pci/devices/testdev.ts";
import { defaultQemu } from "../lib/qemu/probe.ts";
import { spawnTestdevRemote } from "../lib/qemu/spawn_remote.ts";
import { ProxyDevice, type UserIrqSink } from "../lib/proxy/proxy_device.ts";
import { spawnQemuRemote } from "../lib/qemu/qemu_remote.ts";
import { lastLine, type SocketChild } from "../lib/qemu/socket_child.ts";

/** One benchmarked operation on one peer. */
interface Op {
  name: string;
  run(): void;
}

/** A remote under test, driven through our proxy. */
interface Peer {
  label: string;
  ops: Op[];
  stop(): Promise<void>;
}

/**
 * How the proxy waits for a reply: polling first (its default) or asleep
 * in recvmsg at once, as QEMU's x-pci-proxy-dev waits.
 */
interface ProxyWait {
  /** Heading of this table. */
  title: string;
  /** ProxyOptions.replyPollMicros. */
  replyPollMicros?: number;
}

const PROXY_WAITS: ProxyWait[] = [
  { title: "proxy polls for replies (its default)" },
  {
    title: "proxy sleeps in recvmsg (as QEMU's x-pci-proxy-dev)",
    replyPollMicros: 0,
  },
];

const E1000_STATUS = 0x08;
const E1000_ICR = 0xc0;
const E1000_ICS = 0xc8;
const E1000_IMS = 0xd0;
const CAUSE = 0x2;
const WAIT_MS = 5000;

function prepare(p: ProxyDevice): UserIrqSink {
  p.setupIrqfd();
  p.probe();
  p.mapBars([0xfebc0000, 0xc000]);
  return p.startUserSink();
}

function mustDeliver(sink: UserIrqSink): void {
  if (!sink.wait(WAIT_MS)) throw new Error("interrupt not delivered");
}

// Builds a peer on a freshly spawned remote. If setting it up fails, the
// remote is stopped and its own last line joins the error: a remote that
// refuses its command line says why only on its stderr.
async function startPeer(
  child: SocketChild,
  name: string,
  wait: ProxyWait,
  stopSignal: Deno.Signal | undefined,
  build: (p: ProxyDevice, stop: () => Promise<void>) => Peer,
): Promise<Peer> {
  const p = new ProxyDevice(child.fds[0], {
    name,
    replyPollMicros: wait.replyPollMicros,
  });
  const stop = async (): Promise<void> => {
    p.close();
    await child.finish(stopSignal);
  };
  try {
    return build(p, stop);
  } catch (e) {
    p.close();
    const { stderr } = await child.finish(stopSignal);
    const last = lastLine(stderr);
    throw new Error(`${(e as Error).message}${last ? ` (${last})` : ""}`);
  }
}

function iohubPeer(
  label: string,
  extra: string[],
  wait: ProxyWait,
): Promise<Peer> {
  const r = spawnTestdevRemote(["bench"], extra);
  return startPeer(r, label, wait, undefined, (p, stop) => {
    const sink = prepare(p);
    return {
      label,
      ops: [
        { name: "config read", run: () => p.configRead(0, 4) },
        { name: "BAR read", run: () => p.barRead(0, Reg.ID, 4) },
        {
          name: "irq raise+deliver+ack",
          run: () => {
            p.barWrite(0, Reg.IRQ_RAISE, 1n, 4);
            mustDeliver(sink);
            p.barWrite(0, Reg.IRQ_ACK, 1n, 4);
            sink.eoi();
          },
        },
      ],
      stop,
    };
  });
}

async function qemuPeer(qemu: string, wait: ProxyWait): Promise<Peer> {
  const q = await spawnQemuRemote(qemu, [{ driver: "e1000" }]);
  return startPeer(q, "qemu-e1000", wait, "SIGTERM", (p, stop) => {
    const sink = prepare(p);
    p.barWrite(0, E1000_IMS, BigInt(CAUSE), 4);
    return {
      label: "QEMU remote",
      ops: [
        { name: "config read", run: () => p.configRead(0, 4) },
        { name: "BAR read", run: () => p.barRead(0, E1000_STATUS, 4) },
        {
          name: "irq raise+deliver+ack",
          run: () => {
            p.barWrite(0, E1000_ICS, BigInt(CAUSE), 4);
            mustDeliver(sink);
            p.barRead(0, E1000_ICR, 4);
            sink.eoi();
          },
        },
      ],
      stop,
    };
  });
}

// An irq cycle costs several reads: it runs a quarter as many times.
function countFor(op: Op, n: number): number {
  return op.name.startsWith("irq") ? Math.ceil(n / 4) : n;
}

function microsPerOp(op: Op, n: number): number {
  for (let i = 0; i < n / 10; i++) op.run();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) op.run();
  return ((performance.now() - t0) * 1000) / n;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const USAGE =
  `usage: deno task bench [--rounds R] [--n N] [--warmup W] [--poll-us US]
                        [--qemu PATH]

  --rounds R    alternating rounds over the peers (default 5)
  --n N         round trips per operation and round (default 1000; irq: N/4)
  --warmup W    round trips per operation and peer before the first round
                (default 10000; irq: W/4)
  --poll-us US  the busy-poll window of the third peer (default 50)
  --qemu PATH   QEMU for the C remote (default: $IOHUB_QEMU or
                qemu-system-x86_64)`;

async function main(): Promise<void> {
  const args = parseArgs(Deno.args, {
    string: ["rounds", "n", "warmup", "qemu", "poll-us"],
    boolean: ["help"],
    unknown: (arg: string) => {
      throw new Error(`bench: unknown argument '${arg}'\n${USAGE}`);
    },
  });
  if (args.help) {
    console.log(USAGE);
    return;
  }
  const opt = (name: string): string | undefined =>
    args[name] as string | undefined;
  const count = (name: string, fallback: number, least = 1): number => {
    const raw = opt(name) ?? String(fallback);
    if (!/^\d+$/.test(raw) || Number(raw) < least) {
      throw new Error(
        `bench: --${name} ${raw}: expected an integer of at least ${least}`,
      );
    }
    return Number(raw);
  };
  const rounds = count("rounds", 5);
  const n = count("n", 1000);
  const warmup = count("warmup", 10_000, 0);
  const pollUs = opt("poll-us") ?? "50";
  const qemu = opt("qemu") ?? defaultQemu();
  // One table per way the proxy waits; every peer of every table takes
  // its turn in each round, so drift hits them all alike.
  const tables: { wait: ProxyWait; peers: Peer[] }[] = [];
  const peers: Peer[] = [];
  try {
    for (const wait of PROXY_WAITS) {
      const table = { wait, peers: [] as Peer[] };
      tables.push(table);
      for (
        const start of [
          () => qemuPeer(qemu, wait),
          () => iohubPeer("iohub", [], wait),
          () =>
            iohubPeer(`iohub --poll-us ${pollUs}`, ["--poll-us", pollUs], wait),
        ]
      ) {
        const peer = await start();
        table.peers.push(peer);
        peers.push(peer);
      }
    }
    const opNames = peers[0].ops.map((o) => o.name);
    // times[peer][op] = one µs/op figure per round.
    const times = peers.map(() => opNames.map(() => [] as number[]));
    // V8 compiles the hot paths of the proxy and of each of our remotes in
    // the background during their first tens of thousands of round trips
    // (reads take up to twice as long meanwhile): measure steady state.
    for (const peer of peers) {
      for (const op of peer.ops) {
        for (let i = countFor(op, warmup); i > 0; i--) op.run();
      }
    }
    for (let r = 0; r < rounds; r++) {
      // Alternate the order too, so no peer always runs first.
      const order = r % 2 === 0 ? peers.keys() : [...peers.keys()].reverse();
      for (const pi of order) {
        // The first operation after a peer's turn comes round pays for the
        // pause (its remote sat idle, the scheduler moves the processes
        // about): the operations take turns being first, so the median of
        // each is a steady one.
        for (let k = 0; k < opNames.length; k++) {
          const oi = (r + k) % opNames.length;
          const op = peers[pi].ops[oi];
          times[pi][oi].push(microsPerOp(op, countFor(op, n)));
        }
      }
    }
    console.log(
      `iohub bench: ${warmup} round trips per operation to warm up, then ` +
        `${rounds} alternating rounds of ${n} (irq: a quarter; operations ` +
        `take turns going first), same ` +
        `TypeScript proxy for every peer; µs per operation = median over ` +
        `rounds; ratio = QEMU ` +
        `remote's time / this peer's (above 1: faster than QEMU)`,
    );
    let first = 0;
    for (const t of tables) {
      console.log(`\n${t.wait.title}:`);
      const header = ["operation".padEnd(24)];
      for (const p of t.peers) header.push(p.label.padStart(22));
      console.log(header.join(""));
      opNames.forEach((name, oi) => {
        const base = median(times[first][oi]);
        const cells = [name.padEnd(24), `${base.toFixed(1)} µs`.padStart(22)];
        for (let pi = first + 1; pi < first + t.peers.length; pi++) {
          const time = median(times[pi][oi]);
          cells.push(
            `${time.toFixed(1)} µs ${(base / time).toFixed(2)}x`.padStart(22),
          );
        }
        console.log(cells.join(""));
      });
      first += t.peers.length;
    }
  } finally {
    for (const p of peers) await p.stop();
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error((e as Error).message);
    Deno.exit(2);
  }
}
