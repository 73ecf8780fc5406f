# shellcheck shell=bash
# The variables are read by the sourcing scripts.
# shellcheck disable=SC2034
# The machine scripts/run boots by default (the passthrough demo) and the
# options that change it, shared by scripts/run and scripts/debug so that
# both boot the same thing. Sourced after scripts/lib/scenario.sh.
#
#   machine_option ARGS...   parse one option (sets MACHINE_SHIFT)
#   machine_options_help     their --help lines
#   machine_demo             set the scenario variables to the demo machine
#   machine_apply_options    apply --cpu, --gic, --append, --initrd, ... on top

# Where the hypervisor places the guest's RAM (hypervisor/src/vm/layout.rs,
# RAM_BASE): the test guest's ELF, linked at 0, runs from there.
GUEST_RAM_BASE=0x40000000

OPT_CPU="" OPT_SMP="" OPT_GIC="" OPT_APPEND="" OPT_INITRD="" OPT_NO_INITRD=0
OPT_DEVICES=ivshmem,bochs OPT_POLICY=""
OPT_QEMU_ARGS=()
MACHINE_SHIFT=0

# machine_option ARGS...: when $1 is one of the options below, records it,
# sets MACHINE_SHIFT to the number of arguments it took and returns 0;
# returns 1 for any other argument.
machine_option() {
    case $1 in
    --cpu | --smp | --gic | --append | --initrd | --qemu-arg | --devices | --policy)
        (($# >= 2)) || die "$1 needs a value"
        case $1 in
        --cpu) OPT_CPU=$2 ;;
        --smp)
            [[ $2 =~ ^[1-9][0-9]*$ ]] || die "--smp takes a number of CPUs"
            OPT_SMP=$2
            ;;
        --gic)
            [[ $2 == 2 || $2 == 3 ]] || die "--gic takes 2 or 3"
            OPT_GIC=$2
            ;;
        --append) OPT_APPEND=$2 ;;
        --initrd) OPT_INITRD=$2 ;;
        --qemu-arg) OPT_QEMU_ARGS+=("$2") ;;
        --devices) OPT_DEVICES=$2 ;;
        --policy)
            [[ $2 =~ ^(device|guest-choice|cacheable)$ ]] ||
                die "--policy takes device, guest-choice or cacheable"
            OPT_POLICY=$2
            ;;
        esac
        MACHINE_SHIFT=2
        ;;
    --no-initrd)
        OPT_NO_INITRD=1
        MACHINE_SHIFT=1
        ;;
    *) return 1 ;;
    esac
}

machine_options_help() {
    cat <<EOF_HELP
  --cpu MODEL        -cpu model (default: max)
  --smp N            physical CPUs, one per vCPU (default: $DEFAULT_SMP)
  --gic 2|3          GIC version of the virt machine (default: 3)
  --append ARGS      more bootargs for the hypervisor (e.g. "log=debug")
  --devices LIST     devices to pass through: ivshmem, bochs, comma-separated,
                     or none (default: ivshmem,bochs)
  --policy P         BAR policy for the passed-through devices: device,
                     guest-choice or cacheable (default: by BAR type:
                     guest-choice for prefetchable BARs, device otherwise)
  --initrd FILE      -initrd file (default: out/guest-payload.bin if built)
  --no-initrd        boot without an initrd
  --qemu-arg ARG     extra QEMU argument; repeat for more
EOF_HELP
}

# machine_demo: the scenario variables for the default machine: the test
# guest with the devices of --devices passed through under --policy.
machine_demo() {
    MACHINE=$DEFAULT_MACHINE CPU=$DEFAULT_CPU MEM=$DEFAULT_MEM SMP=$DEFAULT_SMP
    KERNEL=$HV_BIN ELF=$HV_ELF INITRD="" APPEND="" EXTRA_ARGS=()
    [[ -f $GUEST_BIN ]] && INITRD=$GUEST_BIN
    local devices=$OPT_DEVICES d
    local -a pass=() attr=() dev=()
    [[ $devices == none ]] && devices=""
    IFS=, read -ra dev <<<"$devices"
    for d in "${dev[@]}"; do
        case $d in
        ivshmem)
            EXTRA_ARGS+=("${IVSHMEM_RAM[@]}" "${IVSHMEM_DEVICE[@]}")
            pass+=(1af4:1110) attr+=(00:02.0)
            ;;
        bochs)
            EXTRA_ARGS+=("${BOCHS_DEVICE[@]}")
            pass+=(1234:1111) attr+=(00:03.0)
            ;;
        *) die "unknown device '$d' for --devices (ivshmem, bochs, none)" ;;
        esac
    done
    if ((${#pass[@]})); then
        APPEND="pci.passthrough=$(IFS=,; echo "${pass[*]}")"
        if [[ -n $OPT_POLICY ]]; then
            APPEND+=" pci.attr=$(printf "%s:$OPT_POLICY," "${attr[@]}")"
            APPEND=${APPEND%,}
        fi
    fi
}

# machine_apply_options: --cpu, --smp, --gic, --append, --initrd, --no-initrd and
# --qemu-arg applied to the machine set so far (the demo or a scenario's).
machine_apply_options() {
    [[ -n $OPT_CPU ]] && CPU=$OPT_CPU
    [[ -n $OPT_SMP ]] && SMP=$OPT_SMP
    if [[ -n $OPT_GIC ]]; then
        if [[ $MACHINE == *gic-version=* ]]; then
            MACHINE=$(sed -E "s/gic-version=[^,]*/gic-version=$OPT_GIC/" <<<"$MACHINE")
        else
            MACHINE+=",gic-version=$OPT_GIC"
        fi
    fi
    [[ -n $OPT_APPEND ]] && APPEND="${APPEND:+$APPEND }$OPT_APPEND"
    [[ -n $OPT_INITRD ]] && INITRD=$OPT_INITRD
    ((OPT_NO_INITRD)) && INITRD=""
    EXTRA_ARGS+=("${OPT_QEMU_ARGS[@]}")
    return 0
}

# guest_load_address IMAGE: the IPA where the hypervisor places a guest image
# (hypervisor/src/vm/image.rs, placement): an arm64 Image ("ARM\x64" at byte
# 56) at its text_offset from the 2 MiB-aligned start of guest RAM, anything
# else at the start of guest RAM.
guest_load_address() {
    local img=$1 magic text_offset=0
    magic=$(od -An -tx1 -j56 -N4 "$img" 2>/dev/null | tr -d ' \n')
    if [[ $magic == 41524d64 ]]; then
        text_offset=$(od -An -tu8 -j8 -N8 "$img" 2>/dev/null | tr -d ' \n')
    fi
    printf '0x%x\n' $((GUEST_RAM_BASE + ${text_offset:-0}))
}
