// Test helper: an `iohub remote` subprocess serving testdevs on socketpairs,
// and a minimal synchronous mpqemu client to drive it from the test.

import { assertEquals, assertStringIncludes } from "@std/assert";
import {
  defaultRemoteCommand,
  spawnTestdevRemote,
} from "../../lib/qemu/spawn_remote.ts";
import { spawnWithSockets } from "../../lib/qemu/socket_child.ts";
import { EventFd, MsgIo } from "../../ffi/mod.ts";
import {
  Channel,
  Cmd,
  Received,
  type SysmemRegion,
} from "../../lib/mpqemu/mod.ts";

/** Where tests program a testdev's BAR0 (memory), as firmware would. */
export const BAR0 = 0xfebf0000n;
/** Where tests program a testdev's BAR1 (I/O). */
export const BAR1 = 0xc040n;

// Raw sends are synchronous: one MsgIo serves every client.
const RAW_IO = new MsgIo(16);

/** A synchronous client on one device's channel. */
export class Client {
  /** The channel to the remote (owned). */
  readonly ch: Channel;

  /** Wraps our end of a device's socketpair. */
  constructor(fd: number) {
    this.ch = new Channel(fd);
  }

  /** Sends `tx` and returns the RET value (throws on EOF or non-RET). */
  request(fds: number[] = []): bigint {
    this.ch.send(this.ch.tx, fds);
    if (this.ch.receive() !== Received.MESSAGE) {
      throw new Error("remote hung up");
    }
    if (this.ch.rx.cmd !== Cmd.RET) {
      throw new Error(`reply cmd ${this.ch.rx.cmd}`);
    }
    return this.ch.rx.size === 8n ? this.ch.rx.retValue : -1n;
  }

  /** PCI_CFGREAD. */
  cfgRead(addr: number, len = 4): bigint {
    this.ch.tx.encodeCfg(Cmd.PCI_CFGREAD, addr, 0, len);
    return this.request();
  }

  /** PCI_CFGWRITE. */
  cfgWrite(addr: number, val: number, len = 4): bigint {
    this.ch.tx.encodeCfg(Cmd.PCI_CFGWRITE, addr, val, len);
    return this.request();
  }

  /** BAR_READ. */
  barRead(addr: bigint, size = 4, memory = true): bigint {
    this.ch.tx.encodeBar(Cmd.BAR_READ, addr, 0n, size, memory);
    return this.request();
  }

  /** BAR_WRITE. */
  barWrite(addr: bigint, val: bigint, size = 4, memory = true): bigint {
    this.ch.tx.encodeBar(Cmd.BAR_WRITE, addr, val, size, memory);
    return this.request();
  }

  /** Programs BAR0 and BAR1 and enables memory and I/O decode. */
  enable(): void {
    this.cfgWrite(0x10, Number(BAR0));
    this.cfgWrite(0x14, Number(BAR1));
    this.cfgWrite(0x04, 0x3, 2);
  }

  /** DEVICE_RESET; returns the RET's payload size. */
  reset(): bigint {
    this.ch.send(this.ch.tx.encodeEmpty(Cmd.DEVICE_RESET));
    if (this.ch.receive() !== Received.MESSAGE) {
      throw new Error("remote hung up");
    }
    return this.ch.rx.size;
  }

  /** SET_IRQFD (no reply). */
  setIrqfd(irqfd: number, resamplefd: number): void {
    this.ch.send(this.ch.tx.encodeEmpty(Cmd.SET_IRQFD), [irqfd, resamplefd]);
  }

  /**
   * SET_IRQFD with a fresh eventfd pair, returned for the test to watch
   * (`irq`) and signal (`rs`); disposing it closes both.
   */
  intx(): IntxPair {
    // Closes what was made if a later step throws; moved out on success.
    using made = new DisposableStack();
    const irq = made.use(new EventFd());
    const rs = made.use(new EventFd());
    this.setIrqfd(irq.fd, rs.fd);
    const owned = made.move();
    return { irq, rs, [Symbol.dispose]: () => owned.dispose() };
  }

  /** SYNC_SYSMEM (no reply). */
  syncSysmem(regions: SysmemRegion[]): void {
    this.ch.send(
      this.ch.tx.encodeSyncSysmem(regions),
      regions.map((r) => r.fd),
    );
  }

  /**
   * Writes raw `bytes` with `fds` (at most 16) in one sendmsg, as a peer
   * that breaks the protocol would; returns the bytes the kernel took.
   */
  sendRaw(bytes: Uint8Array, fds: number[] = []): number {
    return RAW_IO.send(this.ch.fd, bytes, bytes.length, null, 0, fds);
  }

  /**
   * Two round trips: after them the remote has handled everything that was
   * ready when the first was sent (events of one epoll batch included).
   */
  barrier(): void {
    this.cfgRead(0);
    this.cfgRead(0);
  }

  /** Closes the channel (idempotent). */
  close(): void {
    if (!this.ch.closed) this.ch.close();
  }
}

/** A device's INTx eventfds, as Client.intx() gave them to it. */
export interface IntxPair extends Disposable {
  /** The irqfd: the device asserting INTx makes it readable. */
  irq: EventFd;
  /** The resamplefd: signalled as an EOI would be. */
  rs: EventFd;
}

/** What a test drives a device's connection with. */
export interface Endpoint {
  /** Closes the connection (idempotent). */
  close(): void;
}

/** A running remote with one endpoint per device. */
export interface RemoteProcess<T extends Endpoint = Client>
  extends AsyncDisposable {
  /** The child process. */
  child: Deno.ChildProcess;
  /** One endpoint per device, in --device order. */
  clients: T[];
  /** Closes every client and waits for exit; returns status and stderr. */
  finish(): Promise<{ code: number; stderr: string }>;
}

/**
 * Spawns `iohub remote` with `ids.length` testdevs on socketpairs; `wrap`
 * turns our end of each into the test's endpoint (a Client by default).
 */
export function spawnRemote<T extends Endpoint = Client>(
  ids: string[],
  extra: string[] = [],
  wrap: (fd: number) => T = (fd) => new Client(fd) as unknown as T,
): RemoteProcess<T> {
  return wrapRemote(spawnTestdevRemote(ids, extra), wrap);
}

/**
 * Spawns `iohub remote` serving `devices` (TYPE[,id=NAME] each: a built-in
 * or a module path) on socketpairs; `wrap` turns our end of each into the
 * test's endpoint (a Client by default).
 */
export function spawnDevices<T extends Endpoint = Client>(
  devices: string[],
  extra: string[] = [],
  wrap: (fd: number) => T = (fd) => new Client(fd) as unknown as T,
): RemoteProcess<T> {
  const [program, ...args] = defaultRemoteCommand();
  const sc = spawnWithSockets(program, devices.length, (fds) => [
    ...args,
    ...extra,
    ...devices.flatMap((d, i) => ["--device", `${d},fd=${fds[i]}`]),
  ]);
  return wrapRemote(sc, wrap);
}

function wrapRemote<T extends Endpoint>(
  sc: ReturnType<typeof spawnTestdevRemote>,
  wrap: (fd: number) => T,
): RemoteProcess<T> {
  const clients = sc.fds.map(wrap);
  const finish = (): Promise<{ code: number; stderr: string }> => {
    for (const c of clients) c.close();
    return sc.finish();
  };
  return {
    child: sc.child,
    clients,
    finish,
    async [Symbol.asyncDispose](): Promise<void> {
      await finish();
    },
  };
}

/**
 * Finishes `r` and asserts its exit status (0: every channel closed
 * cleanly, 1: one closed on an error) and that its log holds each of
 * `lines`; returns the log.
 */
export async function assertExit(
  r: RemoteProcess<Endpoint>,
  code: number,
  ...lines: string[]
): Promise<string> {
  const { code: actual, stderr } = await r.finish();
  assertEquals(actual, code, stderr);
  for (const line of lines) assertStringIncludes(stderr, line);
  return stderr;
}
