// The mpqemu wire format of QEMU 7.2 (docs/protocol.md): message layout,
// encode/decode and the validity rules. The only module that knows byte
// offsets; Channel (channel.ts) moves these messages over a socket.

import { isValidFd } from "../../ffi/mod.ts";

/** Command numbers of the mpqemu protocol (enum MPQemuCmd). */
export const Cmd = {
  SYNC_SYSMEM: 0,
  RET: 1,
  PCI_CFGWRITE: 2,
  PCI_CFGREAD: 3,
  BAR_WRITE: 4,
  BAR_READ: 5,
  SET_IRQFD: 6,
  DEVICE_RESET: 7,
} as const;

/** One of the command numbers. */
export type CmdValue = typeof Cmd[keyof typeof Cmd];

/** One past the last valid command (MPQEMU_CMD_MAX). */
export const CMD_MAX = 8;
/** Bytes of the header: int32 cmd, 4 pad, uint64 size. */
export const HEADER_SIZE = 16;
/** Largest payload (the size of the data union). */
export const MAX_PAYLOAD = 192;
/** Most fds one message may carry (REMOTE_MAX_FDS). */
export const REMOTE_MAX_FDS = 8;
/** Regions in one SYNC_SYSMEM message. */
export const SYSMEM_REGIONS = 8;
/** The all-ones reply that signals a failed access. */
export const UINT64_MAX = 0xffff_ffff_ffff_ffffn;

/** Payload sizes of the commands that have a fixed one. */
export const PAYLOAD_SIZE = {
  SYNC_SYSMEM: 192,
  RET: 8,
  PCI_CFG: 12,
  BAR: 24,
} as const;

const CMD_NAMES = [
  "SYNC_SYSMEM",
  "RET",
  "PCI_CFGWRITE",
  "PCI_CFGREAD",
  "BAR_WRITE",
  "BAR_READ",
  "SET_IRQFD",
  "DEVICE_RESET",
];

/** The name of command `cmd` ("cmd 9" for unknown values). */
export function cmdName(cmd: number): string {
  return CMD_NAMES[cmd] ?? `cmd ${cmd}`;
}

/** A message that breaks the protocol: names the command and the field. */
export class ProtocolError extends Error {
  /** The command's name, e.g. "PCI_CFGREAD". */
  readonly command: string;
  /** The offending field, e.g. "size" or "num_fds". */
  readonly field: string;

  /** Builds "COMMAND: field: detail". */
  constructor(command: string, field: string, detail: string) {
    super(`${command}: ${field}: ${detail}`);
    this.name = "ProtocolError";
    this.command = command;
    this.field = field;
  }
}

/** One guest memory region of a SYNC_SYSMEM message. */
export interface SysmemRegion {
  /** Guest-physical address. */
  gpa: bigint;
  /** Length in bytes. */
  size: bigint;
  /** Offset into the fd. */
  offset: bigint;
  /** The fd that backs it (sent with SCM_RIGHTS). */
  fd: number;
}

// The header's u64 size field of the message at `at`, or -1 above 2^32
// (read without a BigInt: the per-message path allocates nothing).
/** The header size field of the message at `at` in `view`, or -1 above 2^32. */
export function payloadSizeAt(view: DataView, at: number): number {
  return view.getUint32(at + 12, true) === 0
    ? view.getUint32(at + 8, true)
    : -1;
}

/**
 * A message in wire form: header and payload in one reusable buffer, with
 * typed field accessors, so the per-message path allocates nothing.
 */
export class Message {
  /**
   * Header (16 bytes) followed by the payload (up to 192); a received
   * message's buffer may be longer, holding bytes of the messages after it.
   */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Little-endian view over `bytes`. */
  readonly view: DataView;

  /** A message buffer of `capacity` bytes (at least one whole message). */
  constructor(capacity: number = HEADER_SIZE + MAX_PAYLOAD) {
    if (capacity < HEADER_SIZE + MAX_PAYLOAD) {
      throw new RangeError(`Message: capacity ${capacity} < 208`);
    }
    this.bytes = new Uint8Array(capacity);
    this.view = new DataView(this.bytes.buffer);
  }

  /** The command number. */
  get cmd(): number {
    return this.view.getInt32(0, true);
  }

  /** The payload size from the header. */
  get size(): bigint {
    return this.view.getBigUint64(8, true);
  }

  /**
   * The payload size as a number, or -1 when it exceeds 2^32 (reading it
   * without a BigInt keeps the per-message path allocation-free).
   */
  get sizeNumber(): number {
    return payloadSizeAt(this.view, 0);
  }

  /** Writes a header for `cmd` with `size` payload bytes, zeroing padding. */
  setHeader(cmd: number, size: number): void {
    this.view.setInt32(0, cmd, true);
    this.view.setInt32(4, 0, true);
    this.view.setUint32(8, size, true);
    this.view.setUint32(12, 0, true);
  }

  /** Total bytes on the wire for the current header (payload <= 192). */
  get wireLength(): number {
    return HEADER_SIZE + this.view.getUint32(8, true);
  }

  /** RET: the u64 value (meaningful when size is 8). */
  get retValue(): bigint {
    return this.view.getBigUint64(HEADER_SIZE, true);
  }

  /** PCI_CFGREAD/WRITE: config space address. */
  get cfgAddr(): number {
    return this.view.getUint32(HEADER_SIZE, true);
  }

  /** PCI_CFGWRITE: value to write. */
  get cfgVal(): number {
    return this.view.getUint32(HEADER_SIZE + 4, true);
  }

  /** PCI_CFGREAD/WRITE: access length in bytes (signed on the wire). */
  get cfgLen(): number {
    return this.view.getInt32(HEADER_SIZE + 8, true);
  }

  /** BAR_READ/WRITE: absolute guest address or port. */
  get barAddr(): bigint {
    return this.view.getBigUint64(HEADER_SIZE, true);
  }

  /** BAR_WRITE: the value written (the access's bytes, zero-extended). */
  get barVal(): bigint {
    return this.view.getBigUint64(HEADER_SIZE + 8, true);
  }

  /**
   * BAR_READ/WRITE: the absolute guest address or port as a number, or -1
   * at or above 2^53 (no BAR decodes there; read without a BigInt).
   */
  get barAddrNumber(): number {
    const hi = this.view.getUint32(HEADER_SIZE + 4, true);
    if (hi >= 0x20_0000) return -1;
    return hi * 0x1_0000_0000 + this.view.getUint32(HEADER_SIZE, true);
  }

  /**
   * BAR_WRITE: the first `n` bytes of the value field, little endian, as a
   * view into this buffer (valid until the next message is received).
   */
  barValueBytes(n: number): Uint8Array {
    return this.bytes.subarray(HEADER_SIZE + 8, HEADER_SIZE + 8 + n);
  }

  /**
   * RET: the first `n` bytes of the u64 value, as a view into this buffer;
   * fill it after encodeRetNumber(0) to answer a read without a BigInt.
   */
  retValueBytes(n: number): Uint8Array {
    return this.bytes.subarray(HEADER_SIZE, HEADER_SIZE + n);
  }

  /** BAR_READ/WRITE: access size in bytes. */
  get barSize(): number {
    return this.view.getUint32(HEADER_SIZE + 16, true);
  }

  /** BAR_READ/WRITE: true for memory space, false for I/O space. */
  get barMemory(): boolean {
    return this.view.getUint8(HEADER_SIZE + 20) !== 0;
  }

  /** SYNC_SYSMEM: guest-physical address of region `i`. */
  sysmemGpa(i: number): bigint {
    return this.view.getBigUint64(HEADER_SIZE + i * 8, true);
  }

  /** SYNC_SYSMEM: size of region `i`. */
  sysmemSize(i: number): bigint {
    return this.view.getBigUint64(HEADER_SIZE + 64 + i * 8, true);
  }

  /** SYNC_SYSMEM: file offset of region `i`. */
  sysmemOffset(i: number): bigint {
    return this.view.getBigInt64(HEADER_SIZE + 128 + i * 8, true);
  }

  /** Encodes RET carrying `value`, or RET with no payload when null. */
  encodeRet(value: bigint | null): this {
    if (value === null) {
      this.setHeader(Cmd.RET, 0);
    } else {
      this.setHeader(Cmd.RET, PAYLOAD_SIZE.RET);
      this.view.setBigUint64(HEADER_SIZE, value, true);
    }
    return this;
  }

  /** Encodes RET carrying the u32 `value` (zero-extended), without a BigInt. */
  encodeRetNumber(value: number): this {
    this.setHeader(Cmd.RET, PAYLOAD_SIZE.RET);
    this.view.setUint32(HEADER_SIZE, value, true);
    this.view.setUint32(HEADER_SIZE + 4, 0, true);
    return this;
  }

  /** Encodes PCI_CFGREAD or PCI_CFGWRITE. */
  encodeCfg(
    cmd: typeof Cmd.PCI_CFGREAD | typeof Cmd.PCI_CFGWRITE,
    addr: number,
    val: number,
    len: number,
  ): this {
    this.setHeader(cmd, PAYLOAD_SIZE.PCI_CFG);
    this.view.setUint32(HEADER_SIZE, addr, true);
    this.view.setUint32(HEADER_SIZE + 4, val >>> 0, true);
    this.view.setInt32(HEADER_SIZE + 8, len, true);
    return this;
  }

  /** Encodes BAR_READ or BAR_WRITE. */
  encodeBar(
    cmd: typeof Cmd.BAR_READ | typeof Cmd.BAR_WRITE,
    addr: bigint,
    val: bigint,
    size: number,
    memory: boolean,
  ): this {
    this.setHeader(cmd, PAYLOAD_SIZE.BAR);
    this.view.setBigUint64(HEADER_SIZE, addr, true);
    this.view.setBigUint64(HEADER_SIZE + 8, val, true);
    this.view.setUint32(HEADER_SIZE + 16, size, true);
    this.view.setUint32(HEADER_SIZE + 20, memory ? 1 : 0, true);
    return this;
  }

  /** Encodes SYNC_SYSMEM for up to 8 regions (unused slots zeroed). */
  encodeSyncSysmem(regions: readonly SysmemRegion[]): this {
    if (regions.length > SYSMEM_REGIONS) {
      throw new ProtocolError(
        "SYNC_SYSMEM",
        "regions",
        `${regions.length} regions, at most ${SYSMEM_REGIONS}`,
      );
    }
    this.setHeader(Cmd.SYNC_SYSMEM, PAYLOAD_SIZE.SYNC_SYSMEM);
    this.bytes.fill(0, HEADER_SIZE, HEADER_SIZE + PAYLOAD_SIZE.SYNC_SYSMEM);
    regions.forEach((r, i) => {
      this.view.setBigUint64(HEADER_SIZE + i * 8, r.gpa, true);
      this.view.setBigUint64(HEADER_SIZE + 64 + i * 8, r.size, true);
      this.view.setBigInt64(HEADER_SIZE + 128 + i * 8, r.offset, true);
    });
    return this;
  }

  /** Encodes a command without payload (SET_IRQFD, DEVICE_RESET). */
  encodeEmpty(cmd: number): this {
    this.setHeader(cmd, 0);
    return this;
  }
}

/**
 * Applies mpqemu_msg_valid's rules to a received message with `numFds`
 * fds in `fds`; throws ProtocolError naming the command and field.
 */
export function validateMessage(
  msg: Message,
  fds: ArrayLike<number>,
  numFds: number,
): void {
  const cmd = msg.cmd;
  if (cmd < 0 || cmd >= CMD_MAX) {
    throw new ProtocolError(cmdName(cmd), "cmd", `unknown command ${cmd}`);
  }
  if (numFds >= REMOTE_MAX_FDS) {
    throw new ProtocolError(
      cmdName(cmd),
      "num_fds",
      `${numFds} fds, at most 7`,
    );
  }
  for (let i = 0; i < numFds; i++) {
    if (!isValidFd(fds[i])) {
      throw new ProtocolError(cmdName(cmd), "fds", `fd ${i} is not an open fd`);
    }
  }
  const size = msg.sizeNumber;
  switch (cmd) {
    case Cmd.SYNC_SYSMEM:
      if (numFds < 1) throw badFds(cmd, numFds, "expected at least 1");
      if (size !== PAYLOAD_SIZE.SYNC_SYSMEM) {
        throw badSize(msg, PAYLOAD_SIZE.SYNC_SYSMEM);
      }
      break;
    case Cmd.PCI_CFGWRITE:
    case Cmd.PCI_CFGREAD:
      if (size !== PAYLOAD_SIZE.PCI_CFG) {
        throw badSize(msg, PAYLOAD_SIZE.PCI_CFG);
      }
      break;
    case Cmd.BAR_WRITE:
    case Cmd.BAR_READ:
      if (size !== PAYLOAD_SIZE.BAR) throw badSize(msg, PAYLOAD_SIZE.BAR);
      if (numFds !== 0) throw badFds(cmd, numFds, "expected 0");
      break;
    case Cmd.SET_IRQFD:
      if (size !== 0) throw badSize(msg, 0);
      if (numFds !== 2) throw badFds(cmd, numFds, "expected 2");
      break;
  }
}

function badSize(msg: Message, want: number): ProtocolError {
  return new ProtocolError(
    cmdName(msg.cmd),
    "size",
    `${msg.size}, expected ${want}`,
  );
}

function badFds(cmd: number, numFds: number, want: string): ProtocolError {
  return new ProtocolError(cmdName(cmd), "num_fds", `${numFds}, ${want}`);
}
