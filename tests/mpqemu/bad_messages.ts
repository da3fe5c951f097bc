// Test helper: messages that each break one of mpqemu's validity rules, as
// the raw bytes and fds a peer sends. A Channel must reject each with the
// ProtocolError given here, and a remote must close that channel with the
// same words in its log.

/**
 * A message's bytes: the header (int32 `cmd`, 4 pad bytes, uint64 `size`,
 * little endian) and `payload` zero bytes, however many `size` claims.
 */
export function rawMessage(
  cmd: number,
  size: number,
  payload = size,
): Uint8Array {
  const bytes = new Uint8Array(16 + payload);
  const view = new DataView(bytes.buffer);
  view.setInt32(0, cmd, true);
  view.setBigUint64(8, BigInt(size), true);
  return bytes;
}

/**
 * One broken message: [what it breaks, the bytes sent, how many fresh
 * eventfds ride along, the ProtocolError's message, and whether the peer
 * hangs up after sending (its message stays cut)].
 */
export type BadMessage = [string, Uint8Array, number, string, boolean?];

/** Every rule a Channel checks, broken once (some more than once). */
export const BAD_MESSAGES: BadMessage[] = [
  ["unknown cmd", rawMessage(8, 0), 0, "cmd 8: cmd: unknown command 8"],
  ["bad cmd", rawMessage(9, 0), 0, "cmd 9: cmd: unknown command 9"],
  ["negative cmd", rawMessage(-1, 0), 0, "cmd -1: cmd: unknown command -1"],
  [
    "size > 192",
    rawMessage(3, 0xc1, 0),
    0,
    "PCI_CFGREAD: size: invalid size for message: 193 > 192",
  ],
  [
    "oversized",
    rawMessage(2, 0xff, 0),
    0,
    "PCI_CFGWRITE: size: invalid size for message: 255 > 192",
  ],
  ["CFGREAD size", rawMessage(3, 8), 0, "PCI_CFGREAD: size: 8, expected 12"],
  ["bad size", rawMessage(5, 16), 0, "BAR_READ: size: 16, expected 24"],
  ["BAR with fds", rawMessage(5, 24), 1, "BAR_READ: num_fds: 1, expected 0"],
  [
    "SET_IRQFD one fd",
    rawMessage(6, 0),
    1,
    "SET_IRQFD: num_fds: 1, expected 2",
  ],
  ["fd count", rawMessage(6, 0), 3, "SET_IRQFD: num_fds: 3, expected 2"],
  ["SET_IRQFD size", rawMessage(6, 8), 2, "SET_IRQFD: size: 8, expected 0"],
  [
    "SYNC_SYSMEM no fd",
    rawMessage(0, 192),
    0,
    "SYNC_SYSMEM: num_fds: 0, expected at least 1",
  ],
  ["8 fds", rawMessage(7, 0), 8, "DEVICE_RESET: num_fds: 8 fds, at most 7"],
  [
    "9 fds (truncated)",
    rawMessage(7, 0),
    9,
    "DEVICE_RESET: num_fds: more than 8 fds",
  ],
  [
    "truncated header (5 bytes)",
    rawMessage(3, 0).subarray(0, 5),
    0,
    "header: size: peer hung up mid-header",
    true,
  ],
  [
    "truncated header (8 bytes)",
    rawMessage(3, 0).subarray(0, 8),
    0,
    "header: size: peer hung up mid-header",
    true,
  ],
  [
    "hang-up mid-payload",
    rawMessage(3, 12, 2),
    0,
    "PCI_CFGREAD: payload: peer hung up after 2 of 12 bytes",
    true,
  ],
  [
    "hang-up mid-message",
    rawMessage(3, 12, 4),
    0,
    "PCI_CFGREAD: payload: peer hung up after 4 of 12 bytes",
    true,
  ],
];
