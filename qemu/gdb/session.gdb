# Batch commands for the gdb scenario, run after scripts/debug stopped at
# the hypervisor's rust_entry on the default machine: what a user does, each
# step marked with a GDB-CHECK line that qemu/scenarios/gdb.sh looks for.

echo GDB-CHECK before the VM\n
hv-vcpu
hv-stage2 0x40000000

# The guest's first instruction, one instruction step, stage 2 there.
break *0x40000000
continue
echo GDB-CHECK guest entry reached\n
info registers pc
stepi
echo GDB-CHECK stepped\n
info registers pc
hv-stage2 0x40000000
hv-stage2 0x09000000
delete

# A guest function by name, then a source-level step in the guest.
break guest_payload::arch::wc::run
continue
echo GDB-CHECK guest function reached\n
info line *$pc
step
echo GDB-CHECK guest step\n
info line *$pc
delete

# The hypervisor's exit path, by the documented breakpoints.
hv-break-exit
continue
echo GDB-CHECK exit handler reached\n
hv-vcpu 0
hv-vcpu 1
continue
echo GDB-CHECK second exit\n
hv-exits
hv-threads
delete
hv-break-mmio
continue
echo GDB-CHECK mmio dispatch reached\n
bt 1
delete
hv-break-inject
delete

# The guest's Memory Space Enable maps BAR0 (32-bit), then BAR2 (64-bit).
hv-break-bar
continue
continue
finish
echo GDB-CHECK BAR mapped\n
hv-stage2 0x8000000000
hv-stage2 0 0x10000000000
delete

# A secondary vCPU (the scenario boots two CPUs). The test guest starts
# none, so gdb makes vCPU 0 ask for one: PSCI CPU_ON(vCPU 1, entry
# 0x40000000) through an HVC written over the guest's image header (read
# only by the loader, long ago), with vCPU 1 entering a loop of HVCs there;
# then vCPU 0 goes on from where it was. Each of vCPU 1's HVCs is an exit.
# vCPU 0 must be in the guest for gdb to write guest memory: it stops in
# the guest's verdict on its first measurement.
break guest_payload::wc::judge
continue
delete
set language c
set $saved_pc = $pc
set $saved_x0 = $x0
set $saved_x1 = $x1
set $saved_x2 = $x2
set $saved_x3 = $x3
set $saved_word = *(unsigned int *)0x40000008
set *(unsigned int *)0x40000000 = 0xd4000002
set *(unsigned int *)0x40000004 = 0x17ffffff
set *(unsigned int *)0x40000008 = 0xd4000002
set $x0 = 0xc4000003
set $x1 = 1
set $x2 = 0x40000000
set $x3 = 0
set $pc = 0x40000008
tbreak *0x4000000c
continue
echo GDB-CHECK CPU_ON returned\n
printf "CPU_ON -> %d\n", (long)$x0
set *(unsigned int *)0x40000008 = $saved_word
set $pc = $saved_pc
set $x0 = $saved_x0
set $x1 = $saved_x1
set $x2 = $saved_x2
set $x3 = $saved_x3
set language auto
break hypervisor::vm::machine::vcpu_exit thread 2
continue
delete
echo GDB-CHECK secondary vCPU\n
hv-threads
hv-vcpu 1
hv-exits

# The guest runs to its end; then the helpers say the machine is gone.
continue
echo GDB-CHECK after the end\n
hv-vcpu
hv-stage2 0x40000000
hv-exits
