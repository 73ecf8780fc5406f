# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="the guest throws hostile config-space writes at ivshmem and bochs-display (pci.dma=deny): each is refused or contained, the physical BARs never move"
TIMEOUT=60
INITRD=$GUEST_BIN
APPEND="$DEMO_PASSTHROUGH pci.dma=deny guest.bootargs=test=pci-hostile -- dma=deny"
EXTRA_ARGS=("${IVSHMEM_RAM[@]}" "${IVSHMEM_DEVICE[@]}" "${BOCHS_DEVICE[@]}")
EXPECT_EXIT=0
EXPECT=(
    'GUEST pci-hostile item 26 BAR write while MSE on -> .* ok'
    'GUEST pci-hostile item 27 BAR moved onto RAM -> .* ok'
    'GUEST pci-hostile item 27 BAR moved onto the UART -> .* ok'
    'GUEST pci-hostile item 27 BAR moved outside the window -> .* ok'
    'GUEST pci-hostile item 27 BAR moved misaligned -> .* ok'
    'GUEST pci-hostile item 27 BAR moved onto another BAR -> .* ok'
    'GUEST pci-hostile item 27 legal BAR move with MSE off -> .* ok'
    'GUEST pci-hostile item 27 word written and read at the new IPA -> .* ok'
    'GUEST pci-hostile item 27 read at the old IPA -> data-abort expect data-abort ok'
    'GUEST pci-hostile item 27 physical BAR unchanged -> yes expect yes ok'
    'GUEST pci-hostile item 28 32-bit BAR sizing mask with type bits -> yes expect yes ok'
    'GUEST pci-hostile item 28 64-bit BAR sizing mask with type bits -> yes expect yes ok'
    'GUEST pci-hostile item 29 ROM BAR after writing all ones -> 0x0 expect 0x0 ok'
    'GUEST pci-hostile item 30 BAR read after MSE cleared -> data-abort expect data-abort ok'
    'GUEST pci-hostile item 31 8-byte read of the IDs -> 0xffffffffffffffff expect 0xffffffffffffffff ok'
    'GUEST pci-hostile item 31 4-byte read at 0x2 \(crosses a dword\) -> 0xffffffff .* ok'
    'GUEST pci-hostile item 32 write to vendor/device ID -> 0x11101af4 expect 0x11101af4 ok'
    'GUEST pci-hostile item 32 write to interrupt pin -> .* ok'
    'GUEST pci-hostile item 33 read of device 31 -> 0xffffffff expect 0xffffffff ok'
    'GUEST pci-hostile item 34 Status.Capabilities List -> 0x0 expect 0x0 ok'
    'GUEST pci-hostile item 34 capability pointer -> 0x0 expect 0x0 ok'
    'GUEST pci-hostile item 34 every dword in 0x40-0xfff reads 0 -> yes expect yes ok'
    'GUEST pci-hostile item 34 write to 0x40 \(MSI-X control\) ignored -> 0x0 expect 0x0 ok'
    'GUEST pci-hostile item 35 Bus Master Enable set -> 0x0 expect 0x0 ok'
    '\[guest\] GUEST result: PASS'
)
REJECT=('panicked at' ' FAIL' 'GUEST unexpected')

check() {
    local n
    n=$(grep -cE 'GUEST pci-hostile item [0-9]+ .* ok\s*$' "$1" || true)
    if [ "$n" -lt 44 ]; then
        echo "expected at least 44 checked items, saw $n"
        return 1
    fi
}
