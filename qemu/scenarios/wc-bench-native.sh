# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034,SC2054

DESCRIPTION="test guest alone at EL1: assigns PCI BARs itself, measures ivshmem and bochs-display under five memory types"
TIMEOUT=40
# No virtualization=on: QEMU starts the guest at EL1, no hypervisor below.
MACHINE=virt,gic-version=3
CPU=max
MEM=1G
# QEMU's device tree lists both CPUs: the guest judges its unaligned probe
# on its own count.
SMP=$WC_SMP
KERNEL=$GUEST_BIN
ELF=$GUEST_ELF
APPEND="test=wc"
EXTRA_ARGS=(
    -device ivshmem-plain,memdev=hostmem
    -object memory-backend-ram,size=64M,id=hostmem
    -device bochs-display
)
EXPECT_EXIT=0
EXPECT=(
    'WC unaligned probe: judged \(Device must fault, Normal must not\): 2 CPUs in the device tree'
    'WC-RESULT .*policy=native s1=device-gre effective=device-gre .* unaligned=fault'
    'WC-RESULT .*policy=native s1=normal-nc effective=normal-nc .* unaligned=ok'
    'WC-SUMMARY ok'
)
REJECT=(
    'panicked at'
    'WC-SUMMARY FAIL'
    'verify=FAIL'
)

# Five lines (one per memory type) for every measured BAR, and at least the
# two memory BARs of the command line: ivshmem's shared memory (BAR2) and
# bochs-display's frame buffer (BAR0). Natively requested == effective.
check() {
    local log=$1 bars n key
    bars=$(grep -Eo 'WC-RESULT bdf=[0-9a-f:.]+ bar=[0-9]+' "$log" | sort | uniq -c)
    [[ -n $bars ]] || {
        echo "no WC-RESULT lines"
        return 1
    }
    while read -r n key; do
        ((n == 5)) || {
            echo "$key: $n WC-RESULT lines, expected 5"
            return 1
        }
    done <<<"$bars"
    n=$(wc -l <<<"$bars")
    ((n >= 2)) || {
        echo "$n BAR(s) measured, expected at least 2"
        return 1
    }
    grep -Eq 'WC pci [0-9a-f:.]+ 1af4:1110 .* BAR2 ' "$log" || {
        echo "ivshmem BAR2 not found"
        return 1
    }
    grep -Eq 'WC pci [0-9a-f:.]+ 1234:1111 .* BAR0 ' "$log" || {
        echo "bochs-display BAR0 not found"
        return 1
    }
    if grep -E '^WC-RESULT ' "$log" | grep -Ev ' s1=([a-z-]+) effective=\1 '; then
        echo "effective type differs from the requested one"
        return 1
    fi
}
