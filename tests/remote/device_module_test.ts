// Device modules loaded by path into a real `iohub remote`, written the
// way a user outside the project would (plain objects, no imports): load
// errors, timers busy and idle, async chains, timer-raised interrupts
// through the irqfd, a throwing device, signals and socket files.

import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import {
  closeFd,
  memfd,
  OwnedFd,
  pollReadable,
  preadFd,
} from "../../ffi/mod.ts";
import { spawnWithSockets } from "../../lib/qemu/socket_child.ts";
import { defaultRemoteCommand } from "../../lib/qemu/spawn_remote.ts";
import { UINT64_MAX } from "../../lib/mpqemu/mod.ts";
import { ROM_REGION } from "../../lib/pci/mod.ts";
import { ProxyDevice, ProxyError } from "../../lib/proxy/proxy_device.ts";
import {
  assertExit,
  type Client,
  type RemoteProcess,
  spawnDevices,
} from "./remote_process.ts";
import { withTempDir } from "../temp_dir.ts";

const BAR0 = 0xfebf0000n;

/**
 * Runs `fn` with `source` written as module `name` in a fresh directory
 * outside the project, removed once `fn` has settled.
 */
function withModule(
  name: string,
  source: string,
  fn: (path: string) => Promise<void>,
): Promise<void> {
  return withTempDir("iohub-devmod-", (dir) => {
    const path = `${dir}/${name}`;
    Deno.writeTextFileSync(path, source);
    return fn(path);
  });
}

// A device as a user writes it: a default-exported factory returning an
// object literal. Register 0 counts timer ticks, 4 holds the result of an
// async chain started by a write to 8, a write to 12 starts raising INTx
// from a timer, 16 lowers it; 20 throws.
const TICKER = `
export default (ctx) => {
  let ticks = 0, chained = 0, level = false;
  setInterval(() => { ticks++; }, 5);
  const le = (d, v) => { for (let i = 0; i < d.length; i++) d[i] = i < 4 ? (v >>> (8 * i)) & 0xff : 0; };
  return {
    identity: { vendorId: 0x1af4, deviceId: 0x10f0 },
    bars: [{ size: 4096, space: "memory" }],
    read(bar, off, data) {
      if (off === 20) throw new Error("register 20 is broken");
      le(data, off === 0 ? ticks : off === 4 ? chained : level ? 1 : 0);
    },
    write(bar, off, data) {
      if (off === 8) {
        (async () => {
          await Promise.resolve();
          await new Promise((r) => setTimeout(r, 20));
          const text = await Deno.readTextFile(import.meta.filename);
          chained = text.length;
        })();
      } else if (off === 12) {
        setTimeout(() => { level = true; ctx.setIrq(true); }, 30);
      } else if (off === 16) {
        level = false;
        ctx.setIrq(false);
      }
    },
  };
};
`;

function enable(c: Client): void {
  c.cfgWrite(0x10, Number(BAR0));
  c.cfgWrite(0x04, 0x2, 2);
}

/**
 * Runs `fn` with a remote serving TICKER as devices `ids`, each with its BAR
 * enabled; the remote is ended and the module removed once `fn` has settled.
 */
function withTickers(
  ids: string[],
  fn: (r: RemoteProcess) => Promise<void>,
): Promise<void> {
  return withModule("ticker.ts", TICKER, async (mod) => {
    await using r = spawnDevices(ids.map((id) => `${mod},id=${id}`));
    for (const c of r.clients) enable(c);
    await fn(r);
  });
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assert(cond(), what);
}

Deno.test("device module: timers run while idle and while a peer floods requests", async () => {
  await withTickers(["tick"], async (r) => {
    const c = r.clients[0];
    await new Promise((done) => setTimeout(done, 100));
    const idle = c.barRead(BAR0);
    assert(idle > 0n, "the interval fired while the remote slept");
    // Back-to-back requests for a while: the event loop still gets turns.
    const before = c.barRead(BAR0);
    const t0 = performance.now();
    while (performance.now() - t0 < 300) c.cfgRead(0);
    assert(c.barRead(BAR0) > before, "the interval fired under load");
    await assertExit(r, 0);
  });
});

Deno.test("device module: an async chain with file I/O completes", async () => {
  await withTickers(["tick"], async (r) => {
    const c = r.clients[0];
    c.barWrite(BAR0 + 8n, 1n);
    await until(
      () => c.barRead(BAR0 + 4n) === BigInt(TICKER.length),
      "chain done",
    );
    await assertExit(r, 0);
  });
});

Deno.test("device module: an interrupt raised from a timer arrives through the irqfd", async () => {
  await withTickers(["tick"], async (r) => {
    const c = r.clients[0];
    using intx = c.intx();
    const { irq } = intx;
    c.barrier();
    assertEquals(irq.drain(), 0n, "nothing before the write");
    c.barWrite(BAR0 + 12n, 1n);
    assert(await pollReadable(irq.fd, 5000), "the timer's interrupt arrived");
    assertEquals(irq.drain(), 1n);
    assertEquals(c.barRead(BAR0 + 16n), 1n);
    c.barWrite(BAR0 + 16n, 1n);
    await assertExit(r, 0, "asserts=1 deasserts=1");
  });
});

Deno.test("device module: a device that throws closes only its channel, stack in the log", async () => {
  await withTickers(["bad", "good"], async (r) => {
    const [bad, good] = r.clients;
    let threw = false;
    try {
      bad.barRead(BAR0 + 20n);
    } catch {
      threw = true;
    }
    assert(threw, "the channel of the throwing device closed");
    assertEquals(good.barRead(BAR0 + 16n), 0n);
    const stderr = await assertExit(
      r,
      1,
      "bad: closed: device error: Error: register 20 is broken",
    );
    assertMatch(stderr, /at Object.read \(file:\/\/.*ticker\.ts:\d+:\d+\)/);
    // The stack comes before the close line, which stays one line.
    assertMatch(
      stderr,
      /^iohub remote: bad: closed: device error: Error: register 20 is broken; INTx asserts=0 deasserts=0 resamples=0 reasserts=0; refused accesses=0$/m,
    );
    assertStringIncludes(stderr, "good: peer closed the connection");
  });
});

Deno.test("device module: errors from a device's timer and promise are logged with the device, and serving goes on", async () => {
  await withModule(
    "flaky.ts",
    `export default () => {
      let n = 0;
      const timer = setInterval(() => { if (++n === 2) throw new Error("timer broke"); }, 10);
      Promise.reject(new Error("promise broke"));
      return {
        identity: { vendorId: 0x1af4, deviceId: 0x10f4 },
        bars: [{ size: 16, space: "memory" }],
        read(_bar, _off, data) { data.fill(0); data[0] = n; },
        write() {},
        close() { clearInterval(timer); },
      };
    };`,
    async (mod) => {
      await using r = spawnDevices([`${mod},id=flaky`, "testdev,id=good"]);
      const [flaky, good] = r.clients;
      enable(flaky);
      await until(() => flaky.barRead(BAR0) >= 4n, "the timer going on");
      assertEquals(good.cfgRead(0), 0x10b11234n);
      const stderr = await assertExit(r, 0);
      assertMatch(
        stderr,
        /unhandled rejection in device code of flaky: Error: promise broke\n\s+at .*flaky\.ts/,
      );
      assertMatch(
        stderr,
        /uncaught error in device code of flaky: Error: timer broke\n\s+at .*flaky\.ts/,
      );
    },
  );
});

Deno.test("device module: an error from a file the module imports is logged with the module's devices", async () => {
  await withTempDir("iohub-devmod-", async (top) => {
    // V8 prints such names partly decoded in its stacks.
    const dir = `${top}/my dir é`;
    Deno.mkdirSync(`${dir}/helpers`, { recursive: true });
    Deno.writeTextFileSync(
      `${dir}/helpers/tick.ts`,
      `export function tickOnce(): void {
        setTimeout(() => { throw new Error("helper broke"); }, 5);
      }`,
    );
    const mod = `${dir}/helped ü.ts`;
    Deno.writeTextFileSync(
      mod,
      `import { tickOnce } from "./helpers/tick.ts";
      export default () => {
        tickOnce();
        Promise.reject(new Error("module broke"));
        return {
          identity: { vendorId: 0x1af4, deviceId: 0x10f5 },
          bars: [],
          read() {},
          write() {},
        };
      };`,
    );
    await using r = spawnDevices([`${mod},id=helped`, "testdev,id=good"]);
    // Served: the factory ran, and its helper's timer fires 5 ms later.
    assertEquals(r.clients[1].cfgRead(0), 0x10b11234n);
    await new Promise((done) => setTimeout(done, 300));
    const stderr = await assertExit(r, 0);
    assertMatch(
      stderr,
      /uncaught error in device code of helped: Error: helper broke\n\s+at .*helpers\/tick\.ts/,
    );
    assertMatch(
      stderr,
      /unhandled rejection in device code of helped: Error: module broke\n/,
    );
  });
});

Deno.test("device module: an idle remote with a timer-free device costs no CPU", async () => {
  await withModule(
    "quiet.ts",
    `export default () => ({ identity: { vendorId: 1, deviceId: 2 }, bars: [], read() {}, write() {} });`,
    async (mod) => {
      await using r = spawnDevices([mod]);
      r.clients[0].barrier();
      const cpu = (): number => {
        const stat = Deno.readTextFileSync(`/proc/${r.child.pid}/stat`);
        const f = stat.split(") ")[1].split(" ");
        return Number(f[11]) + Number(f[12]); // utime + stime, in ticks
      };
      const before = cpu();
      await new Promise((done) => setTimeout(done, 1000));
      // 100 ticks per second: 2 ticks is 2% of one CPU, with room for noise.
      assert(
        cpu() - before <= 2,
        `idle remote used ${cpu() - before} ticks in 1 s`,
      );
      const { code } = await r.finish();
      assertEquals(code, 0);
    },
  );
});

Deno.test("device module: bad modules are one line naming the module, exit 2", async (t) => {
  const cases: [string, string, string][] = [
    ["missing.ts", "", "cannot load the module"],
    // Where the parser gave up is on the line too.
    ["syntax.ts", "export default (ctx => {", "syntax.ts:1:"],
    ["nodefault.ts", "export const x = 1;", "the module has no default export"],
    // An import that fails is named, without the colours Deno puts in.
    [
      "badimport.ts",
      `import "./nothere.ts";\nexport default () => ({});`,
      "Module not found",
    ],
    [
      "number.ts",
      "export default 5;",
      "default export is not a device factory",
    ],
    [
      "badbar.ts",
      `export default () => ({ identity: { vendorId: 1, deviceId: 2 }, bars: [{ size: 3000, space: "memory" }], read() {}, write() {} });`,
      "malformed device model: bars[0].size: 3000 is not a power of two",
    ],
    [
      "badid.ts",
      `export default () => ({ identity: { vendorId: 0x12345, deviceId: 2 }, bars: [], read() {}, write() {} });`,
      "malformed device model: identity.vendorId",
    ],
    [
      "throws.ts",
      `export default () => { throw new Error("no hardware"); };`,
      // The device and where it threw are on the line too.
      "the device factory failed: no hardware (device throws0, at file:///",
    ],
    [
      "throwsstring.ts",
      `export default () => { throw "not an Error"; };`,
      "the device factory failed: not an Error",
    ],
    [
      "oldstyle.ts",
      `export default function Dev(ctx) { this.identity = { vendorId: 1, deviceId: 2 }; }`,
      "malformed device model: model: the factory returned undefined, not the model",
    ],
    [
      "async.ts",
      `export default async () => ({ identity: { vendorId: 1, deviceId: 2 }, bars: [], read() {}, write() {} });`,
      "malformed device model: model: the factory returned a promise",
    ],
    // An option without "=" reads as part of the path.
    ["nothere.ts,step", "", "options after the module are KEY=VALUE"],
    [
      "badclose.ts",
      `export default () => ({ identity: { vendorId: 1, deviceId: 2 }, bars: [], read() {}, write() {}, close: "x" });`,
      "malformed device model: close: not a function",
    ],
    [
      "caps.ts",
      `export default () => ({ identity: { vendorId: 1, deviceId: 2 }, bars: [], capabilities: {}, read() {}, write() {} });`,
      "malformed device model: capabilities: expected an array",
    ],
  ];
  for (const [name, source, msg] of cases) {
    await t.step(name, async () => {
      await withTempDir("iohub-devmod-", async (dir) => {
        const path = `${dir}/${name}`;
        if (source !== "") Deno.writeTextFileSync(path, source);
        const [program, ...command] = defaultRemoteCommand();
        const remote = spawnWithSockets(program, 1, (fds) => [
          ...command,
          "--device",
          `${path},fd=${fds[0]}`,
        ]);
        // Were the module to load, the remote would see its peer gone and
        // end at once (exit 0) instead of serving.
        closeFd(remote.fds[0]);
        const res = await remote.finish();
        assertEquals(res.code, 2, res.stderr);
        assertStringIncludes(res.stderr, path);
        assertStringIncludes(res.stderr, msg);
        assertEquals(res.stderr.trim().split("\n").length, 1, res.stderr);
        assert(!res.stderr.includes("\x1b"), res.stderr);
      });
    });
  }
});

Deno.test("device module: loaded by file: URL, a signal listener inside the device raises INTx", async () => {
  await withModule(
    "signalled.ts",
    `export default (ctx) => {
      Deno.addSignalListener("SIGUSR1", () => ctx.setIrq(true));
      return {
        identity: { vendorId: 0x1af4, deviceId: 0x10f2 },
        bars: [{ size: 16, space: "memory" }],
        read(_bar, _off, data) { data.fill(0); },
        write() { ctx.setIrq(false); },
      };
    };`,
    async (mod) => {
      await using r = spawnDevices([`${new URL(`file://${mod}`).href},id=sig`]);
      const c = r.clients[0];
      using intx = c.intx();
      const { irq } = intx;
      c.barrier();
      Deno.kill(r.child.pid, "SIGUSR1");
      assert(
        await pollReadable(irq.fd, 5000),
        "the device's signal handler raised INTx",
      );
      await assertExit(r, 0, "sig: peer closed the connection; INTx asserts=1");
    },
  );
});

Deno.test("device module: a default-exported class is constructed with the context", async () => {
  await withModule(
    "classy.ts",
    `interface Ctx { setIrq(level: boolean): void }
    export default class Latch {
      identity = { vendorId: 0x1af4, deviceId: 0x10f3 };
      bars = [{ size: 16, space: "memory" as const }];
      #value = 0;
      constructor(private ctx: Ctx) {}
      read(_bar: number, _off: number, data: Uint8Array): void {
        data.fill(0);
        data[0] = this.#value;
      }
      write(_bar: number, _off: number, data: Uint8Array): void {
        this.#value = data[0];
        this.ctx.setIrq(data[0] !== 0);
      }
    }`,
    async (mod) => {
      await using r = spawnDevices([`${mod},id=latch`]);
      const c = r.clients[0];
      using intx = c.intx();
      enable(c);
      assertEquals(c.cfgRead(0x00), 0x10f31af4n);
      c.barWrite(BAR0, 0x5an);
      assertEquals(c.barRead(BAR0), 0x5an);
      assert(await pollReadable(intx.irq.fd, 5000), "the class raised INTx");
      await assertExit(
        r,
        0,
        "latch: peer closed the connection; INTx asserts=1",
      );
    },
  );
});

Deno.test("device module: console.log from device code reaches the remote's stderr", async () => {
  await withModule(
    "chatty.ts",
    `console.log("chatty: loaded");
    export default () => ({
      identity: { vendorId: 1, deviceId: 2 },
      bars: [{ size: 16, space: "memory" }],
      read(_bar, off, data) { console.log("chatty: read", off); data.fill(0); },
      write() {},
    });`,
    async (mod) => {
      await using r = spawnDevices([`${mod},id=chatty`]);
      const c = r.clients[0];
      enable(c);
      c.barRead(BAR0 + 4n);
      const { code, stderr } = await r.finish();
      assertEquals(code, 0, stderr);
      assertStringIncludes(stderr, "chatty: loaded");
      assertStringIncludes(stderr, "chatty: read 4");
    },
  );
});

// A device with a 2 KiB expansion ROM whose first bytes read 0x55 0xaa;
// BAR0 register 0 counts the writes the model saw.
const ROM_DEVICE = `
export default () => {
  let writes = 0;
  return {
    identity: { vendorId: 0x1af4, deviceId: 0x10f1 },
    bars: [{ size: 4096, space: "memory" }],
    rom: { size: 2048 },
    read(bar, off, data) {
      data.fill(0);
      data[0] = bar === 6 ? 0x55 : writes;
      if (bar === 6 && off === 0) data[1] = 0xaa;
    },
    write() { writes++; },
  };
};
`;

Deno.test("device module: the expansion ROM reads through region 6 while enabled; writes to it never reach the model", async () => {
  await withModule("rom.ts", ROM_DEVICE, async (mod) => {
    await using r = spawnDevices([`${mod},id=rom`]);
    const c = r.clients[0];
    enable(c);
    const ROM = 0xfebe0000;
    // QEMU's sizing of the ROM register, then the ROM mapped and enabled.
    c.cfgWrite(0x30, 0xffffffff);
    assertEquals(c.cfgRead(0x30), 0xfffff801n);
    c.cfgWrite(0x30, ROM + 1);
    assertEquals(c.barRead(BigInt(ROM), 2), 0xaa55n);
    assertEquals(c.barRead(BigInt(ROM) + 0x7fcn), 0x55n);
    assertEquals(c.barWrite(BigInt(ROM), 0x1234n), 0n);
    assertEquals(c.barRead(BAR0), 0n, "a ROM write reached the model");
    c.barWrite(BAR0, 1n);
    assertEquals(c.barRead(BAR0), 1n);
    // Disabled, the ROM decodes nowhere: QEMU's all-ones reply.
    c.cfgWrite(0x30, ROM);
    assertEquals(c.barRead(BigInt(ROM)), UINT64_MAX);
  });
});

Deno.test("device module: its own --device options reach the factory as ctx.params", async () => {
  const echo = `
export default (ctx) => ({
  identity: { vendorId: 0x1af4, deviceId: 0x10f2 },
  bars: [{ size: 4096, space: "memory" }],
  read(bar, off, data) {
    data.fill(0);
    const keys = Object.keys(ctx.params);
    data[0] = off === 0 ? Number(ctx.params.rate ?? 0) : keys.length;
    data[1] = Object.isFrozen(ctx.params) ? 1 : 0;
    data[2] = ctx.params.mode === "a=b,c" ? 1 : 0;
  },
  write() {},
});
`;
  await withModule("params.ts", echo, async (mod) => {
    await using r = spawnDevices([
      `${mod},id=with,rate=42,mode=a=b,,c,__proto__=x`,
      `${mod},id=without`,
    ]);
    for (const c of r.clients) enable(c);
    const [withParams, without] = r.clients;
    // ",," is a comma inside the value, as in QEMU's options.
    assertEquals(withParams.barRead(BAR0), 0x1012an);
    // __proto__ is a key like any other.
    assertEquals(withParams.barRead(BAR0 + 4n), 0x10103n);
    assertEquals(without.barRead(BAR0), 0x100n);
    assertEquals(without.barRead(BAR0 + 4n), 0x100n);
  });
});

Deno.test("device module: our proxy sizes, maps and reads the expansion ROM", async () => {
  await withModule("rom.ts", ROM_DEVICE, async (mod) => {
    await using r = spawnDevices(
      [`${mod},id=rom`],
      [],
      (fd) => new ProxyDevice(fd, { name: "rom" }),
    );
    const p = r.clients[0];
    assertEquals(p.probe().romSize, 2048);
    assertEquals(p.barBase(ROM_REGION), -1, "not mapped before mapBars");
    assertThrows(
      () => p.mapBars([]),
      ProxyError,
      "rom: mapBars: BAR0 needs a base",
    );
    assertThrows(
      () => p.mapBars([Number(BAR0), , , , , , 0x800 + 1]),
      ProxyError,
      "the ROM needs a 32-bit base aligned to its size 0x800",
    );
    const ROM = 0xfebe0000;
    p.mapBars([Number(BAR0), , , , , , ROM]);
    assertEquals(p.barBase(ROM_REGION), ROM);
    assertEquals(p.barRead(ROM_REGION, 0, 2), 0xaa55n);
    const data = new Uint8Array(2);
    assert(p.handleMmio(BigInt(ROM), false, data), "the ROM decodes");
    assertEquals([...data], [0x55, 0xaa]);
    p.barWrite(ROM_REGION, 0, 1n, 4);
    assertEquals(p.barRead(0, 0, 4), 0n, "a ROM write reached the model");
  });
});

Deno.test("device module: setIrq from the factory or a constructor (reset() there) takes effect", async () => {
  await withModule(
    "eager.ts",
    `export default class Eager {
      identity = { vendorId: 0x1af4, deviceId: 0x10f6 };
      bars = [];
      #ctx;
      constructor(ctx) {
        this.#ctx = ctx;
        this.reset();
        ctx.setIrq(true);
      }
      read() {}
      write() {}
      reset() { this.#ctx.setIrq(false); }
    }`,
    async (mod) => {
      await using r = spawnDevices(
        [`${mod},id=eager`],
        [],
        (fd) => new ProxyDevice(fd, { name: "eager" }),
      );
      const p = r.clients[0];
      p.setupIrqfd();
      const sink = p.startUserSink();
      assert(sink.wait(2000), "the level set in the constructor is delivered");
      // Status register, Interrupt Status (bit 3).
      assertEquals(p.configRead(0x06, 2) & 0x8, 0x8);
    },
  );
});

Deno.test("device module: an async read() is answered with what data held, and said once", async () => {
  await withModule(
    "lateread.ts",
    `export default () => ({
      identity: { vendorId: 0x1af4, deviceId: 0x10f7 },
      bars: [{ size: 4096, space: "memory" }],
      async read(_bar, _off, data) { await null; data[0] = 7; },
      write() {},
    });`,
    async (mod) => {
      await using r = spawnDevices([`${mod},id=late`]);
      const c = r.clients[0];
      enable(c);
      assertEquals(c.barRead(BAR0), 0n);
      assertEquals(c.barRead(BAR0), 0n);
      const stderr = await assertExit(r, 0);
      const warning =
        "late: read() returned a promise: the peer got what data held when it returned";
      assertEquals(stderr.split(warning).length, 2, stderr);
    },
  );
});

Deno.test("device module: a timer that throws on every tick is reported once, whatever its message", async (t) => {
  // The same throw again, also when its message carries a count.
  const cases = [
    { message: `"tick broke"`, marker: "Error: tick broke" },
    { message: "`tick ${n++} broke`", marker: "Error: tick " },
  ];
  for (const { message, marker } of cases) {
    await t.step(message, () =>
      withModule(
        "noisy.ts",
        `export default () => {
          let n = 0;
          const timer = setInterval(() => { throw new Error(${message}); }, 5);
          return {
            identity: { vendorId: 0x1af4, deviceId: 0x10f8 },
            bars: [],
            read() {},
            write() {},
            close() { clearInterval(timer); },
          };
        };`,
        async (mod) => {
          await using r = spawnDevices([`${mod},id=noisy`]);
          // Served: the factory ran; its timer then throws every 5 ms.
          r.clients[0].cfgRead(0);
          await new Promise((done) => setTimeout(done, 400));
          const stderr = await assertExit(r, 0);
          assertEquals(stderr.split(marker).length, 2, stderr);
        },
      ));
  }
});

Deno.test("device module: misspelt model fields are logged, one line each, and the device serves", async () => {
  await withModule(
    "typos.ts",
    `export default () => ({
      identity: { vendorId: 0x1af4, deviceId: 0x10fc, revison: 2 },
      bars: [{ size: 4096, space: "memory", prefetch: true, is_64: false }],
      capabilities: [{ id: 9, length: 4, writeable: [0xff] }],
      rest() {},
      helper() {},
      ram: new Uint8Array(4),
      resets: 0,
      read() {},
      write() {},
    });`,
    async (mod) => {
      await using r = spawnDevices([`${mod},id=typos`]);
      assertEquals(r.clients[0].cfgRead(0), 0x10fc1af4n);
      const stderr = await assertExit(r, 0);
      for (
        const line of [
          "typos: model: identity.revison is ignored: did you mean revision?",
          "typos: model: bars[0].prefetch is ignored: did you mean prefetchable?",
          "typos: model: bars[0].is_64 is ignored: did you mean is64?",
          "typos: model: capabilities[0].writeable is ignored: did you mean writable?",
          "typos: model: rest is ignored: did you mean reset?",
        ]
      ) {
        assertStringIncludes(stderr, line);
      }
      // Fields of its own that merely look like members are not flagged.
      for (const own of ["helper", "ram", "resets"]) {
        assert(!stderr.includes(`${own} is ignored`), stderr);
      }
    },
  );
});

Deno.test("device module: DMA takes bigint addresses and any typed array; a plain array is the device's error", async () => {
  await withModule(
    "dmakinds.ts",
    `export default (ctx) => ({
      identity: { vendorId: 0x1af4, deviceId: 0x10fd },
      bars: [{ size: 4096, space: "memory" }],
      read() {},
      write(_bar, off) {
        if (off === 0) ctx.dmaWrite(0x10n, new Uint32Array([0xdeadbeef]));
        if (off === 4) {
          const back = new DataView(new ArrayBuffer(4));
          ctx.dmaRead(0x10, back);
          ctx.dmaWrite(0x20, new Uint8Array([back.getUint8(3)]));
        }
        if (off === 8) ctx.dmaRead(0, new Array(16));
      },
    });`,
    async (mod) => {
      await using r = spawnDevices([`${mod},id=dmakinds`]);
      const c = r.clients[0];
      enable(c);
      using ram = new OwnedFd(memfd("guest-ram", 0x1000));
      c.syncSysmem([{ gpa: 0n, size: 0x1000n, offset: 0n, fd: ram.fd }]);
      c.barWrite(BAR0, 0n);
      c.barWrite(BAR0 + 4n, 0n);
      const bytes = new Uint8Array(0x21);
      preadFd(ram.fd, bytes, 0);
      assertEquals([...bytes.subarray(0x10, 0x14)], [0xef, 0xbe, 0xad, 0xde]);
      assertEquals(bytes[0x20], 0xde);
      // The device threw: its channel closes.
      assertThrows(() => c.barWrite(BAR0 + 8n, 0n), Error, "remote hung up");
      const stderr = await assertExit(r, 1);
      assertStringIncludes(
        stderr,
        "dmaRead: the buffer must be a Uint8Array (or another typed array or DataView), not an Array",
      );
    },
  );
});

Deno.test("device module: --trace records an INTx edge the factory makes", async () => {
  await withModule(
    "early.ts",
    `export default (ctx) => {
      ctx.setIrq(true);
      return { identity: { vendorId: 0x1af4, deviceId: 0x10fa }, bars: [], read() {}, write() {} };
    };`,
    async (mod) => {
      await withTempDir("iohub-trace-", async (dir) => {
        const trace = `${dir}/t.jsonl`;
        {
          await using r = spawnDevices([`${mod},id=early`], [
            "--trace",
            trace,
          ]);
          r.clients[0].cfgRead(0);
          await assertExit(r, 0);
        }
        const events = Deno.readTextFileSync(trace).trim().split("\n")
          .map((l) => JSON.parse(l));
        const intx = events.filter((e) => e.event === "intx");
        assertEquals(intx.map((e) => [e.dev, e.level]), [["early", 1]]);
      });
    },
  );
});
