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
# (`--parameter-overrides Architecture=x86_64`); sam resolves
# `Architectures: [!Ref Architecture]` from the override at build time and
# runs `cargo lambda build --release` without --arm64. Deploy what this built
# with the same override (sam deploy --parameter-overrides Architecture=x86_64
# ...), or build arm64 where the aarch64 target and zig are available.
#
# Compiler: CARGO_LAMBDA_COMPILER=cargo, the host's cargo and linker (no zig).
# The binaries then need the host's glibc symbol versions; the check below
# fails if one needs more than Amazon Linux 2023's glibc 2.34.
#
# Speed: the rust-cargolambda workflow builds in source (no copy of the tree
# to a scratch dir) into the workspace's target/ (cargo-lambda's target
# directory is target/<triple>/release, separate from `cargo build
# --release`'s target/release). The first function's build compiles every
# dependency once; the other functions reuse them, and a re-run with nothing
# changed only re-checks fingerprints. sam's own --cached is off: it hashes
# only each function's CodeUri (functions/<name>/) and would miss changes in
# shared/. Builds run one at a time: parallel cargo runs would just queue on
# target/'s lock.
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

# The functions are the crates under functions/ (one per functions/<name>/,
# building the binary <name>); the template must declare exactly these, each
# as one AWS::Serverless::Function with CodeUri functions/<name> and the same
# Binary in its BuildProperties. Its logical id names the build's output
# folder.
shopt -s nullglob
crates=()
for manifest in functions/*/Cargo.toml; do
    crates+=("$(basename "$(dirname "$manifest")")")
done
if ((${#crates[@]} == 0)); then
    echo "sam-build.sh: no function crate under functions/" >&2
    exit 1
fi

# Every function of the template, as <name>=<LogicalId> (name from CodeUri).
# Top-level Fn::ForEach entries (language extensions) are not functions here:
# every function resource is written out.
declared_lines=$("$venv/bin/python" - <<'EOF'
import sys
from samtranslator.yaml_helper import yaml_parse

with open("template.yaml") as f:
    template = yaml_parse(f.read())
problems = []
for logical_id, resource in template["Resources"].items():
    if logical_id.startswith("Fn::ForEach") or not isinstance(resource, dict):
        continue
    if resource.get("Type") != "AWS::Serverless::Function":
        continue
    code_uri = str(resource.get("Properties", {}).get("CodeUri", "")).rstrip("/")
    binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
    prefix, _, name = code_uri.partition("functions/")
    if prefix or not name or "/" in name:
        problems.append(f"{logical_id}: CodeUri {code_uri!r} is not functions/<name>")
    elif binary != name:
        problems.append(f"{logical_id}: BuildProperties Binary {binary!r} differs from its CodeUri {code_uri}")
    else:
        print(f"{name}={logical_id}")
for problem in problems:
    print(f"sam-build.sh: template.yaml: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
)
mapfile -t declared <<<"$declared_lines"
if ! diff <(printf '%s\n' "${crates[@]}" | sort) <(printf '%s\n' "${declared[@]%%=*}" | sort) >&2; then
    echo "sam-build.sh: template.yaml's functions (>) differ from the crates under functions/ (<)" >&2
    exit 1
fi
functions=("${declared[@]#*=}")

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
