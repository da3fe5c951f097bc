// A device in 50 lines: "blinker" pulses its INTx line from a timer.
//   bin/iohub launch --device ./examples/blinker.ts,id=blink
// BAR0 (4 KiB memory) registers, 32-bit:
//   0x00 PERIOD  blink period in ms (default 100, 0 stops; at least 10)
//   0x04 COUNT   pulses so far (read only)
//   0x08 ACK     any write lowers INTx until the next pulse
// Each pulse raises INTx; the line drops at ACK or after a quarter period.

import type { DeviceContext, DeviceModel } from "../lib/pci/mod.ts";

export default function blinker(ctx: DeviceContext): DeviceModel {
  let period = 100;
  let count = 0;
  let timer: ReturnType<typeof setInterval> | undefined;
  const pulse = (): void => {
    count++;
    ctx.setIrq(true);
    setTimeout(() => ctx.setIrq(false), period / 4);
  };
  const start = (): void => {
    clearInterval(timer);
    if (period > 0) timer = setInterval(pulse, Math.max(period, 10));
  };
  start();
  return {
    identity: { vendorId: 0x1af4, deviceId: 0x10f1, classCode: 0x088000 },
    bars: [{ size: 4096, space: "memory" }],
    read(_bar, offset, data): void {
      const v = offset === 0 ? period : offset === 4 ? count : 0;
      data.forEach((_, i) => data[i] = i < 4 ? (v >>> (8 * i)) & 0xff : 0);
    },
    write(_bar, offset, data): void {
      if (offset === 0) {
        period = data.reduce((v, b, i) => v + b * 2 ** (8 * i), 0);
        start();
      } else if (offset === 8) {
        ctx.setIrq(false);
      }
    },
    close(): void {
      clearInterval(timer);
    },
    reset(): void {
      period = 100;
      count = 0;
      ctx.setIrq(false);
      start();
    },
  };
}
