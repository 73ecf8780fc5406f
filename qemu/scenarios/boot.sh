# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="boot on virt with EL2 and GICv3: the CPU's features, the platform's addresses and the memory map are read right, and with no guest the hypervisor stops cleanly"
TIMEOUT=30
MACHINE=virt,virtualization=on,gic-version=3
CPU=max
MEM=1G
SMP=1
APPEND="log=debug"
EXPECT_EXIT=0
# Each line holds values that come from decoding the machine (QEMU's -cpu
# max ID registers, its device tree, -m 1G), not just words always printed.
EXPECT=(
    'hypervisor .* at EL2, loaded at 0x40200000 '
    "cpu: QEMU 'max' \(MIDR 0x000f0510\), PARange 6 \(48-bit PA\), FWB yes, DIC yes, IDC yes, VMID 16-bit"
    'platform: memory: 1024 MiB'
    'platform:   \[0x40000000\.\.0x80000000\)'
    'platform: uart: pl011 at \[0x9000000\.\.0x9001000\) \(pl011@9000000\)'
    'platform: gic: GICv3 GICD \[0x8000000\.\.0x8010000\) GICR \[0x80a0000\.\.0x9000000\)'
    'platform: timer: INTIDs sec-phys 29 phys 30 virt 27 hyp-phys 26 hyp-virt 28'
    'platform: PCIe: pcie@10000000 ECAM \[0x4010000000\.\.0x4020000000\) buses 0-255'
    'platform: psci: smc'
    'platform: initrd: none'
    'vm: no guest image \(the loader gave no initrd\): nothing to run'
    'stopping: system off'
)
