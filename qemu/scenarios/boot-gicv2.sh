# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="boot on virt with a GICv2 interrupt controller: its frames are found, and a guest runs its probes on that machine"
TIMEOUT=40
MACHINE=virt,virtualization=on,gic-version=2
INITRD=$GUEST_BIN
APPEND="log=debug guest.bootargs=test=probes"
EXPECT_EXIT=0
EXPECT=(
    # The four frames, at virt's GICv2 addresses, from the device tree.
    'platform: gic: GICv2 GICD \[0x8000000\.\.0x8010000\) GICC \[0x8010000\.\.0x8020000\) GICH \[0x8030000\.\.0x8040000\) GICV \[0x8040000\.\.0x8050000\)'
    '\[guest\] GUEST probes ldr from stack guard page -> data abort .* ok'
    '\[guest\] GUEST probes blr to unmapped -> .* ok'
    '\[guest\] GUEST result: PASS'
    'vm: the guest powered off after [0-9]+ exits'
    'stopping: system off'
)
REJECT=('panicked at' ' FAIL' 'GUEST unexpected')
