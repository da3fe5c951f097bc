/**
 * The device API of iohub: everything a device module imports. A device
 * module is one file whose default export is a {@link DeviceFactory}; the
 * remote loads it by path or URL (`iohub remote --device ./my_dev.ts,fd=5`)
 * and serves the model it returns over mpqemu. Device code runs on Deno's
 * event loop: timers, promises and async I/O work as in any Deno program,
 * and `ctx.setIrq`/`ctx.dmaRead`/`ctx.dmaWrite` may be called from them.
 *
 * Importing this module is optional: a factory returning a plain object
 * with `identity`, `bars`, `read` and `write` is a device too. The default
 * export may also be a class implementing {@link DeviceModel}: the remote
 * constructs it with `new`, handing the context to its constructor.
 *
 * @example A device with one register that raises INTx 10 ms after a write
 * ```ts
 * // From a device file elsewhere, import iohub's lib/pci/mod.ts by path.
 * import { type DeviceContext, type DeviceModel, getLe, setLe } from "./mod.ts";
 *
 * export default function delayedIrq(ctx: DeviceContext): DeviceModel {
 *   let value = 0;
 *   return {
 *     identity: { vendorId: 0x1af4, deviceId: 0x10f0 },
 *     bars: [{ size: 4096, space: "memory" }],
 *     read(_bar, _offset, data) {
 *       setLe(data, value);
 *     },
 *     write(_bar, _offset, data) {
 *       value = getLe(data);
 *       setTimeout(() => ctx.setIrq(value !== 0), 10);
 *     },
 *     reset() {
 *       value = 0;
 *       ctx.setIrq(false);
 *     },
 *   };
 * }
 * ```
 *
 * @module
 */

export type {
  BarSpec,
  CapabilitySpec,
  DeviceContext,
  DeviceFactory,
  DeviceModel,
  PciIdentity,
  RomSpec,
} from "./device.ts";
export { getLe, getLe64, setLe, setLe64 } from "./device.ts";
export { ROM_REGION } from "./config.ts";
export { DeviceModelError } from "./validate.ts";
