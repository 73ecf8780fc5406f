# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="100000 seeded random hostile guest actions with ivshmem passed through, each recovered from; the hypervisor, the guest's RAM and the physical BARs survive"
TIMEOUT=120
INITRD=$GUEST_BIN
APPEND="pci.passthrough=1af4:1110 guest.bootargs=test=chaos -- seed=1 actions=100000"
EXTRA_ARGS=("${IVSHMEM_RAM[@]}" "${IVSHMEM_DEVICE[@]}")
EXPECT_EXIT=0
EXPECT=(
    'GUEST chaos: BAR 00:00\.0 #2 at 0x[0-9a-f]+, 0x4000000 bytes'
    'GUEST chaos: physical BAR of 00:00\.0 #0: unchanged'
    'GUEST chaos: physical BAR of 00:00\.0 #2: unchanged'
    'GUEST chaos: canary intact'
    'CHAOS seed=1 actions=100000 aborts=[0-9]+ undefs=[0-9]+ hypervisor=alive'
    '\[guest\] GUEST result: PASS'
)
REJECT=('panicked at' 'GUEST chaos FAIL' 'GUEST unexpected')
