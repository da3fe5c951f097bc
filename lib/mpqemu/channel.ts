// One mpqemu connection: sends and receives whole messages with their fds
// over one connected UNIX stream socket, resuming partial messages.

import {
  closePeerFd,
  closePeerSocket,
  Errno,
  MSG_DONTWAIT,
  MsgIo,
  OwnedFd,
  SysError,
  WOULD_BLOCK,
} from "../../ffi/mod.ts";
import {
  Cmd,
  cmdName,
  HEADER_SIZE,
  MAX_PAYLOAD,
  Message,
  payloadSizeAt,
  ProtocolError,
  REMOTE_MAX_FDS,
  validateMessage,
} from "./message.ts";

/** What Channel.receive() got. */
export const Received = {
  /** A whole, valid message is in `rx`; its fds in `rxFds`. */
  MESSAGE: 0,
  /** Non-blocking socket: the rest of the message has not arrived yet. */
  AGAIN: 1,
  /** The peer closed the connection between messages. */
  EOF: 2,
} as const;

/** One of the Received values. */
export type ReceivedValue = typeof Received[keyof typeof Received];

// Received bytes are buffered so that one recvmsg usually brings a whole
// message (and any that follow it), instead of one for the header and one
// for the payload: a system call is the dearest part of a round trip.
const RX_CAPACITY = 1024;
/**
 * Most reply bytes a non-blocking channel keeps for a peer that is slow to
 * read them. Its owner stops reading requests while any are queued, so one
 * batch of pipelined requests (RX_CAPACITY bytes at most) fits.
 */
export const SEND_QUEUE_LIMIT = 64 * 1024;

/**
 * One mpqemu connection: owns the socket, sends whole messages with fds
 * and receives them, resuming partial messages on non-blocking sockets.
 *
 * Reading: at a message boundary one recvmsg takes whatever is queued, up
 * to RX_CAPACITY bytes; inside a message it asks for exactly the missing
 * bytes. Linux ends a recvmsg on a stream socket after the first chunk that
 * carried fds, so fds came with the last chunk read, which may hold several
 * messages (one sendmsg can carry SET_IRQFD and the next request) and may
 * have been read together with earlier chunks. QEMU reads a header at a
 * time and gives the fds to the message whose header read brought them:
 * the first message of their chunk. Where the chunk began is not visible
 * here, so the fds go to the first message of the read that takes fds
 * (SET_IRQFD, SYNC_SYSMEM), else to the message holding the last byte:
 * every fd attribution QEMU accepts is accepted.
 */
export class Channel extends OwnedFd {
  /** The last received message (at offset 0 of its buffer). */
  readonly rx: Message = new Message(RX_CAPACITY);
  /** A scratch message for building what to send. */
  readonly tx: Message = new Message();
  readonly #io = new MsgIo(REMOTE_MAX_FDS);
  readonly #fds = new Int32Array(REMOTE_MAX_FDS + 1);
  #numFds = 0;
  #msgFds = 0;
  // rx.bytes[0..#end) holds received bytes; the first #taken of them are the
  // message last returned, dropped at the next receive().
  #end = 0;
  #taken = 0;
  // Offset in rx.bytes of the last byte of the read that brought the
  // pending fds: they belong to the message that contains it.
  #fdsAt = 0;
  #out = new Uint8Array(0);
  #outLen = 0;

  /** Takes ownership of the connected socket `sock`. */
  constructor(sock: number) {
    super(sock);
  }

  /** fds of the last message; the caller owns them after MESSAGE. */
  get rxFds(): Int32Array {
    return this.#fds;
  }

  /** How many fds the last message carried. */
  get rxNumFds(): number {
    return this.#msgFds;
  }

  /**
   * Sends `msg` whole with `fds` attached, completing short writes. On a
   * non-blocking socket whose peer is slow to read, what does not fit is
   * queued (see flush()): the caller never waits on the peer. Throws EAGAIN
   * when the queue would exceed SEND_QUEUE_LIMIT, and when fds would have
   * to wait in it (only replies, which carry none, are queued).
   */
  send(msg: Message, fds: ArrayLike<number> = []): void {
    const len = msg.wireLength;
    let sent = 0;
    if (this.#outLen === 0) {
      sent = this.#sendSome(msg.bytes, len, fds);
      while (sent >= 0 && sent < len) {
        const n = this.#sendSome(msg.bytes.subarray(sent), len - sent, []);
        if (n < 0) break;
        sent += n;
      }
      if (sent === len) return;
      if (sent < 0) {
        if (fds.length > 0) {
          throw new SysError("sendmsg", Errno.EAGAIN, "fds cannot be queued");
        }
        sent = 0;
      }
    } else if (fds.length > 0) {
      throw new SysError("sendmsg", Errno.EAGAIN, "fds cannot be queued");
    }
    this.#enqueue(msg.bytes.subarray(sent, len));
  }

  /** Bytes queued for a peer that has not read them yet. */
  get queued(): number {
    return this.#outLen;
  }

  /**
   * Sends what the queue holds as far as the socket takes it; returns
   * whether the queue is now empty.
   */
  flush(): boolean {
    while (this.#outLen > 0) {
      const n = this.#sendSome(this.#out, this.#outLen, []);
      if (n < 0) return false;
      this.#out.copyWithin(0, n, this.#outLen);
      this.#outLen -= n;
    }
    return true;
  }

  #enqueue(bytes: Uint8Array): void {
    const need = this.#outLen + bytes.length;
    if (need > SEND_QUEUE_LIMIT) {
      throw new SysError(
        "sendmsg",
        Errno.EAGAIN,
        `the peer left ${this.#outLen} reply bytes unread`,
      );
    }
    if (need > this.#out.length) {
      const out = new Uint8Array(Math.min(SEND_QUEUE_LIMIT, need * 2));
      out.set(this.#out.subarray(0, this.#outLen));
      this.#out = out;
    }
    this.#out.set(bytes, this.#outLen);
    this.#outLen = need;
  }

  /** One sendmsg; bytes sent, or WOULD_BLOCK when a non-blocking socket is full. */
  #sendSome(buf: Uint8Array, len: number, fds: ArrayLike<number>): number {
    return this.#io.send(this.fd, buf, len, null, 0, fds);
  }

  /** Sends RET with `value` (or an empty RET for null). */
  sendRet(value: bigint | null): void {
    this.send(this.tx.encodeRet(value));
  }

  /**
   * Receives into `rx`. MESSAGE: a valid message (its fds are then the
   * caller's). AGAIN: a non-blocking socket ran dry mid-message; call again
   * when readable. EOF: clean end between messages. Throws ProtocolError
   * for an invalid message and on end of stream inside one, SysError on
   * transport errors; fds that came with a rejected message are closed.
   */
  receive(nonblocking = false): ReceivedValue {
    this.#msgFds = 0;
    try {
      return this.#receive(nonblocking ? MSG_DONTWAIT : 0);
    } catch (e) {
      this.#dropFds();
      this.#end = 0;
      this.#taken = 0;
      throw e;
    }
  }

  /** Whether a whole message is already buffered (no system call needed). */
  get hasBuffered(): boolean {
    const rest = this.#end - this.#taken;
    if (rest < HEADER_SIZE) return false;
    const size = payloadSizeAt(this.rx.view, this.#taken);
    // An invalid size counts as whole: receive() rejects it without reading.
    return size < 0 || size > MAX_PAYLOAD || rest >= HEADER_SIZE + size;
  }

  #receive(flags: number): ReceivedValue {
    const bytes = this.rx.bytes;
    if (this.#taken > 0) {
      if (this.#end > this.#taken) bytes.copyWithin(0, this.#taken, this.#end);
      this.#end -= this.#taken;
      this.#fdsAt -= this.#taken;
      this.#taken = 0;
    }
    for (;;) {
      let want: number;
      if (this.#end >= HEADER_SIZE) {
        const size = this.rx.sizeNumber;
        if (size < 0 || size > MAX_PAYLOAD) {
          throw new ProtocolError(
            cmdName(this.rx.cmd),
            "size",
            `invalid size for message: ${this.rx.size} > ${MAX_PAYLOAD}`,
          );
        }
        const total = HEADER_SIZE + size;
        if (this.#end >= total) return this.#take(total);
        want = total - this.#end;
      } else {
        want = this.#end === 0 ? bytes.length : HEADER_SIZE - this.#end;
      }
      const n = this.#recvSome(bytes, this.#end, want, flags);
      if (n < 0) return Received.AGAIN;
      if (n === 0) {
        if (this.#end === 0 && this.#numFds === 0) return Received.EOF;
        if (this.#end < HEADER_SIZE) {
          throw new ProtocolError("header", "size", "peer hung up mid-header");
        }
        throw new ProtocolError(
          cmdName(this.rx.cmd),
          "payload",
          `peer hung up after ${
            this.#end - HEADER_SIZE
          } of ${this.rx.sizeNumber} bytes`,
        );
      }
      this.#end += n;
    }
  }

  /** Hands out the whole message at rx.bytes[0..total). */
  #take(total: number): ReceivedValue {
    this.#taken = total;
    const mine = this.#numFds > 0 && this.#fdsAt < total;
    validateMessage(this.rx, this.#fds, mine ? this.#numFds : 0);
    if (mine) {
      // From here the fds are the caller's: forget them, keep their count.
      this.#msgFds = this.#numFds;
      this.#numFds = 0;
    }
    return Received.MESSAGE;
  }

  /**
   * Reads up to `len` bytes at `off`; WOULD_BLOCK when a non-blocking read
   * would block.
   */
  #recvSome(buf: Uint8Array, off: number, len: number, flags: number): number {
    const io = this.#io;
    const n = io.recv(this.fd, buf, len, flags, off);
    if (n === WOULD_BLOCK) return n;
    const tooMany = io.numFds > REMOTE_MAX_FDS;
    if (io.numFds > 0) {
      for (let i = 0; i < io.numFds; i++) {
        if (this.#numFds < this.#fds.length) {
          this.#fds[this.#numFds++] = io.fds[i];
        } else {
          closePeerFd(io.fds[i]);
        }
      }
      io.numFds = 0;
      this.#fdsAt = this.#fdOwner(off, off + n);
    }
    if (io.truncated || tooMany) {
      throw new ProtocolError(
        this.#end + n >= HEADER_SIZE ? cmdName(this.rx.cmd) : "header",
        "num_fds",
        `more than ${REMOTE_MAX_FDS} fds`,
      );
    }
    return n;
  }

  /**
   * The offset of the message that owns fds received with the bytes
   * [from, to) of rx.bytes (whose offset 0 starts a message): see the
   * class comment.
   */
  #fdOwner(from: number, to: number): number {
    const v = this.rx.view;
    for (let pos = 0;;) {
      if (pos + HEADER_SIZE > to) return pos;
      const size = payloadSizeAt(v, pos);
      if (size < 0 || size > MAX_PAYLOAD) return pos;
      const next = pos + HEADER_SIZE + size;
      if (next > from) {
        const cmd = v.getInt32(pos, true);
        if (cmd === Cmd.SET_IRQFD || cmd === Cmd.SYNC_SYSMEM || next >= to) {
          return pos;
        }
      }
      pos = next;
    }
  }

  #dropFds(): void {
    for (let i = 0; i < this.#numFds; i++) closePeerFd(this.#fds[i]);
    this.#numFds = 0;
  }

  /**
   * Closes the socket and any fds of a partial message, as fds a peer
   * sent: the socket's queue may hold the peer's fds too.
   */
  override close(): void {
    this.#dropFds();
    if (!this.closed) closePeerSocket(this.release());
  }
}
