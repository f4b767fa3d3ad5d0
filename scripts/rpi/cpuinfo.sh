#!/bin/sh
# /proc/cpuinfo of a Raspberry Pi 4 (cortex-a72) or 5 (cortex-a76), one entry per host CPU (the
# guest's /sys/devices/system/cpu is the host's). Bind-mounted over the emulated root's
# /proc/cpuinfo: qemu-user passes the host's x86 one, and pytorch-cpuinfo (onnxruntime, XNNPACK)
# crashes on it. The guest's HWCAPs, what kernels are chosen on, come from QEMU_CPU.
set -eu
case "${1:-}" in
  cortex-a72)
    features="fp asimd evtstrm crc32 cpuid"; variant=0x0; part=0xd08; revision=3
    board_rev=c03111; model="Raspberry Pi 4 Model B Rev 1.1" ;;
  cortex-a76)
    features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
    variant=0x4; part=0xd0b; revision=1
    board_rev=d04170; model="Raspberry Pi 5 Model B Rev 1.0" ;;
  *) echo "cpuinfo.sh: cortex-a72 or cortex-a76" >&2; exit 2 ;;
esac
n=$(nproc)
i=0
while [ "$i" -lt "$n" ]; do
  printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %d\n\n' \
    "$i" "$features" "$variant" "$part" "$revision"
  i=$((i + 1))
done
printf 'Revision\t: %s\nSerial\t\t: 10000000edge0001\nModel\t\t: %s\n' "$board_rev" "$model"
