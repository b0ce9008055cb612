#!/bin/sh
# Installed by cloud-init as a per-boot script: mounts the seed volume and hands over to
# boot.sh on it. The volume is mounted root-only so its scripts and keys stay private.
set -eu
LIMA_CIDATA_MNT=/mnt/lima-cidata
mkdir -p "$LIMA_CIDATA_MNT"
chmod 700 "$LIMA_CIDATA_MNT"
if ! mountpoint -q "$LIMA_CIDATA_MNT"; then
    mount -o ro,mode=0700,dmode=0700,exec,uid=0 /dev/disk/by-label/cidata "$LIMA_CIDATA_MNT"
fi
export LIMA_CIDATA_MNT
exec "$LIMA_CIDATA_MNT/boot.sh"
