// The grammar of a `--device` value, TYPE,KEY=VALUE,..., shared by the
// remote, the launch command line and the launcher that writes the remote's:
// where the type ends, which keys are the remote's own and which a device
// module's, and how a comma inside a part is written.

import { isModuleType } from "./load.ts";

const PARAM_KEY = /^[A-Za-z_]\w*$/;

/**
 * The remote's own options in a `--device` value, each with the check of
 * its value (launch, which takes only `id`, hands its devices to a remote
 * that reads them all).
 */
export const REMOTE_DEVICE_OPTIONS: Readonly<
  Record<string, (value: string) => boolean>
> = {
  fd: (v) => /^\d+$/.test(v),
  socket: (v) => v !== "",
  id: (v) => /^[\w.-]+$/.test(v),
};

/**
 * Whether `key` may name an option of the device module `type` itself
 * (`rate=5`): only modules take them; a letter or '_', then letters,
 * digits or '_'; the remote's own options are not the module's.
 */
export function isParamKey(type: string, key: string): boolean {
  return isModuleType(type) && !Object.hasOwn(REMOTE_DEVICE_OPTIONS, key) &&
    PARAM_KEY.test(key);
}

/**
 * Splits a `--device TYPE,KEY=VALUE,...` value into its type and option
 * parts: the type runs up to the first part that looks like KEY=VALUE, so
 * a module path may hold commas. As in QEMU's options, `,,` stands for a
 * comma inside a part (see quoteDeviceOption).
 */
export function splitDeviceValue(
  value: string,
): { type: string; options: string[] } {
  const parts = [""];
  for (let i = 0; i < value.length; i++) {
    if (value[i] !== ",") {
      parts[parts.length - 1] += value[i];
    } else if (value[i + 1] === ",") {
      parts[parts.length - 1] += ",";
      i++;
    } else {
      parts.push("");
    }
  }
  let typeEnd = 1;
  while (typeEnd < parts.length && !/^\w+=/.test(parts[typeEnd])) typeEnd++;
  return {
    type: parts.slice(0, typeEnd).join(","),
    options: parts.slice(typeEnd),
  };
}

/**
 * A device type or option value written for a `--device` value: each comma
 * doubled, so that splitDeviceValue gives it back whole.
 */
export function quoteDeviceOption(text: string): string {
  return text.replaceAll(",", ",,");
}

/**
 * An empty set of module options: without a prototype, so a key such as
 * `__proto__` is stored like any other.
 */
export function noParams(): Record<string, string> {
  return Object.create(null);
}
