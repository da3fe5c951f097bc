/*
 * iohub QEMU boot guest: a real-mode program SeaBIOS boots from a 1.44 MB
 * floppy (image built by lib/guest/boot_image.ts). It finds the iohub-testdev
 * behind QEMU's x-pci-proxy-dev, talks to it through both BARs, takes its
 * interrupts, moves data with its DMA engine, resets the machine to check
 * that the reset reaches the device, and prints one `IOHUB-RESULT` line on
 * COM1 before ending the run through isa-debug-exit (0 pass, 1 fail).
 *
 * Memory: the boot sector at 0x7c00 loads the rest right after itself
 * (0x7e00); the stack grows down from 0x7c00; DMA uses 0x20000.
 * The first boot's results survive the reset in CMOS bytes 0x60-0x67 and
 * the boot marker in 0x7f: QEMU's reset and SeaBIOS's POST leave
 * 0x60-0x7f alone (checked), while SeaBIOS zeroes RAM such as 0x20000.
 */
	.code16

	.set RESET_CONTROL, 0xcf9
	.set CMOS_INDEX, 0x70
	.set CMOS_DATA, 0x71

	/* CMOS bytes carrying the first boot's results across the reset. */
	.set CM_DEVICES, 0x60
	.set CM_IRQ_MMIO, 0x61
	.set CM_IRQ_PIO, 0x62
	.set CM_FLAGS, 0x63		/* F_* below */
	.set CM_CYCLES, 0x64		/* u32, 0x64-0x67 */
	.set CM_MARKER, 0x7f
	.set BOOT_MARKER, 0xb1		/* "the next boot is the one after reset" */

	.set F_ID_OK, 0x01
	.set F_DMA_TO_OK, 0x02
	.set F_DMA_FROM_OK, 0x04
	.set F_ARMED_OK, 0x08		/* SCRATCH/IRQ_MASK held the values before reset */

	.set PCI_VENDOR_DEVICE, 0x10b11234	/* iohub-testdev */
	.set PCI_COMMAND_BITS, 0x0007	/* memory, I/O, bus master (for DMA) */
	.set TESTDEV_ID, 0x10b10001
	.set REG_ID, 0x00
	.set REG_SCRATCH, 0x04
	.set REG_IRQ_STATUS, 0x08
	.set REG_IRQ_RAISE, 0x0c
	.set REG_IRQ_ACK, 0x10
	.set REG_IRQ_MASK, 0x14
	.set REG_DMA_ADDR_LO, 0x20
	.set REG_DMA_ADDR_HI, 0x24
	.set REG_DMA_LEN, 0x28
	.set REG_DMA_CMD, 0x2c
	.set REG_DMA_STATUS, 0x30
	.set BUFFER, 0x800
	.set BUFFER_SIZE, 2048
	.set DMA_SIZE, BUFFER_SIZE	/* each DMA moves the whole buffer */

	.set DMA_RAM, 0x20000
	.set SCRATCH_VALUE, 0x5a5a1234
	.set MASK_VALUE, 0x1

	.set IRQS_PER_PHASE, 16
	/* About 190 ms of a 2.1 GHz TSC: far beyond any delivery under KVM,
	 * short enough that TCG (which delivers none) gives up quickly. */
	.set IRQ_DEADLINE, 0x18000000

	.include "common/boot_sector.inc"
msg_disk_error:
	.asciz "iohub-boot: disk read failed\r\n"

	.org 510
	.word 0xaa55

/* ---- Everything below is loaded by the boot sector. ---- */
stage2:
	mov $CM_MARKER, %al
	call cmos_read
	cmp $BOOT_MARKER, %al
	je after_reset

	/* First boot. */
	call find_device
	call read_bar1
	call report_device
	call check_id
	call setup_pic
	movb $1, via_mmio
	movb $1, timing
	call irq_phase
	mov %ax, irq_mmio
	movb $0, timing
	movb $0, via_mmio
	call irq_phase
	mov %ax, irq_pio
	call report_irqs
	movb $1, via_mmio
	call dma_tests
	call arm_reset_check
	call save_results
	mov $msg_resetting, %si
	call print
	mov $RESET_CONTROL, %dx
	/* SYS_RST | RST_CPU: a hard reset; QEMU's proxy sends DEVICE_RESET. */
	mov $0x06, %al
	outb %al, %dx
2:	hlt
	jmp 2b

after_reset:
	/* Clear the marker first, so a later boot in this QEMU starts over. */
	mov $CM_MARKER, %al
	xor %ah, %ah
	call cmos_write
	mov $msg_second, %si
	call print
	call pci_scan
	cmpw $0, dev_count
	je 1f
	call report_device
	movb $1, via_mmio
	mov $REG_SCRATCH, %bx
	call dev_read
	cmp $0, %eax
	jne 1f
	mov $REG_IRQ_MASK, %bx
	call dev_read
	cmp $0xffffffff, %eax
	jne 1f
	movb $1, reset_ok
1:	call load_results
	/* The verdict needs the values to have been set before the reset. */
	testb $F_ARMED_OK, flags
	jnz 2f
	movb $0, reset_ok
2:	jmp print_result

/* CMOS byte %al -> %al. */
cmos_read:
	outb %al, $CMOS_INDEX
	inb $CMOS_DATA, %al
	ret

/* CMOS byte %al = %ah. */
cmos_write:
	outb %al, $CMOS_INDEX
	mov %ah, %al
	outb %al, $CMOS_DATA
	ret

/* bar1 = the device's BAR1 (I/O), once pci_scan found one. */
read_bar1:
	mov dev_address, %ecx
	or $0x14, %cl
	call pci_read
	and $0xfffc, %ax
	mov %ax, bar1
	ret

/*
 * The body of dev_read and dev_write: testdev register %bx through BAR0
 * (via_mmio), where \mmio does the access, or through BAR1, where \pio
 * does it on the register's port in %dx (kept for the caller).
 */
	.macro dev_access mmio, pio:vararg
	cmpb $0, via_mmio
	jne \mmio
	push %dx
	mov bar1, %dx
	add %bx, %dx
	\pio
	pop %dx
	ret
	.endm

/* eax = testdev register %bx, through BAR0 (via_mmio) or BAR1. */
dev_read:
	dev_access mmio_read, inl %dx, %eax

/* testdev register %bx = eax, through BAR0 (via_mmio) or BAR1. */
dev_write:
	dev_access mmio_write, outl %eax, %dx

/* ID through both BARs proves config decoding and unreal mode work. */
check_id:
	movb $1, via_mmio
	mov $REG_ID, %bx
	call dev_read
	mov %eax, %ecx
	movb $0, via_mmio
	call dev_read
	cmp $TESTDEV_ID, %eax
	jne 1f
	cmp $TESTDEV_ID, %ecx
	jne 1f
	orb $F_ID_OK, flags
	ret
1:	mov %eax, %edx
	print_field msg_bad_id, print_hex, %ecx
	print_field msg_slash, print_hex, %edx
	jmp print_crlf

/*
 * The interrupt handler (under isr): acknowledges whatever the device has
 * pending (so the level drops before the EOI makes the remote resample),
 * counts software interrupts (cause bit 0) and, while timing, their
 * latency. An entry with nothing pending is a level left over from an
 * earlier ACK made with interrupts off: it only needs the EOI.
 */
irq_handler:
	rdtsc
	mov %eax, %esi
	mov $REG_IRQ_STATUS, %bx
	call dev_read
	test %eax, %eax
	jz 2f
	mov %eax, %ecx
	mov $REG_IRQ_ACK, %bx
	call dev_write
	test $1, %cl
	jz 2f
	incw irq_got
	cmpb $0, timing
	je 2f
	sub raise_tsc, %esi
	add %esi, cycles_lo
	adcl $0, cycles_hi
	incw timed
2:	ret

/*
 * Raises IRQS_PER_PHASE interrupts one at a time through the current BAR,
 * each awaited until IRQ_DEADLINE; stops at the first one that does not
 * come, after ACKing it so the line is low again. ax = interrupts taken.
 */
irq_phase:
	movw $0, irq_got
	cmpb $15, irq_line		/* setup_pic found no line to take */
	ja 9f
	xor %di, %di
1:	cmp $IRQS_PER_PHASE, %di
	jae 9f
	cli
	rdtsc
	mov %eax, raise_tsc
	mov $REG_IRQ_RAISE, %bx
	mov $1, %eax
	call dev_write
	sti
2:	cmp irq_got, %di
	jb 3f
	rdtsc
	sub raise_tsc, %eax
	cmp $IRQ_DEADLINE, %eax
	jb 2b
	cli
	/* Interrupts could still slip in between the check and cli. */
	cmp irq_got, %di
	jb 3f
	mov $REG_IRQ_ACK, %bx
	mov $1, %eax
	call dev_write
	jmp 9f
3:	inc %di
	jmp 1b
9:	cli
	mov irq_got, %ax
	ret

/*
 * Buffer -> guest RAM, then guest RAM -> buffer, 2 KiB each way. Cause
 * bit 1 (DMA done) is masked meanwhile: completion is polled through
 * DMA_STATUS, and an interrupt then would only be noise under KVM.
 */
dma_tests:
	mov $REG_IRQ_MASK, %bx
	mov $1, %eax
	call dev_write
	/* The pattern into the device buffer, its inverse over stale bytes in
	 * guest RAM. */
	mov bar0, %edi
	add $BUFFER, %edi
	xor %edx, %edx
	call pattern_fill
	mov $DMA_RAM, %edi
	not %edx
	call pattern_fill
	mov $1, %eax
	call dma_run
	jc 1f
	xor %edx, %edx
	call pattern_check
	jne 1f
	orb $F_DMA_TO_OK, flags
1:	/* The inverse pattern into guest RAM, back into the buffer. */
	mov $DMA_RAM, %edi
	mov $0xffffffff, %edx
	call pattern_fill
	mov $2, %eax
	call dma_run
	jc 2f
	mov bar0, %edi
	add $BUFFER, %edi
	call pattern_check
	jne 2f
	orb $F_DMA_FROM_OK, flags
2:	mov $REG_IRQ_MASK, %bx
	mov $0xffffffff, %eax
	call dev_write
	mov flags, %al
	and $(F_DMA_TO_OK | F_DMA_FROM_OK), %al
	print_field msg_dma, print_hex_byte
	jmp print_crlf

/* DMA_CMD %eax over DMA_RAM, full buffer; CF set unless DMA_STATUS = 0
 * and the done cause (bit 1) was raised, which is then ACKed. */
dma_run:
	push %eax
	mov $REG_DMA_ADDR_LO, %bx
	mov $DMA_RAM, %eax
	call dev_write
	mov $REG_DMA_ADDR_HI, %bx
	xor %eax, %eax
	call dev_write
	mov $REG_DMA_LEN, %bx
	mov $DMA_SIZE, %eax
	call dev_write
	pop %eax
	mov $REG_DMA_CMD, %bx
	call dev_write
	mov $REG_DMA_STATUS, %bx
	call dev_read
	test %eax, %eax
	jnz 1f
	mov $REG_IRQ_STATUS, %bx
	call dev_read
	test $2, %al
	jz 1f
	mov $REG_IRQ_ACK, %bx
	mov $2, %eax
	call dev_write
	clc
	ret
1:	stc
	ret

/* Non-reset values into SCRATCH and IRQ_MASK, read back so a failed
 * write is not mistaken for a working reset. */
arm_reset_check:
	movb $1, via_mmio
	mov $REG_SCRATCH, %bx
	mov $SCRATCH_VALUE, %eax
	call dev_write
	mov $REG_IRQ_MASK, %bx
	mov $MASK_VALUE, %eax
	call dev_write
	mov $REG_SCRATCH, %bx
	call dev_read
	cmp $SCRATCH_VALUE, %eax
	jne 1f
	mov $REG_IRQ_MASK, %bx
	call dev_read
	cmp $MASK_VALUE, %eax
	jne 1f
	orb $F_ARMED_OK, flags
1:	ret

save_results:
	mov $CM_DEVICES, %al
	mov dev_count, %ah
	call cmos_write
	mov $CM_IRQ_MMIO, %al
	mov irq_mmio, %ah
	call cmos_write
	mov $CM_IRQ_PIO, %al
	mov irq_pio, %ah
	call cmos_write
	mov $CM_FLAGS, %al
	mov flags, %ah
	call cmos_write
	call cycles_per_irq
	mov %eax, %ebx
	mov $CM_CYCLES, %cl
1:	mov %cl, %al
	mov %bl, %ah
	call cmos_write
	shr $8, %ebx
	inc %cl
	cmp $CM_CYCLES + 4, %cl
	jb 1b
	mov $CM_MARKER, %al
	mov $BOOT_MARKER, %ah
	call cmos_write
	ret

load_results:
	mov $CM_DEVICES, %al
	call cmos_read
	xor %ah, %ah
	mov %ax, dev_count
	mov $CM_IRQ_MMIO, %al
	call cmos_read
	xor %ah, %ah
	mov %ax, irq_mmio
	mov $CM_IRQ_PIO, %al
	call cmos_read
	xor %ah, %ah
	mov %ax, irq_pio
	mov $CM_FLAGS, %al
	call cmos_read
	mov %al, flags
	xor %ebx, %ebx
	mov $CM_CYCLES + 3, %cl
1:	mov %cl, %al
	call cmos_read
	shl $8, %ebx
	mov %al, %bl
	dec %cl
	cmp $CM_CYCLES, %cl
	jge 1b
	mov %ebx, saved_cycles
	ret

/* eax = mean TSC cycles from IRQ_RAISE to the handler, 0 if none came. */
cycles_per_irq:
	movzwl timed, %ecx
	xor %eax, %eax
	test %ecx, %ecx
	jz 1f
	mov cycles_lo, %eax
	mov cycles_hi, %edx
	div %ecx
1:	ret

report_device:
	print_field msg_found, print_hex, bar0
	print_field msg_bar1, print_hex, bar1, movzwl
	print_field msg_irq, print_dec, irq_line, movzbl
	jmp print_crlf

report_irqs:
	print_field msg_irqs, print_dec, irq_mmio, movzwl
	print_field msg_slash, print_dec, irq_pio, movzwl
	jmp print_crlf

/* The one machine-readable line, all_ok cleared by any failed check; the
 * run ends on it. */
print_result:
	call begin_result
	cmpw $0, dev_count
	jne 1f
	movb $0, all_ok
	jmp end_result
1:	testb $F_ID_OK, flags
	jnz 2f
	movb $0, all_ok
2:	print_field msg_irq_mmio, print_count, irq_mmio, movzwl
	print_field msg_irq_pio, print_count, irq_pio, movzwl
	mov flags, %al
	and $F_DMA_TO_OK, %al
	print_field msg_dma_to, print_flag
	mov flags, %al
	and $F_DMA_FROM_OK, %al
	print_field msg_dma_from, print_flag
	print_field msg_cycles, print_dec, saved_cycles
	cmpl $0, saved_cycles
	jne 3f
	movb $0, all_ok
3:	print_field msg_reset, print_flag, reset_ok, movzbl
	jmp end_result

/* "%ax/16", clearing all_ok unless every interrupt came. */
print_count:
	cmp $IRQS_PER_PHASE, %ax
	je 1f
	movb $0, all_ok
1:	movzwl %ax, %eax
	call print_dec
	mov $msg_of, %si
	call print
	ret

/* al as two hex digits. */
print_hex_byte:
	push %ax
	shr $4, %al
	call print_nibble
	pop %ax
	jmp print_nibble

	.include "common/stage2.inc"

dev_count:	.word 0
dev_address:	.long 0
bar0:		.long 0
bar1:		.word 0
irq_line:	.byte 0xff
via_mmio:	.byte 0
timing:		.byte 0
flags:		.byte 0
reset_ok:	.byte 0
all_ok:		.byte 0
irq_got:	.word 0
irq_mmio:	.word 0
irq_pio:	.word 0
timed:		.word 0
raise_tsc:	.long 0
cycles_lo:	.long 0
cycles_hi:	.long 0
saved_cycles:	.long 0

msg_stage2:	.asciz "iohub-boot: stage 2 running\r\n"
msg_second:	.asciz "iohub-boot: second boot, checking the reset\r\n"
msg_no_device:	.asciz "iohub-boot: no testdev\r\nIOHUB-RESULT devices=0 status=fail\r\n"
msg_found:	.asciz "iohub-boot: testdev bar0="
msg_bar1:	.asciz " bar1="
msg_irq:	.asciz " irq="
msg_bad_id:	.asciz "iohub-boot: bad ID mmio/pio "
msg_irqs:	.asciz "iohub-boot: interrupts mmio/pio "
msg_dma:	.asciz "iohub-boot: dma flags 0x"
msg_resetting:	.asciz "iohub-boot: resetting\r\n"
msg_result:	.asciz "IOHUB-RESULT devices="
msg_irq_mmio:	.asciz " irq_mmio="
msg_irq_pio:	.asciz " irq_pio="
msg_of:		.asciz "/16"
msg_dma_to:	.asciz " dma_to_guest="
msg_dma_from:	.asciz " dma_from_guest="
msg_cycles:	.asciz " cycles_per_irq="
msg_reset:	.asciz " reset="
msg_slash:	.asciz "/"

stage2_end:
	/* Sectors after the boot sector, for its loader. */
	.set STAGE2_SECTORS, (stage2_end - stage2 + 511) / 512
