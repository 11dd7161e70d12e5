#!/usr/bin/env bash
# Installs the real clients and the reference target the tests and benchmarks drive:
# libiscsi-bin (iscsi-ls, iscsi-inq, iscsi-test-cu), qemu-utils + qemu-block-extra (qemu-img and
# qemu-io with iscsi:// URLs), tgt (the reference target of the benchmarks) and openssl (the
# cluster's certificates are made with it). Needs root for apt-get; without root it only says
# what is missing.
set -euo pipefail
pkgs=(libiscsi-bin qemu-utils qemu-block-extra tgt openssl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "test dependencies present: ${pkgs[*]}"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "not root: cannot install ${missing[*]}; tests that need them say so and are skipped" >&2
  exit 0
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
