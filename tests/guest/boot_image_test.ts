// The QEMU boot guest's floppy image: the size SeaBIOS expects of a 1.44 MB
// floppy, a bootable first sector, and a cached path that only changes with
// the program.

import { assert, assertEquals } from "@std/assert";
import {
  buildBootImage,
  buildEduImage,
  FLOPPY_SIZE,
} from "../../lib/guest/boot_image.ts";
import { haveBinutils } from "../requirements.ts";

const binutilsOk = haveBinutils();

Deno.test({
  name: "boot image: a bootable 1.44 MB floppy, cached by content",
  ignore: !binutilsOk,
  async fn(): Promise<void> {
    const path = await buildBootImage();
    assert(path.startsWith("/"), `${path} is not absolute`);
    const image = await Deno.readFile(path);
    assertEquals(image.length, FLOPPY_SIZE);
    assertEquals(FLOPPY_SIZE, 1474560);
    // The BIOS boot signature, 0xaa55 stored little-endian.
    assertEquals([image[510], image[511]], [0x55, 0xaa]);
    // The program continues past the boot sector (the loaded stage 2).
    assert(image.subarray(512, 1024).some((b) => b !== 0));
    const { mtime } = await Deno.stat(path);
    assertEquals(await buildBootImage(), path, "rebuild moved the image");
    assertEquals(
      (await Deno.stat(path)).mtime,
      mtime,
      "an unchanged program was rewritten",
    );
  },
});

Deno.test({
  name: "boot image: each guest gets its own image, named after its source",
  ignore: !binutilsOk,
  async fn(): Promise<void> {
    const boot = await buildBootImage();
    const edu = await buildEduImage();
    assert(/\/boot-[0-9a-f]{16}\.img$/.test(boot), boot);
    assert(/\/edu-[0-9a-f]{16}\.img$/.test(edu), edu);
    const image = await Deno.readFile(edu);
    assertEquals(image.length, FLOPPY_SIZE);
    assertEquals([image[510], image[511]], [0x55, 0xaa]);
    assert(image.subarray(512, 1024).some((b) => b !== 0));
  },
});
