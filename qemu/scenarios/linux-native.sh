# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034,SC2054

# Debian 12's stock arm64 kernel and the project's initramfs (scripts/linux-
# guest) booted straight on QEMU virt, no hypervisor: the reference the
# hypervisor's Linux runs are compared with. /init maps ivshmem's BAR2
# through sysfs resource2 (Linux: Device-nGnRE) and resource2_wc (Normal-NC)
# with wc-probe; an unaligned load must fault (SIGBUS) on the first and not
# on the second, and both patterns must be in ivshmem's backing file.
# -smp 2: QEMU 10.0.2 raises the alignment fault on Device memory only then
# (with -smp 1 the same load reads without a fault; see the fresh-machine
# issue).

DESCRIPTION="stock Debian arm64 Linux + busybox initramfs at EL1, no hypervisor: wc-probe on ivshmem resource2/resource2_wc"
TIMEOUT=60
MACHINE=virt,gic-version=3
# pauth-impdef: QEMU's own pointer-authentication hash, much faster under
# TCG than the architected QARMA5 the kernel would otherwise spend its time in.
CPU=max,pauth-impdef=on
MEM=1G
SMP=2
LINUX_DIR=$OUT/linux
KERNEL=$LINUX_DIR/Image
ELF=""
INITRD=$LINUX_DIR/initramfs.cpio
APPEND="console=ttyAMA0 earlycon=pl011,0x9000000 loglevel=7"
SCENARIO_OUT=$OUT/scenarios/linux-native
EXPECT_EXIT=0
EXPECT=(
    'Linux version 6\.1\.[0-9]+-[0-9]+-cloud-arm64'
    'smp: Brought up 1 node, 2 CPUs'
    'LINUX-INIT up: .* 2 CPU\(s\)'
    'LINUX-PCI 0000:00:02\.0 0x1af4:0x1110 class 0x050000'
    'LINUX-WC-RESULT dev=0000:00:02\.0 bar=2 map=resource2 .* verify=ok unaligned=sigbus'
    'LINUX-WC-RESULT dev=0000:00:02\.0 bar=2 map=resource2_wc .* verify=ok unaligned=ok'
    'LINUX-WC-SUMMARY ok'
    'reboot: Power down'
)
REJECT=(
    'Kernel panic'
    'LINUX-WC-SUMMARY FAIL'
    'error='
)

prepare() {
    "$HV_ROOT/scripts/linux-guest" || return 1
    mkdir -p "$SCENARIO_OUT"
    rm -f "$SCENARIO_OUT/ivshmem.bin"
    EXTRA_ARGS+=(-nic none
        -object "memory-backend-file,size=64M,id=hostmem,share=on,mem-path=$SCENARIO_OUT/ivshmem.bin"
        "${IVSHMEM_DEVICE[@]}")
}

check() {
    python3 "$HV_ROOT/scripts/lib/check-wc-pattern" "$1" "$SCENARIO_OUT/ivshmem.bin"
}
