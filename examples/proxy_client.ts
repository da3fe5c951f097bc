// A proxy of your own for an mpqemu remote listening on a socket, doing what
// QEMU's x-pci-proxy-dev does at start: guest memory, the INTx eventfd pair,
// the BAR probe, BAR programming; then one interrupt through the user-space
// sink (no KVM needed) and a device reset.
//   bin/iohub remote --device testdev,socket=/tmp/testdev.sock &
//   node_modules/deno/deno run --allow-ffi --allow-read examples/proxy_client.ts /tmp/testdev.sock

import { closeFd, connectUnix, memfd, SysError } from "../ffi/mod.ts";
import { Reg } from "../lib/pci/devices/testdev.ts";
import { ProxyDevice } from "../lib/proxy/proxy_device.ts";

const path = Deno.args[0] ?? "/tmp/testdev.sock";
const RAM = 64 << 20;

// Started right after the remote, the socket may not be there yet: retry
// for a few seconds while nobody listens on the path.
async function connect(path: string): Promise<number> {
  for (let tries = 50;; tries--) {
    try {
      return connectUnix(path);
    } catch (e) {
      const waiting = e instanceof SysError &&
        (e.code === "ENOENT" || e.code === "ECONNREFUSED");
      if (!waiting || tries === 0) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

const ram = memfd("guest-ram", RAM);
let proxy: ProxyDevice | null = null;
try {
  proxy = new ProxyDevice(await connect(path), { name: "dev0" });
  proxy.syncSysmem([{ fd: ram, gpa: 0n, size: BigInt(RAM), offset: 0n }]);
  proxy.setupIrqfd();
  const { vendorId, deviceId, bars } = proxy.probe();
  const hex = (v: number): string => v.toString(16).padStart(4, "0");
  const barList = bars.map((b) =>
    `BAR${b.index} ${b.size} bytes ${b.memory ? "memory" : "I/O"}`
  );
  console.log(`${hex(vendorId)}:${hex(deviceId)}, ${barList.join(", ")}`);
  proxy.mapBars([0xfebf0000, 0xc000]);
  const id = proxy.barRead(0, Reg.ID, 4);
  console.log(`ID register: 0x${id.toString(16)}`);

  const sink = proxy.startUserSink();
  proxy.barWrite(0, Reg.IRQ_RAISE, 1n, 4);
  console.log(`interrupt delivered: ${sink.wait(1000)}`);
  proxy.barWrite(0, Reg.IRQ_ACK, 1n, 4);
  sink.eoi();

  // A reset leaves the BARs unprogrammed, as on real hardware: map again.
  proxy.reset();
  proxy.mapBars([0xfebf0000, 0xc000]);
  const count = proxy.barRead(0, Reg.IRQ_COUNT, 4);
  console.log(`after reset, IRQ_COUNT: ${count}`);
} finally {
  proxy?.close();
  closeFd(ram);
}
