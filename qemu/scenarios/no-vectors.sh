# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

# What a kernel does when it touches a hidden register before it has set
# VBAR_EL1: the UNDEF goes to 0x200, where nothing is mapped, and every
# fetch there aborts again. The hypervisor must name the first exception
# (the MRS, EC 0x18) and stop the VM instead of looping silently.
DESCRIPTION="a guest with VBAR_EL1 = 0 takes an UNDEF: the loop is reported with PC and ESR and the VM stopped"
TIMEOUT=30
INITRD=$GUEST_BIN
APPEND="guest.bootargs=test=no-vectors"
EXPECT_EXIT=5
EXPECT=(
    'GUEST no-vectors: MMU off, VBAR_EL1 = 0, then MRS PMCR_EL0'
    'vm: the guest has no exception vectors \(VBAR_EL1 = 0\): it took an exception at pc 0x4[0-9a-f]+ \(ESR_EL2 0x62[0-9a-f]{6}\), then the same exception at pc 0x200 \(ESR_EL2 0x82[0-9a-f]{6}\) 3 times in a row'
    'vm: stopped at guest pc 0x200: the guest loops on an exception it has no vector for'
)
REJECT=('panicked at' 'still running after the UNDEF')
