// `deno task bench:hostile`: how fast a well-behaved device of a remote is
// answered while other peers of the same remote do their worst: one floods
// requests and never reads a reply, one floods as fast as it can while
// reading, one sends garbage that closes its channel again and again. The
// control device's config-read latency (p50/p99/max) is printed for a
// quiet remote and under attack, measured in the same run.

import { parseArgs } from "@std/cli/parse-args";
import { MsgIo, setNonblocking, WOULD_BLOCK } from "../ffi/mod.ts";
import { Channel, Cmd, Message, Received } from "../lib/mpqemu/mod.ts";
import { spawnTestdevRemote } from "../lib/qemu/spawn_remote.ts";

const USAGE = `usage: deno task bench:hostile [--n N]

  --n N   control requests per phase (default 3000)`;

/** Latency quantiles of `xs` (microseconds). */
function quantiles(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number): string =>
    s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(1);
  return `p50 ${q(0.5)} µs, p99 ${q(0.99)} µs, max ${s.at(-1)!.toFixed(1)} µs`;
}

/** `n` config reads on `ch`, each timed; yields to `attack` in between. */
async function control(
  ch: Channel,
  n: number,
  attack: () => void,
): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    attack();
    const t0 = performance.now();
    ch.send(ch.tx.encodeCfg(Cmd.PCI_CFGREAD, 0, 0, 4));
    if (ch.receive() !== Received.MESSAGE) throw new Error("control closed");
    times.push((performance.now() - t0) * 1000);
    if (i % 100 === 0) await new Promise((r) => setTimeout(r, 0));
  }
  return times;
}

async function main(): Promise<void> {
  const args = parseArgs(Deno.args, {
    string: ["n"],
    boolean: ["help"],
    unknown: (a: string) => {
      throw new Error(`bench:hostile: unknown argument '${a}'\n${USAGE}`);
    },
  });
  if (args.help) {
    console.log(USAGE);
    return;
  }
  const n = Number(args.n ?? "3000");
  if (!Number.isInteger(n) || n < 100) {
    throw new Error(`bench:hostile: --n ${args.n}: expected an integer >= 100`);
  }
  const r = spawnTestdevRemote(["control", "deaf", "flood"]);
  const [ctl, deaf, flood] = r.fds.map((fd) => new Channel(fd));
  try {
    const quiet = await control(ctl, n, () => {});
    const io = new MsgIo(0);
    const req = new Message().encodeCfg(Cmd.PCI_CFGREAD, 0, 0, 4);
    const reqLen = req.wireLength;
    setNonblocking(deaf.fd, true);
    setNonblocking(flood.fd, true);
    let deafAlive = true;
    const attack = (): void => {
      // The deaf peer keeps sending and never reads: its replies pile up.
      if (deafAlive) {
        try {
          for (let k = 0; k < 8; k++) {
            if (
              io.send(deaf.fd, req.bytes, reqLen, null, 0, []) === WOULD_BLOCK
            ) break;
          }
        } catch {
          deafAlive = false; // dropped by the remote after 2 s
        }
      }
      // The flooder sends a burst and reads whatever replies are there.
      for (let k = 0; k < 16; k++) {
        if (io.send(flood.fd, req.bytes, reqLen, null, 0, []) === WOULD_BLOCK) {
          break;
        }
      }
      while (flood.receive(true) === Received.MESSAGE) { /* drained */ }
    };
    const attacked = await control(ctl, n, attack);
    console.log(
      `iohub bench:hostile: ${n} config reads of a control device of one remote`,
    );
    console.log(`  quiet remote:                         ${quantiles(quiet)}`);
    console.log(
      `  with a deaf peer and a flooding peer: ${quantiles(attacked)}`,
    );
    console.log(
      `  the deaf peer was ${
        deafAlive ? "still connected" : "dropped"
      } at the end`,
    );
  } finally {
    for (const c of [ctl, deaf, flood]) c.close();
    await r.finish();
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error((e as Error).message.split("\n")[0]);
    Deno.exit(2);
  }
}
