import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  closeFd,
  EventFd,
  isValidFd,
  MsgIo,
  socketpair,
} from "../../ffi/mod.ts";
import {
  Channel,
  Cmd,
  type CmdValue,
  Message,
  ProtocolError,
  Received,
  validateMessage,
} from "../../lib/mpqemu/mod.ts";
import { assertNoFdLeak } from "../fd_check.ts";
import { BAD_MESSAGES } from "./bad_messages.ts";

/** Hex of the first `wireLength` bytes of `m`. */
function wire(m: Message): string {
  return [...m.bytes.subarray(0, m.wireLength)]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

// Golden bytes, written by hand from docs/protocol.md: header = int32 cmd, 4 pad,
// uint64 size, all little endian; then the payload.
Deno.test("codec: golden bytes for every command", async (t) => {
  const m = new Message();
  await t.step("RET u64", () => {
    assertEquals(
      wire(m.encodeRet(0x1122334455667788n)),
      "01000000" + "00000000" + "0800000000000000" + "8877665544332211",
    );
  });
  await t.step("RET empty", () => {
    assertEquals(
      wire(m.encodeRet(null)),
      "0100000000000000" + "0000000000000000",
    );
  });
  await t.step("PCI_CFGWRITE", () => {
    assertEquals(
      wire(m.encodeCfg(Cmd.PCI_CFGWRITE, 0x10, 0xffffffff, 4)),
      "02000000" + "00000000" + "0c00000000000000" +
        "10000000" + "ffffffff" + "04000000",
    );
  });
  await t.step("PCI_CFGREAD", () => {
    assertEquals(
      wire(m.encodeCfg(Cmd.PCI_CFGREAD, 0x3c, 0, 1)),
      "03000000" + "00000000" + "0c00000000000000" +
        "3c000000" + "00000000" + "01000000",
    );
  });
  await t.step("BAR_WRITE", () => {
    assertEquals(
      wire(m.encodeBar(Cmd.BAR_WRITE, 0xfebf1004n, 0xdeadbeefn, 4, true)),
      "04000000" + "00000000" + "1800000000000000" +
        "0410bffe00000000" + "efbeadde00000000" + "04000000" + "01000000",
    );
  });
  await t.step("BAR_READ (I/O)", () => {
    assertEquals(
      wire(m.encodeBar(Cmd.BAR_READ, 0xc000n, 0n, 2, false)),
      "05000000" + "00000000" + "1800000000000000" +
        "00c0000000000000" + "0000000000000000" + "02000000" + "00000000",
    );
  });
  await t.step("SET_IRQFD and DEVICE_RESET", () => {
    assertEquals(
      wire(m.encodeEmpty(Cmd.SET_IRQFD)),
      "06000000" + "00".repeat(12),
    );
    assertEquals(
      wire(m.encodeEmpty(Cmd.DEVICE_RESET)),
      "07000000" + "00".repeat(12),
    );
  });
  await t.step("SYNC_SYSMEM", () => {
    const hex = wire(m.encodeSyncSysmem([
      { gpa: 0n, size: 0xa0000n, offset: 0n, fd: 0 },
      { gpa: 0x100000n, size: 0x3f00000n, offset: 0x100000n, fd: 0 },
    ]));
    const u64 = (v: string): string => v.padEnd(16, "0");
    assertEquals(
      hex,
      "00000000" + "00000000" + "c000000000000000" +
        u64("") + u64("00001000") + u64("").repeat(6) +
        u64("00000a") + u64("0000f003") + u64("").repeat(6) +
        u64("") + u64("00001000") + u64("").repeat(6),
    );
  });
});

/** Raw bytes from hex. */
function bytes(hex: string): Uint8Array {
  return new Uint8Array(hex.match(/../g)!.map((h) => parseInt(h, 16)));
}

/**
 * The raw end of a socketpair facing a Channel, written to as a peer would:
 * any bytes, any fds, cut anywhere. Disposing closes it unless hung up.
 */
class Peer implements Disposable {
  readonly #fd: number;
  readonly #io = new MsgIo(16);
  #open = true;

  constructor(fd: number) {
    this.#fd = fd;
  }

  /** One sendmsg of `bytes` with `fds`; the bytes the kernel took. */
  send(bytes: Uint8Array, fds: number[] = []): number {
    return this.#io.send(this.#fd, bytes, bytes.length, null, 0, fds);
  }

  /** Closes this end: the channel reads the end of the stream. */
  hangUp(): void {
    if (!this.#open) return;
    this.#open = false;
    closeFd(this.#fd);
  }

  [Symbol.dispose](): void {
    this.hangUp();
  }
}

/**
 * Runs `body` on a Channel and the Peer at the other end of a fresh
 * socketpair, closes both, and asserts that no fd leaked.
 */
function withChannel(body: (ch: Channel, peer: Peer) => void): Promise<void> {
  return assertNoFdLeak(() => {
    const [a, b] = socketpair();
    using ch = new Channel(a);
    using peer = new Peer(b);
    body(ch, peer);
  });
}

/**
 * Asserts that the channel's next message, read without blocking, is
 * whole and is `cmd` with `numFds` fds.
 */
function assertNext(ch: Channel, cmd: CmdValue, numFds: number): void {
  assertEquals(ch.receive(true), Received.MESSAGE);
  assertEquals(ch.rx.cmd, cmd);
  assertEquals(ch.rxNumFds, numFds);
}

/** Closes the fds of the message the channel holds. */
function closeReceived(ch: Channel): void {
  for (let i = 0; i < ch.rxNumFds; i++) closeFd(ch.rxFds[i]);
}

/** Hangs `peer` up and asserts that `ch` reads the end of the stream. */
function assertEofAfterHangUp(ch: Channel, peer: Peer): void {
  peer.hangUp();
  assertEquals(ch.receive(), Received.EOF);
}

/** A test of a Channel fed by a Peer (see withChannel). */
function channelTest(
  name: string,
  body: (ch: Channel, peer: Peer) => void,
): void {
  Deno.test(name, () => withChannel(body));
}

channelTest(
  "channel: decodes a message split in pieces, with its fds",
  (ch, peer) => {
    using ev1 = new EventFd();
    using ev2 = new EventFd();
    const msg = bytes("06000000" + "00".repeat(12));
    peer.send(msg.subarray(0, 5), [ev1.fd, ev2.fd]);
    assertEquals(ch.receive(true), Received.AGAIN);
    peer.send(msg.subarray(5));
    assertNext(ch, Cmd.SET_IRQFD, 2);
    closeReceived(ch);
    assertEofAfterHangUp(ch, peer);
  },
);

channelTest(
  "channel: one read brings several messages; fds stay with theirs",
  (ch, peer) => {
    using ev1 = new EventFd();
    using ev2 = new EventFd();
    // A config read and a device reset in one write, then SET_IRQFD with
    // its two fds in a second write, all queued before the channel reads.
    const cfgRead = "03000000" + "00000000" + "0c00000000000000" +
      "08000000" + "00000000" + "04000000";
    const reset = "07000000" + "00000000" + "0000000000000000";
    const two = bytes(cfgRead + reset);
    assertEquals(peer.send(two), two.length);
    peer.send(bytes("06000000" + "00".repeat(12)), [ev1.fd, ev2.fd]);

    assertNext(ch, Cmd.PCI_CFGREAD, 0);
    assertEquals(ch.rx.view.getUint32(16, true), 8);
    // The reset came in the same read: whole, and known to be whole.
    assert(ch.hasBuffered);
    assertNext(ch, Cmd.DEVICE_RESET, 0);
    // Linux glued the fd-carrying write onto the same read too.
    assert(ch.hasBuffered);
    assertNext(ch, Cmd.SET_IRQFD, 2);
    assert(!ch.hasBuffered);
    closeReceived(ch);
    assertEquals(ch.receive(true), Received.AGAIN);
    assertEofAfterHangUp(ch, peer);
  },
);

channelTest(
  "channel: more queued than its buffer holds comes out whole, in order",
  (ch, peer) => {
    // 100 config reads of 28 bytes: the 1 KiB buffer ends mid-message
    // again and again, and the rest must be read exactly.
    const m = new Message();
    const wire = new Uint8Array(100 * 28);
    for (let i = 0; i < 100; i++) {
      m.encodeCfg(Cmd.PCI_CFGREAD, i, 0, 4);
      wire.set(m.bytes.subarray(0, 28), i * 28);
    }
    for (let off = 0; off < wire.length;) off += peer.send(wire.subarray(off));
    for (let i = 0; i < 100; i++) {
      assertEquals(ch.receive(true), Received.MESSAGE, `message ${i}`);
      assertEquals(ch.rx.cmd, Cmd.PCI_CFGREAD);
      assertEquals(ch.rx.view.getUint32(16, true), i);
    }
    assertEquals(ch.receive(true), Received.AGAIN);
  },
);

channelTest(
  "channel: fds that arrive with a later message wait for it",
  (ch, peer) => {
    using ev = new EventFd();
    // Message 1 whole, then SYNC_SYSMEM's header carrying its fd, its
    // payload later: one read brings both headers, and the fd is the
    // second message's.
    peer.send(bytes(
      "03000000" + "00000000" + "0c00000000000000" + "00".repeat(12),
    ));
    peer.send(bytes("00000000" + "00000000" + "c000000000000000"), [
      ev.fd,
    ]);
    assertNext(ch, Cmd.PCI_CFGREAD, 0);
    assertEquals(ch.receive(true), Received.AGAIN);
    // The rest of SYNC_SYSMEM: one region of 4 KiB at fd offset 0.
    const payload = new Uint8Array(192);
    new DataView(payload.buffer).setBigUint64(64, 4096n, true);
    peer.send(payload);
    assertNext(ch, Cmd.SYNC_SYSMEM, 1);
    closeReceived(ch);
  },
);

Deno.test("channel: every validity rule rejects and closes the fds", async (t) => {
  for (const [name, wire, nfds, error, hangUp] of BAD_MESSAGES) {
    await t.step(name, () =>
      withChannel((ch, peer) => {
        const evs = Array.from({ length: nfds }, () => new EventFd());
        try {
          peer.send(wire, evs.map((e) => e.fd));
          if (hangUp) peer.hangUp();
          const e = assertThrows(() => ch.receive(), ProtocolError);
          assertEquals(e.message, error);
        } finally {
          evs.forEach((e) => e.close());
        }
      }));
  }
});

channelTest(
  "channel: an fd closed in flight is still valid on arrival",
  (ch, peer) => {
    // SCM_RIGHTS duplicates at send time, so the receiver's copy is valid
    // even though the sender closed its own: validity is checked on ours.
    const ev = new EventFd();
    const ev2 = new EventFd();
    peer.send(bytes("06000000" + "00".repeat(12)), [ev.fd, ev2.fd]);
    ev.close();
    ev2.close();
    assertEquals(ch.receive(), Received.MESSAGE);
    assertEquals(isValidFd(ch.rxFds[0]), true);
    closeReceived(ch);
  },
);

Deno.test("validity: an fd number that is not open is rejected", () => {
  const m = new Message().encodeEmpty(Cmd.SET_IRQFD);
  const e = assertThrows(
    () => validateMessage(m, [987654, 987655], 2),
    ProtocolError,
  );
  assertEquals(e.message, "SET_IRQFD: fds: fd 0 is not an open fd");
});
