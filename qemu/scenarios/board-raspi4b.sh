# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

# QEMU's raspi4b with the Raspberry Pi 4 device tree Debian ships
# (qemu/boards/raspi4b-dtb fetches and caches it). QEMU starts an Image at
# EL2 at 0x200000 with the DT at x0, fills /memory in (the DT's memory@0 has
# size 0 for the firmware to fill) and removes the nodes of devices it does
# not model, the brcm,bcm2711-pcie host bridge among them: the report's
# "not generic ECAM: passthrough off" line for it is covered by the host
# tests on qemu/fixtures/rpi4.dts. There is no EL3 firmware and no /psci
# (CPUs use spin-table), so the hypervisor stops through semihosting.
#
# The kernel's DT names the mini UART as console (stdout-path "serial1");
# this copy names the PL011 (serial0), as a board does with
# dtoverlay=disable-bt, so the console is QEMU's first -serial and the PL011
# driver runs at its translated address (0x7e201000 on /soc -> 0xfe201000).
# check() also boots the DT as shipped: the mini UART has no driver, so the
# whole boot must go through semihosting (the warning naming it, the guest's
# verdict, the stop).

DESCRIPTION="Raspberry Pi 4 (QEMU raspi4b, Debian's bcm2711-rpi-4-b.dtb): GICv2, PL011 under /soc"
TIMEOUT=60
MACHINE=raspi4b
CPU=cortex-a72
MEM=2G
SMP=4
APPEND="log=debug guest.mem=64M guest.bootargs=test=image"
INITRD=$GUEST_BIN
EXPECT_EXIT=0
EXPECT=(
    'hypervisor .* at EL2, loaded at 0x200000'
    'platform: uart: pl011 at \[0xfe201000\.\.0xfe201200\) \(serial@7e201000\)'
    'platform: gic: GICv2 GICD \[0xff841000\.\.0xff842000\) GICC \[0xff842000\.\.0xff844000\) GICH \[0xff844000\.\.0xff846000\) GICV \[0xff846000\.\.0xff848000\)'
    'platform: psci: none'
    'platform: cpus: 4 '
    # QEMU's own note that it took the PCIe host bridge out of the DT.
    'brcm,bcm2711-pcie has been disabled'
    'pci: passthrough off: the device tree has no generic ECAM PCIe host bridge'
    '\[guest\] GUEST image: arm64 Image loaded at 0x40000000, expected 0x40000000 .* ok'
    '\[guest\] GUEST image: FNV-1a of the first [0-9]+ bytes (0x[0-9a-f]+), expected \1 ok'
    '\[guest\] GUEST result: PASS'
    'vm: the guest powered off'
    'stopping: system off'
)
REJECT=("panicked at" 'PCIe: .* ECAM \[')

RPI4_DIR=$OUT/scenarios/board-raspi4b

prepare() {
    local dtb
    dtb=$("$HV_ROOT/qemu/boards/raspi4b-dtb") || return 1
    mkdir -p "$RPI4_DIR"
    cp "$dtb" "$RPI4_DIR/shipped.dtb"
    cp "$dtb" "$RPI4_DIR/pl011-console.dtb"
    fdtput -t s "$RPI4_DIR/pl011-console.dtb" /chosen stdout-path "serial0:115200n8" || return 1
    EXTRA_ARGS+=(-dtb "$RPI4_DIR/pl011-console.dtb")
    APPEND="$APPEND -- $(image_sum "$INITRD")" || return 1
}

check() {
    local out st
    # The DT as shipped: console on the mini UART (serial1, no driver).
    out=$(timeout -k 5 30 "$QEMU_BIN" "${QEMU_COMMON_ARGS[@]}" -serial null -serial null \
        -M "$MACHINE" -cpu "$CPU" -m "$MEM" -smp "$SMP" -kernel "$KERNEL" \
        -initrd "$INITRD" -dtb "$RPI4_DIR/shipped.dtb" -append "$APPEND" </dev/null 2>&1)
    st=$?
    printf '%s\n' "--- shipped DT (mini UART console) ---" "$out" >>"$1"
    ((st == 0)) || {
        echo "shipped DT: QEMU exit status $st"
        return 1
    }
    [[ $out == *"console serial@7e215040 is 'brcm,bcm2835-aux-uart', which has no driver; using semihosting"* && $out == *'GUEST result: PASS'* && $out == *'stopping: system off'* ]] || {
        echo "shipped DT: the semihosting console did not carry the whole boot (warning naming serial@7e215040, the guest, the stop)"
        return 1
    }
}
