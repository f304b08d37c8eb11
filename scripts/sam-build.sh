#!/usr/bin/env bash
# `sam build` of every function in template.yaml, offline, then checks that
# each .aws-sam/build/<LogicalId>/bootstrap is an executable ELF of the right
# architecture that runs on the provided.al2023 runtime (glibc <= 2.34).
# The template must declare exactly the functions of functions/ (one crate
# per functions/<name>/): a missing or unexpected one fails before the build,
# a missing bootstrap after it.
#
# Usage: scripts/sam-build.sh [x86_64|arm64]   (default x86_64)
#
# Architecture: the template deploys arm64 by default. Here only the x86_64
# Rust target is installed, so the build overrides the template parameter
# (`--parameter-overrides Architecture=x86_64`) and builds the binaries for
# it (MAILMIND_ARCH, read by the Makefile's build script). Deploy what this
# built with the same override.
#
# Compiler: CARGO_LAMBDA_COMPILER=cargo, the host's cargo and linker (no zig).
# The binaries then need the host's glibc symbol versions; the check below
# fails if one needs more than Amazon Linux 2023's glibc 2.34.
#
# Speed: every function is BuildMethod makefile; the Makefile's
# build-<LogicalId> runs scripts/build-functions.sh, one release build of
# all functions (the first call compiles, the others find it up to date),
# and copies the function's bootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=${1:-x86_64}
case "$arch" in
    x86_64) elf_machine=62 ;;  # EM_X86_64
    arm64) elf_machine=183 ;;  # EM_AARCH64
    *)
        echo "usage: $0 [x86_64|arm64]" >&2
        exit 2
        ;;
esac

venv=$(./scripts/venv.sh)
# sam finds cargo-lambda (the PyPI package's binary) on PATH.
export PATH="$venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
export CARGO_LAMBDA_COMPILER=${CARGO_LAMBDA_COMPILER:-cargo}
# sam build reads no AWS API; a region only keeps the SDK from looking for one.
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}

# cargo-lambda adds its own release defaults for every [profile.release] key
# the root Cargo.toml leaves unset, among them panic = "abort".
if ! sed -n '/^\[profile\.release\]/,/^\[/p' Cargo.toml | grep -Eq '^[[:space:]]*panic[[:space:]]*='; then
    echo "sam-build.sh: warning: [profile.release] in Cargo.toml does not set panic; cargo-lambda builds with panic = \"abort\"" >&2
fi

# The template's functions (logical ids), whose artefacts are checked below.
# That they are exactly the declared ones is the consistency tests' job.
mapfile -t functions < <("$venv/bin/python" - <<'EOF'
from samtranslator.yaml_helper import yaml_parse

with open("template.yaml") as f:
    template = yaml_parse(f.read())
for logical_id, resource in template["Resources"].items():
    if resource.get("Type") == "AWS::Serverless::Function":
        print(logical_id)
EOF
)
export MAILMIND_ARCH=$arch

started=$(date +%s.%N)
sam build \
    --template-file template.yaml \
    --parameter-overrides "Architecture=$arch" \
    --build-in-source \
    --no-cached
finished=$(date +%s.%N)

echo
echo "Artifacts (.aws-sam/build/<LogicalId>/bootstrap, $arch, ${#functions[@]} functions):"
"$venv/bin/python" - "$elf_machine" "${functions[@]}" <<'EOF'
import os
import re
import stat
import sys

AL2023_GLIBC = (2, 34)
machine = int(sys.argv[1])
failed = False
for name in sys.argv[2:]:
    path = os.path.join(".aws-sam", "build", name, "bootstrap")
    problems = []
    if not os.path.isfile(path):
        print(f"  {name:<28} MISSING {path}")
        failed = True
        continue
    with open(path, "rb") as f:
        data = f.read()
    if not os.stat(path).st_mode & stat.S_IXUSR:
        problems.append("not executable")
    if data[:4] != b"\x7fELF":
        problems.append("not an ELF file")
    elif data[4] != 2 or data[5] != 1:
        problems.append("not a 64-bit little-endian ELF")
    elif int.from_bytes(data[18:20], "little") != machine:
        problems.append(f"ELF machine {int.from_bytes(data[18:20], 'little')}, expected {machine}")
    elif int.from_bytes(data[16:18], "little") not in (2, 3):
        problems.append("not an executable ELF")
    glibc = max(
        ((int(major), int(minor)) for major, minor in re.findall(rb"GLIBC_(\d+)\.(\d+)", data)),
        default=None,
    )
    if glibc and glibc > AL2023_GLIBC:
        problems.append(f"needs GLIBC_{glibc[0]}.{glibc[1]} > 2.34 (provided.al2023)")
    needs = f"glibc >= {glibc[0]}.{glibc[1]}" if glibc else "no glibc"
    size = len(data)
    status = "FAIL: " + "; ".join(problems) if problems else "ok"
    print(f"  {name:<28} {size:>10,} bytes  {size / 2**20:5.1f} MiB  {needs:<16} {status}")
    failed |= bool(problems)
sys.exit(1 if failed else 0)
EOF

awk -v s="$started" -v f="$finished" 'BEGIN { printf "\nsam build wall time: %.1f s\n", f - s }'
echo "The built template still reads the Architecture parameter: deploy these artifacts with"
echo "  sam deploy --parameter-overrides Architecture=$arch JwtIssuer=... JwtAudience=..."
