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
  Message,
  ProtocolError,
  Received,
  validateMessage,
} from "../../lib/mpqemu/mod.ts";
import { assertNoFdLeak } from "../fd_check.ts";

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

/** A socketpair: a Channel on one end, the raw other end for the test. */
function pair(): { ch: Channel; peer: number; io: MsgIo } {
  const [a, b] = socketpair();
  return { ch: new Channel(a), peer: b, io: new MsgIo(16) };
}

/** Raw bytes from hex. */
function bytes(hex: string): Uint8Array {
  return new Uint8Array(hex.match(/../g)!.map((h) => parseInt(h, 16)));
}

Deno.test("channel: decodes a message split in pieces, with its fds", () =>
  assertNoFdLeak(() => {
    const { ch, peer, io } = pair();
    using ev1 = new EventFd();
    using ev2 = new EventFd();
    try {
      const msg = bytes("06000000" + "00".repeat(12));
      io.send(peer, msg, 5, null, 0, [ev1.fd, ev2.fd]);
      assertEquals(ch.receive(true), Received.AGAIN);
      io.send(peer, msg.subarray(5), 11, null, 0, []);
      assertEquals(ch.receive(true), Received.MESSAGE);
      assertEquals(ch.rx.cmd, Cmd.SET_IRQFD);
      assertEquals(ch.rxNumFds, 2);
      closeFd(ch.rxFds[0]);
      closeFd(ch.rxFds[1]);
      closeFd(peer);
      assertEquals(ch.receive(), Received.EOF);
    } finally {
      ch.close();
    }
  }));

Deno.test("channel: one read brings several messages; fds stay with theirs", () =>
  assertNoFdLeak(() => {
    const { ch, peer, io } = pair();
    using ev1 = new EventFd();
    using ev2 = new EventFd();
    try {
      // A config read and a device reset in one write, then SET_IRQFD with
      // its two fds in a second write, all queued before the channel reads.
      const cfgRead = "03000000" + "00000000" + "0c00000000000000" +
        "08000000" + "00000000" + "04000000";
      const reset = "07000000" + "00000000" + "0000000000000000";
      const two = bytes(cfgRead + reset);
      assertEquals(io.send(peer, two, two.length, null, 0, []), two.length);
      const irqfd = bytes("06000000" + "00".repeat(12));
      io.send(peer, irqfd, irqfd.length, null, 0, [ev1.fd, ev2.fd]);

      assertEquals(ch.receive(true), Received.MESSAGE);
      assertEquals(ch.rx.cmd, Cmd.PCI_CFGREAD);
      assertEquals(ch.rx.view.getUint32(16, true), 8);
      assertEquals(ch.rxNumFds, 0);
      // The reset came in the same read: whole, and known to be whole.
      assert(ch.hasBuffered);
      assertEquals(ch.receive(true), Received.MESSAGE);
      assertEquals(ch.rx.cmd, Cmd.DEVICE_RESET);
      assertEquals(ch.rxNumFds, 0);
      // Linux glued the fd-carrying write onto the same read too.
      assert(ch.hasBuffered);
      assertEquals(ch.receive(true), Received.MESSAGE);
      assertEquals(ch.rx.cmd, Cmd.SET_IRQFD);
      assertEquals(ch.rxNumFds, 2);
      assert(!ch.hasBuffered);
      closeFd(ch.rxFds[0]);
      closeFd(ch.rxFds[1]);
      assertEquals(ch.receive(true), Received.AGAIN);
      closeFd(peer);
      assertEquals(ch.receive(), Received.EOF);
    } finally {
      ch.close();
    }
  }));

Deno.test("channel: more queued than its buffer holds comes out whole, in order", () =>
  assertNoFdLeak(() => {
    const { ch, peer, io } = pair();
    try {
      // 100 config reads of 28 bytes: the 1 KiB buffer ends mid-message
      // again and again, and the rest must be read exactly.
      const m = new Message();
      const wire = new Uint8Array(100 * 28);
      for (let i = 0; i < 100; i++) {
        m.encodeCfg(Cmd.PCI_CFGREAD, i, 0, 4);
        wire.set(m.bytes.subarray(0, 28), i * 28);
      }
      for (let off = 0; off < wire.length;) {
        off += io.send(
          peer,
          wire.subarray(off),
          wire.length - off,
          null,
          0,
          [],
        );
      }
      for (let i = 0; i < 100; i++) {
        assertEquals(ch.receive(true), Received.MESSAGE, `message ${i}`);
        assertEquals(ch.rx.cmd, Cmd.PCI_CFGREAD);
        assertEquals(ch.rx.view.getUint32(16, true), i);
      }
      assertEquals(ch.receive(true), Received.AGAIN);
    } finally {
      closeFd(peer);
      ch.close();
    }
  }));

Deno.test("channel: fds that arrive with a later message wait for it", () =>
  assertNoFdLeak(() => {
    const { ch, peer, io } = pair();
    using ev = new EventFd();
    try {
      // Message 1 whole, then SYNC_SYSMEM's header carrying its fd, its
      // payload later: one read brings both headers, and the fd is the
      // second message's.
      const cfgRead = bytes(
        "03000000" + "00000000" + "0c00000000000000" + "00".repeat(12),
      );
      io.send(peer, cfgRead, cfgRead.length, null, 0, []);
      const sysmem = bytes("00000000" + "00000000" + "c000000000000000");
      io.send(peer, sysmem, sysmem.length, null, 0, [ev.fd]);
      assertEquals(ch.receive(true), Received.MESSAGE);
      assertEquals(ch.rx.cmd, Cmd.PCI_CFGREAD);
      assertEquals(ch.rxNumFds, 0);
      assertEquals(ch.receive(true), Received.AGAIN);
      // The rest of SYNC_SYSMEM: one region of 4 KiB at fd offset 0.
      const payload = new Uint8Array(192);
      new DataView(payload.buffer).setBigUint64(64, 4096n, true);
      io.send(peer, payload, payload.length, null, 0, []);
      assertEquals(ch.receive(true), Received.MESSAGE);
      assertEquals(ch.rx.cmd, Cmd.SYNC_SYSMEM);
      assertEquals(ch.rxNumFds, 1);
      closeFd(ch.rxFds[0]);
    } finally {
      closeFd(peer);
      ch.close();
    }
  }));

/** Sends raw `hex` with `fds` to a fresh channel and expects rejection. */
function expectRejected(
  hex: string,
  fds: number,
  match: string,
  hangUp = false,
): void {
  const { ch, peer, io } = pair();
  const evs = Array.from({ length: fds }, () => new EventFd());
  try {
    const msg = bytes(hex);
    io.send(peer, msg, msg.length, null, 0, evs.map((e) => e.fd));
    if (hangUp) closeFd(peer);
    const e = assertThrows(() => ch.receive(), ProtocolError);
    assertEquals(e.message.includes(match), true, `${e.message} !~ ${match}`);
  } finally {
    ch.close();
    if (!hangUp) closeFd(peer);
    evs.forEach((e) => e.close());
  }
}

Deno.test("channel: every validity rule rejects and closes the fds", async (t) => {
  const hdr = (cmd: string, size: string): string =>
    cmd + "00000000" + size.padEnd(16, "0");
  const cases: [string, string, number, string, boolean?][] = [
    ["unknown cmd", hdr("08000000", ""), 0, "cmd 8: cmd: unknown command 8"],
    ["negative cmd", hdr("ffffffff", ""), 0, "cmd -1: cmd"],
    ["size > 192", hdr("03000000", "c1"), 0, "PCI_CFGREAD: size: invalid size"],
    [
      "CFGREAD size",
      hdr("03000000", "08") + "00".repeat(8),
      0,
      "PCI_CFGREAD: size: 8, expected 12",
    ],
    [
      "BAR with fds",
      hdr("05000000", "18") + "00".repeat(24),
      1,
      "BAR_READ: num_fds: 1, expected 0",
    ],
    [
      "SET_IRQFD one fd",
      hdr("06000000", ""),
      1,
      "SET_IRQFD: num_fds: 1, expected 2",
    ],
    [
      "SET_IRQFD size",
      hdr("06000000", "08") + "00".repeat(8),
      2,
      "SET_IRQFD: size",
    ],
    [
      "SYNC_SYSMEM no fd",
      hdr("00000000", "c0") + "00".repeat(192),
      0,
      "SYNC_SYSMEM: num_fds: 0",
    ],
    ["8 fds", hdr("07000000", ""), 8, "DEVICE_RESET: num_fds: 8"],
    ["9 fds (truncated)", hdr("07000000", ""), 9, "num_fds: more than 8 fds"],
    ["truncated header", "0300000000", 0, "hung up mid-header", true],
    [
      "hang-up mid-payload",
      hdr("03000000", "0c") + "0000",
      0,
      "hung up after 2 of 12",
      true,
    ],
  ];
  for (const [name, hex, fds, match, hangUp] of cases) {
    await t.step(
      name,
      () => assertNoFdLeak(() => expectRejected(hex, fds, match, hangUp)),
    );
  }
});

Deno.test("channel: an fd closed in flight is still valid on arrival", () =>
  assertNoFdLeak(() => {
    // SCM_RIGHTS duplicates at send time, so the receiver's copy is valid
    // even though the sender closed its own: validity is checked on ours.
    const { ch, peer, io } = pair();
    try {
      const ev = new EventFd();
      const ev2 = new EventFd();
      const msg = bytes("06000000" + "00".repeat(12));
      io.send(peer, msg, 16, null, 0, [ev.fd, ev2.fd]);
      ev.close();
      ev2.close();
      assertEquals(ch.receive(), Received.MESSAGE);
      assertEquals(isValidFd(ch.rxFds[0]), true);
      closeFd(ch.rxFds[0]);
      closeFd(ch.rxFds[1]);
    } finally {
      ch.close();
      closeFd(peer);
    }
  }));

Deno.test("validity: an fd number that is not open is rejected", () => {
  const m = new Message().encodeEmpty(Cmd.SET_IRQFD);
  const e = assertThrows(
    () => validateMessage(m, [987654, 987655], 2),
    ProtocolError,
  );
  assertEquals(e.message, "SET_IRQFD: fds: fd 0 is not an open fd");
});
