#!/usr/bin/env bash
# Offline installs for machines without package access (docs/gpus-and-scale.md "Installing on an offline GPU node").
#
#   scripts/wheelhouse.sh download [--dest DIR] [--python-version X.Y] [--platform TAG]... [--have FILE]
#       On a machine with package access: everything pn_fairseq needs beyond torch, as wheels
#       for the chosen Python and platform (default: this interpreter's), plus fairseq-fixed's
#       sdist (built on the target) and what that build needs (setuptools, wheel, cython,
#       numpy) and pip. --have FILE: names (one a line, `name` or `name==version`) the target
#       already has; they are left out, except the build requirements and pip.
#   scripts/wheelhouse.sh install [--wheelhouse DIR] [--python BASE] [--venv DIR]
#       On the target, from DIR alone (pip --no-index --find-links DIR, pip config ignored):
#       a venv (default .venv) layered on BASE (default python3), whose torch it uses, then
#       the build requirements, fairseq-fixed (--no-build-isolation --no-deps, as `make
#       install`) and this package with its test extra (editable).
#
# Environment: PY (the Python whose pip downloads; default .venv/bin/python, else python3).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FAIRSEQ_SPEC=${FAIRSEQ_SPEC:-fairseq-fixed==0.12.3.1}
BUILD_REQS=(setuptools wheel cython "numpy>=1.21.3")
die() { echo "wheelhouse: error: $*" >&2; exit 1; }
log() { echo "wheelhouse: $*" >&2; }

# pip without this machine's pip configuration (extra indexes, find-links, constraints), so
# that what the wheelhouse holds is what PyPI and the folder give, and an offline install
# reads nothing but the folder.
pip_isolated() { PIP_CONFIG_FILE=/dev/null "$@" --isolated --disable-pip-version-check; }

norm_name() { tr 'A-Z_.' 'a-z--'; }  # PEP 503 normalized names

download() {
  local dest=wheelhouse pyver='' have='' platforms=()
  while (( $# )); do
    case $1 in
      --dest) dest=${2:?--dest needs a folder}; shift 2 ;;
      --python-version) pyver=${2:?--python-version needs X.Y}; shift 2 ;;
      --platform) platforms+=("${2:?--platform needs a tag}"); shift 2 ;;
      --have) have=${2:?--have needs a file}; shift 2 ;;
      *) die "download: unknown argument '$1' (see the top of $0)" ;;
    esac
  done
  local py=${PY:-}
  [[ -n $py ]] || { [[ -x $REPO/.venv/bin/python ]] && py=$REPO/.venv/bin/python || py=python3; }
  # fairseq-fixed's sdist metadata imports torch: the downloading Python needs it (make install).
  "$py" -c "import torch" 2>/dev/null \
    || die "$py cannot import torch, which preparing fairseq-fixed's sdist needs: run \`make install\` first or set PY"
  [[ -z $have || -f $have ]] || die "--have $have: no such file"
  if [[ -n $pyver ]]; then
    [[ $pyver =~ ^3\.[0-9]+$ ]] || die "--python-version $pyver: expected X.Y, e.g. 3.12"
    (( ${#platforms[@]} )) || platforms=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64
                                         manylinux2014_x86_64 manylinux1_x86_64)
  elif (( ${#platforms[@]} )); then
    die "--platform needs --python-version"
  fi
  local target_args=(--only-binary=:all:)
  [[ -n $pyver ]] && target_args+=(--python-version "$pyver" --implementation cp)
  for p in "${platforms[@]}"; do target_args+=(--platform "$p"); done

  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  local stage=$tmp/wheels; mkdir -p "$stage"
  # 1. The roots: this package's requirements (test extra included), torch left out.
  log "reading this package's requirements"
  pip_isolated "$py" -m pip install -q --dry-run --ignore-installed --no-deps --no-build-isolation \
    --report "$tmp/self.json" "$REPO[test]" >/dev/null
  "$py" - "$tmp/self.json" "${BUILD_REQS[@]}" pip > "$tmp/roots.txt" <<'EOF'
import json, sys
from packaging.requirements import Requirement
self_item = json.load(open(sys.argv[1]))["install"][0]
roots = list(sys.argv[2:])
for spec in self_item["metadata"].get("requires_dist", []):
    req = Requirement(spec)
    if req.name.lower() == "torch":
        continue  # the target brings its own (a CUDA build)
    if req.marker and not req.marker.evaluate({"extra": "test"}):
        continue
    req.marker = None
    roots.append(str(req))
print("\n".join(roots))
EOF
  # 2. Pure-Python packages that PyPI has only as sdists (antlr4-python3-runtime 4.9.3, which
  #    omegaconf pins) are built into wheels here: they install on any Python 3.
  log "finding the requirements PyPI has only as source"
  pip_isolated "$py" -m pip install -q --dry-run --ignore-installed --report "$tmp/host.json" \
    -r "$tmp/roots.txt" >/dev/null
  "$py" - "$tmp/host.json" > "$tmp/sdists.txt" <<'EOF'
import json, sys
for item in json.load(open(sys.argv[1]))["install"]:
    if not item["download_info"]["url"].endswith(".whl"):
        print(f'{item["metadata"]["name"]}=={item["metadata"]["version"]}')
EOF
  while read -r spec; do
    [[ -n $spec ]] || continue
    log "building $spec from its sdist (pure Python only)"
    pip_isolated "$py" -m pip wheel -q --no-deps -w "$stage" "$spec" >/dev/null
  done < "$tmp/sdists.txt"
  local w
  for w in "$stage"/*.whl; do
    [[ -e $w ]] || continue
    [[ $w == *-py3-none-any.whl || $w == *-py2.py3-none-any.whl ]] \
      || die "$(basename "$w") has no wheel on PyPI and builds a platform wheel here: build it on the target"
  done
  # 3. The target's resolution: wheels for its Python and platform.
  local made_for=$pyver
  [[ -n $made_for ]] || made_for=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  log "resolving for Python $made_for ${platforms[*]}"
  pip_isolated "$py" -m pip install -q --dry-run --ignore-installed "${target_args[@]}" \
    --find-links "$stage" --target "$tmp/target" --report "$tmp/target.json" -r "$tmp/roots.txt" >/dev/null \
    || die "no complete set of wheels for that Python/platform (pip's message above)"
  # 4. Everything resolved, less what the target has (--have), never the build requirements.
  "$py" - "$tmp/target.json" "${have:-/dev/null}" "${BUILD_REQS[@]}" pip > "$tmp/pins.txt" <<'EOF'
import json, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
keep_always = {norm(re.split(r"[<>=!~ ]", r)[0]) for r in sys.argv[3:]}
have = set()
for line in open(sys.argv[2]):
    line = line.split("#")[0].strip()
    if line:
        have.add(norm(re.split(r"[<>=!~ ;\[]", line)[0]))
for item in json.load(open(sys.argv[1]))["install"]:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if norm(name) in have and norm(name) not in keep_always:
        print(f"skip {name}=={version}", file=sys.stderr)
    else:
        print(f"{name}=={version}")
EOF
  mkdir -p "$stage/dl"
  log "downloading $(wc -l < "$tmp/pins.txt") wheels"
  pip_isolated "$py" -m pip download -q --no-deps "${target_args[@]}" --find-links "$stage" \
    -d "$stage/dl" -r "$tmp/pins.txt" >/dev/null
  # 5. fairseq-fixed as its sdist (its C++/Cython extensions are built on the target).
  log "downloading $FAIRSEQ_SPEC (sdist)"
  pip_isolated "$py" -m pip download -q --no-deps --no-build-isolation --no-binary fairseq-fixed \
    -d "$stage/dl" "$FAIRSEQ_SPEC" >/dev/null
  cp "$tmp/roots.txt" "$stage/dl/roots.txt"
  {
    echo "python_version=$made_for"
    echo "platforms=${platforms[*]:-this machine}"
    echo "have=${have:-none}"
    echo "fairseq=$FAIRSEQ_SPEC"
    echo "made=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } > "$stage/dl/wheelhouse.txt"
  # Replace the destination only when complete: never a half-filled wheelhouse.
  rm -rf "$dest.tmp" && mv "$stage/dl" "$dest.tmp"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  log "done: $dest ($(ls "$dest" | grep -c -v '\.txt$') files, $(du -sh "$dest" | cut -f1)); install with: bash scripts/wheelhouse.sh install --wheelhouse $dest"
}

install() {
  local wh=$REPO/wheelhouse base=python3 venv=$REPO/.venv
  while (( $# )); do
    case $1 in
      --wheelhouse) wh=${2:?--wheelhouse needs a folder}; shift 2 ;;
      --python) base=${2:?--python needs an interpreter}; shift 2 ;;
      --venv) venv=${2:?--venv needs a folder}; shift 2 ;;
      *) die "install: unknown argument '$1' (see the top of $0)" ;;
    esac
  done
  [[ -f $wh/wheelhouse.txt ]] || die "$wh is no wheelhouse (no wheelhouse.txt): make one with \`make wheelhouse\` where pip can reach PyPI"
  wh=$(cd "$wh" && pwd)
  ls "$wh"/fairseq?fixed-*.tar.gz >/dev/null 2>&1 || die "$wh has no fairseq-fixed sdist: remake it with \`make wheelhouse\`"
  if ! [[ -x $venv/bin/python ]] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    command -v "$base" >/dev/null || die "--python $base: not found"
    "$base" -c "import torch" 2>/dev/null \
      || die "$base cannot import torch: install your CUDA build of torch first (the wheelhouse holds everything but torch), or pass --python PY"
    log "creating $venv on top of $base ($("$base" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null))"
    rm -rf "$venv"
    "$base" -m venv --without-pip "$venv"
    # The base's packages (torch, and whatever else it has) stay visible behind the venv's own:
    # --system-site-packages would not do when the base is itself a venv.
    local site
    site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    "$base" - > "$site/_pn_fairseq_base.pth" <<'EOF'
import site
dirs = [d for d in site.getsitepackages() if d]
print("import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs))
EOF
  fi
  local vpy=$venv/bin/python made_for
  made_for=$(sed -n 's/^python_version=//p' "$wh/wheelhouse.txt")
  [[ $("$vpy" -c "import sys; print('%d.%d' % sys.version_info[:2])") == "$made_for" ]] \
    || die "$wh holds wheels for Python $made_for, $vpy is $("$vpy" -V 2>&1): remake it with --python-version"
  if ! "$vpy" -m pip --version >/dev/null 2>&1; then
    local pipwhl; pipwhl=$(ls "$wh"/pip-*.whl | head -n 1)
    log "bootstrapping pip from $(basename "$pipwhl")"
    PIP_CONFIG_FILE=/dev/null "$vpy" "$pipwhl/pip" install -q --isolated --no-index --find-links "$wh" pip
  fi
  local pip=(env PIP_CONFIG_FILE=/dev/null "$vpy" -m pip install -q --isolated --no-index --find-links "$wh")
  log "build requirements"
  "${pip[@]}" "${BUILD_REQS[@]}" || die "installing the build requirements from $wh failed (pip's message above)"
  if ! "$vpy" -c "import fairseq" 2>/dev/null; then
    log "building $FAIRSEQ_SPEC from its sdist (C++ and Cython extensions: a few minutes)"
    # CUDA_HOME would add fairseq's CUDA extensions, which the translation code never loads.
    env -u CUDA_HOME "${pip[@]}" --no-build-isolation --no-deps "$FAIRSEQ_SPEC" \
      || die "building fairseq-fixed failed (pip's message above): it needs a C++ compiler"
  fi
  log "pn_fairseq (editable) and its requirements"
  # --use-pep517: without it an older pip installs a project with no pyproject.toml through
  # `setup.py develop`, which starts a pip of its own that knows nothing of --no-index.
  "${pip[@]}" --no-build-isolation --use-pep517 -e "$REPO[test]" \
    || die "installing pn_fairseq from $wh failed: a requirement above is missing from the wheelhouse (remake it without --have, or with a shorter --have list)"
  "$vpy" -c "import fairseq, pn_fairseq, torch" || die "the installed packages do not import (message above)"
  touch "$venv/.pn_fairseq_installed"  # make install's stamp: the other make targets use this venv as is
  log "done: $vpy ($("$vpy" -c 'import torch, fairseq; print("torch", torch.__version__, "fairseq", fairseq.__version__)'))"
}

cmd=${1:-}
shift || true
case $cmd in
  download) download "$@" ;;
  install) install "$@" ;;
  *) die "usage: $0 download|install [options] (see the top of $0)" ;;
esac
