/*
 * iohub edu guest: a real-mode program SeaBIOS boots from a 1.44 MB floppy
 * (image built by lib/guest/boot_image.ts). It finds QEMU's edu device,
 * served by iohub behind x-pci-proxy-dev, by scanning PCI config space,
 * checks its ID and liveness registers, computes 10! with the completion
 * interrupt, moves 4 KiB from guest RAM through the DMA buffer and back
 * with the DMA interrupt, prints one `IOHUB-RESULT` line on COM1 and ends
 * the run through isa-debug-exit (0 pass, 1 fail).
 *
 * Interrupts reach a guest only under KVM (QEMU's proxy registers its
 * irqfd with KVM alone). Each completion is awaited with interrupts on
 * while IRQ_STATUS is polled; once the device shows it done, the interrupt
 * gets a grace period, after which the guest acknowledges the cause itself
 * and reports `polled` instead of `irq`.
 *
 * Memory: the boot sector at 0x7c00 loads the rest right after itself;
 * the stack grows down from 0x7c00; DMA uses 0x20000 (source) and 0x21000
 * (destination).
 */
	.code16

	.set PCI_VENDOR_DEVICE, 0x11e81234	/* edu */
	.set PCI_COMMAND_BITS, 0x0006	/* memory, bus master (edu DMAs) */
	.set EDU_ID, 0x010000ed
	.set REG_ID, 0x00
	.set REG_LIVENESS, 0x04
	.set REG_FACTORIAL, 0x08
	.set REG_STATUS, 0x20
	.set REG_IRQ_STATUS, 0x24
	.set REG_IRQ_ACK, 0x64
	.set REG_DMA_SRC, 0x80
	.set REG_DMA_DST, 0x88
	.set REG_DMA_COUNT, 0x90
	.set REG_DMA_CMD, 0x98
	.set STATUS_IRQFACT, 0x80
	.set IRQ_FACT, 0x001
	.set IRQ_DMA, 0x100
	.set DMA_RUN, 0x1
	.set DMA_TO_RAM, 0x2
	.set DMA_IRQ, 0x4
	.set DMA_BUFFER, 0x40000
	.set DMA_SIZE, 4096

	.set FACT_N, 10
	.set FACT_RESULT, 3628800
	.set LIVE_VALUE, 0x1234abcd
	.set LIVE_INVERSE, 0xedcb5432
	.set RAM_SRC, 0x20000
	.set RAM_DST, 0x21000

	/* Deadlines in units of 2^20 TSC cycles (about 0.5 ms at 2 GHz): a
	 * completion (edu's DMA takes 100 ms) may take ~10 s on a loaded
	 * machine; an interrupt after the device shows completion ~100 ms,
	 * far beyond any delivery under KVM. */
	.set DONE_UNITS, 20000
	.set GRACE_UNITS, 200

	/* await_cause results */
	.set BY_NONE, 0
	.set BY_POLL, 1
	.set BY_IRQ, 2

	.include "common/boot_sector.inc"
msg_disk_error:
	.asciz "iohub-edu: disk read failed\r\n"

	.org 510
	.word 0xaa55

/* ---- Everything below is loaded by the boot sector. ---- */
stage2:
	call find_device
	call report_device
	call check_id
	call check_liveness
	call setup_pic
	call fact_test
	call dma_test
	jmp print_result

check_id:
	mov $REG_ID, %bx
	call mmio_read
	mov %eax, id_value
	cmp $EDU_ID, %eax
	jne 1f
	movb $1, id_ok
1:	ret

/* Liveness answers with the inversion of what was written, both ways. */
check_liveness:
	mov $REG_LIVENESS, %bx
	mov $LIVE_VALUE, %eax
	call mmio_write
	call mmio_read
	cmp $LIVE_INVERSE, %eax
	jne 1f
	mov $LIVE_INVERSE, %eax
	call mmio_write
	call mmio_read
	cmp $LIVE_VALUE, %eax
	jne 1f
	movb $1, live_ok
1:	ret

/*
 * The interrupt handler (under isr): records and acknowledges every
 * pending cause (so the level drops before the EOI makes the remote
 * resample). An entry with nothing pending is a level the main loop
 * acknowledged meanwhile.
 */
irq_handler:
	mov $REG_IRQ_STATUS, %bx
	call mmio_read
	test %eax, %eax
	jz 1f
	or %eax, irq_seen
	mov $REG_IRQ_ACK, %bx
	call mmio_write
1:	ret

/* Starts the deadline clock. */
tsc_start:
	rdtsc
	mov %eax, t0_lo
	mov %edx, t0_hi
	ret

/* eax = 2^20-cycle units since tsc_start. */
tsc_units:
	push %edx
	rdtsc
	sub t0_lo, %eax
	sbb t0_hi, %edx
	shrd $20, %edx, %eax
	pop %edx
	ret

/*
 * Waits for interrupt cause %ecx with interrupts on, polling IRQ_STATUS
 * meanwhile. al = BY_IRQ when the handler saw it, BY_POLL when the device
 * showed it pending but no interrupt came within the grace period (the
 * cause is then acknowledged here), BY_NONE when the device never finished.
 * Returns with interrupts off.
 */
await_cause:
	mov %ecx, cause
	not %ecx
	and %ecx, irq_seen
	movl $DONE_UNITS, limit
	call tsc_start
	sti
1:	mov cause, %eax
	test %eax, irq_seen
	jnz 4f
	call tsc_units
	cmp limit, %eax
	jae 3f
	cmpl $DONE_UNITS, limit
	jne 1b				/* in the grace period: only wait */
	mov $REG_IRQ_STATUS, %bx
	call mmio_read
	test cause, %eax
	jz 1b
	movl $GRACE_UNITS, limit
	call tsc_start
	jmp 1b
3:	cli
	/* An interrupt may have slipped in between the check and cli. */
	mov cause, %eax
	test %eax, irq_seen
	jnz 4f
	cmpl $GRACE_UNITS, limit
	jne 5f
	mov $REG_IRQ_ACK, %bx
	call mmio_write
	mov $BY_POLL, %al
	ret
4:	cli
	mov $BY_IRQ, %al
	ret
5:	mov $BY_NONE, %al
	ret

/* 10! with STATUS bit 7 asking for the completion interrupt. */
fact_test:
	mov $REG_STATUS, %bx
	mov $STATUS_IRQFACT, %eax
	call mmio_write
	mov $REG_FACTORIAL, %bx
	mov $FACT_N, %eax
	call mmio_write
	mov $IRQ_FACT, %ecx
	call await_cause
	mov %al, fact_by
	mov $REG_FACTORIAL, %bx
	call mmio_read
	mov %eax, fact_value
	mov $REG_STATUS, %bx
	xor %eax, %eax
	call mmio_write
	print_field msg_fact, print_dec, fact_value
	jmp print_crlf

/* DMA of DMA_SIZE bytes from %esi to %edi with command %eax (RUN and IRQ
 * included); al = how the completion was seen, as await_cause. */
dma_run:
	push %eax
	mov $REG_DMA_SRC, %bx
	mov %esi, %eax
	call mmio_write
	mov $REG_DMA_DST, %bx
	mov %edi, %eax
	call mmio_write
	mov $REG_DMA_COUNT, %bx
	mov $DMA_SIZE, %eax
	call mmio_write
	pop %eax
	mov $REG_DMA_CMD, %bx
	call mmio_write
	mov $IRQ_DMA, %ecx
	call await_cause
	ret

/*
 * The pattern from RAM_SRC into the device buffer, then from the buffer to
 * RAM_DST (its inverse there first, so a transfer that never came fails),
 * compared there; the run bit must have cleared.
 */
dma_test:
	mov $RAM_SRC, %edi
	xor %edx, %edx
	call pattern_fill
	mov $RAM_DST, %edi
	not %edx
	call pattern_fill
	mov $RAM_SRC, %esi
	mov $DMA_BUFFER, %edi
	mov $DMA_RUN | DMA_IRQ, %eax
	call dma_run
	mov %al, dma_in_by
	mov $DMA_BUFFER, %esi
	mov $RAM_DST, %edi
	mov $DMA_RUN | DMA_TO_RAM | DMA_IRQ, %eax
	call dma_run
	mov %al, dma_out_by
	mov $REG_DMA_CMD, %bx
	call mmio_read
	cmp $DMA_TO_RAM | DMA_IRQ, %eax
	jne 3f
	mov $RAM_DST, %edi
	xor %edx, %edx
	call pattern_check
	jne 3f
	movb $1, dma_ok
3:	ret

report_device:
	print_field msg_found, print_hex, bar0
	print_field msg_irq, print_dec, irq_line, movzbl
	jmp print_crlf

/* The one machine-readable line, all_ok cleared by any failed check; the
 * run ends on it. */
print_result:
	call begin_result
	print_field msg_id, print_flag, id_ok, movzbl
	print_field msg_live, print_flag, live_ok, movzbl
	print_field msg_fact_field, print_dec, fact_value
	cmpl $FACT_RESULT, fact_value
	je 1f
	movb $0, all_ok
1:	print_field msg_fact_irq, print_by, fact_by, movzbl
	print_field msg_dma, print_flag, dma_ok, movzbl
	/* The weaker of the two transfers' completions. */
	mov dma_in_by, %al
	cmp dma_out_by, %al
	jbe 2f
	mov dma_out_by, %al
2:	print_field msg_dma_irq, print_by
	jmp end_result

/* How a completion was seen (%al, as await_cause): "irq", "polled" or
 * "none" (clearing all_ok). */
print_by:
	mov $msg_irq_word, %si
	cmp $BY_IRQ, %al
	je 1f
	mov $msg_polled, %si
	cmp $BY_POLL, %al
	je 1f
	movb $0, all_ok
	mov $msg_none, %si
1:	call print
	ret

	.include "common/stage2.inc"

	.p2align 2
dev_count:	.word 0
dev_address:	.long 0
bar0:		.long 0
id_value:	.long 0
fact_value:	.long 0
irq_seen:	.long 0
cause:		.long 0
limit:		.long 0
t0_lo:		.long 0
t0_hi:		.long 0
irq_line:	.byte 0xff
id_ok:		.byte 0
live_ok:	.byte 0
dma_ok:		.byte 0
fact_by:	.byte 0
dma_in_by:	.byte 0
dma_out_by:	.byte 0
all_ok:		.byte 0

msg_stage2:	.asciz "iohub-edu: stage 2 running\r\n"
msg_no_device:	.asciz "iohub-edu: no edu device\r\nIOHUB-RESULT device=edu devices=0 status=fail\r\n"
msg_found:	.asciz "iohub-edu: edu bar0="
msg_irq:	.asciz " irq="
msg_fact:	.asciz "iohub-edu: 10! = "
msg_result:	.asciz "IOHUB-RESULT device=edu devices="
msg_id:		.asciz " id="
msg_live:	.asciz " liveness="
msg_fact_field:	.asciz " factorial="
msg_fact_irq:	.asciz " fact_irq="
msg_dma:	.asciz " dma="
msg_dma_irq:	.asciz " dma_irq="
msg_irq_word:	.asciz "irq"
msg_polled:	.asciz "polled"
msg_none:	.asciz "none"

stage2_end:
	/* Sectors after the boot sector, for its loader. */
	.set STAGE2_SECTORS, (stage2_end - stage2 + 511) / 512
