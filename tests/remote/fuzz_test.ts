// A bounded fuzz run against a real remote: random and mutated messages
// with random fds (eventfds, pipes, memfds, sockets) on one channel after
// another for about 3 s, while a control device is driven alongside. The
// process must live, the control must answer every request, and the
// remote's fd count must come back to its baseline.

import { assert, assertEquals } from "@std/assert";
import {
  addSeals,
  closeFd,
  eventfd,
  F_SEAL_SHRINK,
  memfd,
  MFD_ALLOW_SEALING,
  pipe,
  pollReadable,
  SysError,
} from "../../ffi/mod.ts";
import { TESTDEV_ID } from "../../lib/pci/devices/testdev.ts";
import { Cmd, Message, Received } from "../../lib/mpqemu/mod.ts";
import { prng } from "../prng.ts";
import { assertNoFdLeak, fdsOnceCount, openFds } from "../fd_check.ts";
import { BAR0, BAR1, type Client, spawnRemote } from "./remote_process.ts";

const FUZZ_MS = 3000;
// Most channels soon break a rule and are closed: enough for the run.
const CHANNELS = 250;

/** One fuzz case generator over `rand`. */
class Fuzzer {
  readonly #rand: () => number;
  readonly #msg = new Message();

  constructor(rand: () => number) {
    this.#rand = rand;
  }

  int(n: number): number {
    return Math.floor(this.#rand() * n);
  }

  /**
   * A fresh fd, of the kind `want` (what the command takes) seven times in
   * eight, else of a random kind; `own` is the channel's own socket.
   */
  fd(own: number, want: number): { fd: number; ours: boolean } {
    switch (this.int(8) === 0 ? this.int(8) : want) {
      case 0:
        return { fd: eventfd(), ours: true };
      case 1:
        return {
          fd: eventfd(this.int(2) === 0, this.int(2) === 0),
          ours: true,
        };
      case 2:
      case 3: {
        // One end, the other closed: EPOLLHUP or EPOLLERR for ever.
        const [r, w] = pipe();
        const [keep, drop] = this.int(2) === 0 ? [r, w] : [w, r];
        closeFd(drop);
        return { fd: keep, ours: true };
      }
      case 4:
      case 5: {
        const size = [0x1000, 0x30000, 0x30000, 0x30000][this.int(4)];
        const fd = memfd("fuzz", size, MFD_ALLOW_SEALING);
        if (this.int(2) === 0) addSeals(fd, F_SEAL_SHRINK);
        return { fd, ours: true };
      }
      default:
        return { fd: own, ours: false };
    }
  }

  /**
   * A message and how many fds to send with it: well formed mostly (the
   * fds its command takes), sometimes mutated or with a random fd count.
   */
  message(): { bytes: Uint8Array; numFds: number; kind: number } {
    const m = this.#msg;
    const r = (n: number): number => this.int(n);
    const big = (): bigint => BigInt(r(0x10000)) << BigInt(r(48));
    let numFds = 0;
    let kind = 0;
    // SYNC_SYSMEM and SET_IRQFD take fds and break a channel most easily:
    // rarer, so each channel lives a while.
    switch (r(12)) {
      case 0:
      case 7:
      case 8:
        m.encodeCfg(Cmd.PCI_CFGREAD, r(0x110), 0, [1, 2, 4, 3][r(4)]);
        break;
      case 1:
      case 9:
        m.encodeCfg(Cmd.PCI_CFGWRITE, r(0x110), r(0x1_0000_0000), 1 << r(3));
        break;
      case 2:
      case 3:
      case 5:
      case 10:
        m.encodeBar(
          r(2) === 0 ? Cmd.BAR_READ : Cmd.BAR_WRITE,
          [BAR0, BAR1, big()][r(3)] + BigInt(r(0x1000)),
          big(),
          [1, 2, 4, 8, 3, 16][r(6)],
          r(2) === 0,
        );
        break;
      case 4:
        if (r(2) === 0) {
          m.encodeEmpty(Cmd.SET_IRQFD);
          numFds = 2;
          kind = 0;
        } else {
          m.encodeEmpty(r(16) === 0 ? Cmd.RET : Cmd.DEVICE_RESET);
        }
        break;
      default: {
        const regions = Array.from({ length: 1 + r(3) }, () => ({
          gpa: BigInt(r(16) * 0x10000),
          size: BigInt([0, 0x1000, 0x10000, 0x20000][r(4)]),
          offset: BigInt(
            [0, 0x1000, 0x1000, 0x123][r(4)] * (r(4) === 0 ? 1 : 0),
          ),
          fd: 0,
        }));
        m.encodeSyncSysmem(regions);
        numFds = regions.length;
        kind = 4;
      }
    }
    if (r(16) === 0) numFds = [0, 1, 2, 3, 9][r(5)];
    const bytes = m.bytes.slice(0, m.wireLength);
    if (r(16) === 0) {
      // Mutate: flip bytes anywhere (header included) or cut the message.
      for (let i = r(4); i >= 0; i--) bytes[r(bytes.length)] ^= 1 << r(8);
      if (r(4) === 0) {
        return {
          bytes: bytes.subarray(0, r(bytes.length)),
          numFds,
          kind,
        };
      }
    }
    return { bytes, numFds, kind };
  }
}

/** A control request that must be answered within 2 s. */
async function controlRead(c: Client): Promise<bigint> {
  c.ch.tx.encodeBar(Cmd.BAR_READ, BAR0, 0n, 4, true);
  c.ch.send(c.ch.tx);
  assert(
    c.ch.hasBuffered || await pollReadable(c.ch.fd, 2000),
    "the control device answers within 2 s",
  );
  assertEquals(c.ch.receive(), Received.MESSAGE);
  return c.ch.rx.retValue;
}

/** Reads whatever the remote sent back; false once it closed the channel. */
function drain(c: Client): boolean {
  try {
    for (;;) {
      const got = c.ch.receive(true);
      if (got === Received.EOF) return false;
      if (got === Received.AGAIN) return true;
      // Replies are only RET; anything the remote sends carries no fds.
    }
  } catch (e) {
    if (e instanceof SysError) return false;
    throw e;
  }
}

interface RoundStats {
  messages: number;
  channels: number;
  controls: number;
}

/**
 * One remote with CHANNELS fuzzed devices and a control: fuzzes channel
 * after channel until `end` or until every channel was closed, then checks
 * the process, the control and the fd count.
 */
async function fuzzRound(
  f: Fuzzer,
  end: number,
  seed: number,
): Promise<RoundStats> {
  const ids = Array.from({ length: CHANNELS }, (_, i) => `fuzz${i}`);
  await using r = spawnRemote([...ids, "control"]);
  const control = r.clients[CHANNELS];
  control.enable();
  const baseline = openFds(r.child.pid).length;
  const stats = { messages: 0, channels: 0, controls: 0 };
  let sent = 0;
  while (performance.now() < end && stats.channels < CHANNELS) {
    const c = r.clients[stats.channels];
    if (sent === 0) {
      // Each channel starts with its BARs enabled, so BAR accesses decode.
      c.enable();
    }
    const { bytes, numFds, kind } = f.message();
    const fds = Array.from({ length: numFds }, () => f.fd(c.ch.fd, kind));
    let open = true;
    try {
      c.sendRaw(bytes, fds.map((x) => x.fd));
    } catch (e) {
      if (!(e instanceof SysError)) throw e;
      open = false;
    } finally {
      for (const x of fds) if (x.ours) closeFd(x.fd);
    }
    sent++;
    stats.messages++;
    // Give the remote a moment to act on it, then see if it hung up.
    if (open && await pollReadable(c.ch.fd, 2)) open = drain(c);
    if (!open || sent === 40) {
      c.close();
      stats.channels++;
      sent = 0;
    }
    if (stats.messages % 10 === 0) {
      assertEquals(await controlRead(control), BigInt(TESTDEV_ID));
      stats.controls++;
    }
  }
  for (const c of r.clients.slice(0, CHANNELS)) c.close();
  assertEquals(await controlRead(control), BigInt(TESTDEV_ID));
  // Every fuzz channel closed: of the channels only the control's socket
  // is left. Bounded wait: the remote sees the hang-ups asynchronously.
  const now = (await fdsOnceCount(r.child.pid, baseline - CHANNELS)).length;
  assertEquals(now, baseline - CHANNELS, `seed ${seed}: fds back to baseline`);
  const { stderr } = await r.finish();
  assert(!stderr.includes("device error"), `seed ${seed}: ${stderr}`);
  assert(!stderr.includes("cleanup failed"), `seed ${seed}: ${stderr}`);
  return stats;
}

Deno.test("fuzz: random and mutated messages with random fds never hurt the process or the control device", async () => {
  await assertNoFdLeak(async () => {
    const seed = Date.now() >>> 0;
    const f = new Fuzzer(prng(seed));
    const end = performance.now() + FUZZ_MS;
    const total = { messages: 0, channels: 0, controls: 0, rounds: 0 };
    while (performance.now() < end) {
      const s = await fuzzRound(f, end, seed);
      total.messages += s.messages;
      total.channels += s.channels;
      total.controls += s.controls;
      total.rounds++;
    }
    assert(total.controls > 10, `seed ${seed}: the control was driven`);
    console.log(
      `fuzz: seed ${seed}: ${total.messages} messages on ${total.channels} channels of ${total.rounds} remotes, ${total.controls} control requests answered`,
    );
  });
});
