#!/usr/bin/env bash
# Shared set-up for quickstart.sh and test.sh: installs what is missing, nothing more.
# Safe to run again: every step checks first.
set -euo pipefail

need_pkgs=(
  debootstrap mmdebstrap        # source kinds
  dpkg-dev                      # mmdebstrap's eatmydata hook asks dpkg-architecture for the lib dir
  debian-archive-keyring        # the security proof tests run the host's apt against the mirror
  docker.io                     # docker source, tests build their own images
  busybox-static                # FROM scratch test images, minimal test trees
  openssh-server openssh-client rsync   # push transports and their tests
  uwsgi-core uwsgi-plugin-python3       # boot test trees, check fixtures
  pigz time                     # bench.sh comparisons, /usr/bin/time -v
  openssl                       # self-signed certificate for the API client's TLS tests
  iproute2 net-tools ca-certificates xz-utils zstd file
  gcc libc6-dev                 # builds the NSS module (build.rs)
  openssl                       # boot: the container's RSA key for signed subscriptions
  gpgv debian-archive-keyring apt   # outdated: InRelease signatures; its test asks apt itself
  gnupg                         # outdated tests: sign a loopback archive with a test key
  python3-venv                  # the SBOM validators' venv (below)
  docker-registry skopeo        # registry source tests: a real registry 2.8, images pushed into it
  apache2-utils                 # htpasswd -B for the registry's basic-auth test
  umoci                         # bench.sh: the daemonless skopeo + umoci comparison
  jq make                       # make security: picks the pushed entry out of push --json
  apt-utils                     # cache tests: apt-ftparchive indexes a loopback repository
  distro-info-data debian-security-support   # support windows: release dates, package support lists
)

missing=()
for p in "${need_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 2
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Never let package scripts start services on this machine (sshd, docker): tests start their own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) and run again" >&2
    exit 2
  fi
fi

# SBOM tests validate build-distro's SPDX and CycloneDX files with the formats' reference
# validators from PyPI, kept in their own venv (the tests find it at this path, or at
# $BUILD_DISTRO_SBOM_VENV, and skip with a reason when it is missing).
sbom_venv=${BUILD_DISTRO_SBOM_VENV:-/opt/build-distro-venv}
if ! "$sbom_venv/bin/python" -c 'import spdx_tools, cyclonedx.validation.json, jsonschema' 2>/dev/null \
   || [ ! -x "$sbom_venv/bin/pyspdxtools" ]; then
  echo "setup: installing the SBOM validators into $sbom_venv"
  [ -x "$sbom_venv/bin/pip" ] || /usr/bin/python3 -m venv "$sbom_venv"
  "$sbom_venv/bin/pip" install -q --disable-pip-version-check spdx-tools 'cyclonedx-python-lib[json-validation]'
fi
