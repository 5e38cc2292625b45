#!/usr/bin/env bash
# Set up distnqs on an offline GPU machine, then run benchmarks/gpu_check.sh.
#
# This is for a machine whose python3 already has jax with its CUDA plugin, plus numpy, scipy,
# flax, optax, h5py, numba, matplotlib, nanobind and setuptools, but has no NetKet, no MPI and
# no mpi4jax, and no network. The missing packages come with the working tree in $WHL (.whl/
# by default; .git/info/exclude keeps it out of git):
#   $WHL/*.whl                     netket 3.23.0 and the deps the machine lacks (equinox, igraph,
#                                  texttable, orjson, plum-dispatch, beartype, sparse,
#                                  wadler-lindig), tomli-w, mpich 5.0.2, mpi4py 4.1.2
#   $WHL/src/mpi4jax-*.tar.gz      mpi4jax 0.9.1.post2 (source only); built here with mpich's mpicc
# Fill $WHL on a machine with network access, from the repository root:
#   P="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux1_x86_64"
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $P -d .whl \
#     netket==3.23.0 equinox==0.13.8 igraph==1.0.0 texttable==1.7.2 orjson==3.13.0 \
#     plum-dispatch==2.10.1 beartype==0.23.1 sparse==0.19.3 wadler-lindig==0.1.8 tomli-w==1.2.0 \
#     mpich==5.0.2 mpi4py==4.1.2
#   and put the mpi4jax-0.9.1.post2.tar.gz sdist from PyPI into .whl/src/.
# Keep jax, jaxlib, numpy, scipy, ml_dtypes, flax, optax, h5py, numba and every CUDA package out of
# $WHL: those must be the machine's own, matched to its CUDA plugin.
#
# What it does (planned to take under 90 s with 16 cores; about 2 minutes on 2 busy cores):
#   1. pip-installs $WHL/*.whl into $SITE (--target, no index), and copies mpich's lib/ out of its
#      wheel (pip --target drops a wheel's data lib/, where libmpi.so.12 is)
#   2. builds mpi4jax against mpich's mpicc, with its CUDA extension (CUDA headers and libcudart
#      taken from the NVIDIA pip packages next to jax, else from nvcc's toolkit, else
#      /usr/local/cuda*); if that build fails it builds mpi4jax without CUDA and says so: then
#      the single-rank GPU parts still run, the 2-rank GPU parts will fail
#   3. makes $VENV/bin (default .venv-gpu, inside the repository, as gpu_check.sh wants it) with
#      python, distnqs, mpirun and mpiexec wrappers, the repository on PYTHONPATH
#   4. checks imports and a 2-rank mpi4py allreduce, then runs benchmarks/gpu_check.sh "$@"
#
# Usage, from the repository root:
#   bash benchmarks/gpu_device_setup.sh             # set up, then the GPU check (~8 minutes)
#   bash benchmarks/gpu_device_setup.sh --smoke     # arguments go to gpu_check.sh
#   SETUP_ONLY=1 bash benchmarks/gpu_device_setup.sh
# Environment: PYTHON (python3), WHL (.whl), SITE (/tmp/site), VENV (.venv-gpu); MPI4JAX_CUDA=0 builds
# mpi4jax without CUDA straight away.
# Output: the setup log goes to $OUT/gpu_setup.log when OUT is set (else $SITE/gpu_setup.log);
# gpu_check.sh copies its JSON results and log to $OUT itself.
set -u -o pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=$(command -v "${PYTHON:-python3}") || { echo "setup: no ${PYTHON:-python3}" >&2; exit 1; }
WHL=$(cd "${WHL:-.whl}" && pwd) || { echo "setup: no wheel folder ${WHL:-.whl}" >&2; exit 1; }
SITE=${SITE:-/tmp/site}
VENV=${VENV:-.venv-gpu}
case "$VENV" in /*) echo "setup: VENV must be relative to the repository (gpu_check.sh uses \$PWD/\$VENV)" >&2; exit 1 ;; esac
mkdir -p "$SITE"
SETUP_LOG=${OUT:+$OUT/gpu_setup.log}
SETUP_LOG=${SETUP_LOG:-$SITE/gpu_setup.log}
exec 3>&1 4>&2 > >(tee "$SETUP_LOG") 2>&1  # the set-up's output, also into $SETUP_LOG
T0=$SECONDS
say() { echo "setup [$((SECONDS - T0)) s]: $*"; }
die() { say "FAILED: $*"; exit 1; }

export PYTHONPATH="$SITE:$REPO" PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH="$SITE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$SITE/bin:$PATH"
export MPI4PY_LIBMPI="$SITE/lib/libmpi.so.12"
say "python $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
"$PY" - <<'EOF'
import importlib.metadata as md
names = ["jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "numpy", "scipy", "ml_dtypes", "flax",
         "optax", "h5py", "numba", "matplotlib", "einops", "rich", "tqdm", "jaxtyping", "typing_extensions",
         "nanobind", "setuptools"]
def version(n):
    try:
        return md.version(n)
    except md.PackageNotFoundError:
        return "-"
print("setup: machine's packages: " + " ".join(f"{n}={version(n)}" for n in names))
EOF

# 1. Wheels -> $SITE (skipped when every wheel's dist-info is already there).
missing=0
for w in "$WHL"/*.whl; do
  f=${w##*/}
  [ -d "$SITE/$(echo "$f" | cut -d- -f1,2).dist-info" ] || missing=1
done
if [ $missing = 1 ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHL"/*.whl \
    || die "pip install of $WHL/*.whl"
fi
mpich_whl=$(ls "$WHL"/mpich-*.whl 2>/dev/null | head -n1)
[ -n "$mpich_whl" ] || die "no mpich wheel in $WHL"
if [ ! -e "$SITE/lib/libmpi.so.12" ]; then
  "$PY" - "$mpich_whl" "$SITE" <<'EOF' || die "unpacking mpich's lib/"
import os, sys, zipfile
wheel, site = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        parts = info.filename.split("/")
        if len(parts) > 3 and parts[0].endswith(".data") and parts[1:3] == ["data", "lib"] and not info.is_dir():
            target = os.path.join(site, *parts[2:])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                dst.write(src.read())
            os.chmod(target, (info.external_attr >> 16) & 0o777 or 0o644)
EOF
fi
MPICC=$SITE/bin/mpicc
[ -x "$MPICC" ] || die "no $MPICC"
command -v cc > /dev/null || { command -v gcc > /dev/null && export MPICH_CC=gcc; }  # mpich's mpicc calls cc
say "wheels installed in $SITE; mpicc=$MPICC, host compiler: cc=$(command -v cc || echo MISSING) g++=$(command -v g++ || echo MISSING)"
"$PY" -c "import os, sysconfig; h = os.path.join(sysconfig.get_paths()['include'], 'Python.h'); print('setup: ' + h, 'found' if os.path.exists(h) else 'MISSING: mpi4jax cannot be built')"

# 2. mpi4jax from source, against mpich's mpicc.
have_m4j() { "$PY" -c "import mpi4jax, sys; sys.exit(0 if mpi4jax.__version__ else 1)" 2>/dev/null; }
has_cuda() { "$PY" -c "import mpi4jax, sys; sys.exit(0 if mpi4jax.has_cuda_support() else 1)" 2>/dev/null; }
no_nvcc_path() {  # $PATH without any directory that holds an nvcc
  local out="" d
  local IFS=:
  for d in $PATH; do [ -n "$d" ] && [ ! -x "$d/nvcc" ] && out="$out${out:+:}$d"; done
  echo "$out"
}
find_cuda() {  # prints "INCLUDE_DIR LIBCUDART": the first CUDA with cuda_runtime.h, crt/ and libcudart.so*
  local roots=() pip=() r inc lib d f nvcc major
  while read -r d; do [ -n "$d" ] && pip+=("$d"/cu[0-9]* "$d"/cuda_runtime); done \
    < <("$PY" -c "import nvidia; print('\n'.join(nvidia.__path__))" 2>/dev/null)
  roots=("${pip[@]}")
  nvcc=$(command -v nvcc) && roots+=("$(dirname "$(dirname "$(readlink -f "$nvcc")")")")
  roots+=(/usr/local/cuda /usr/local/cuda-*)
  for r in "${roots[@]}"; do
    [ -d "$r" ] || continue
    inc=""; lib=""
    for d in "$r/include" "$r/targets/x86_64-linux/include"; do
      [ -f "$d/cuda_runtime.h" ] && [ -f "$d/crt/host_config.h" ] && { inc=$d; break; }
    done
    [ -n "$inc" ] || continue
    # libcudart: preferably the NVIDIA pip package's of the same major version (the one jax's
    # CUDA plugin loads: one copy in the process), else the one beside these headers
    major=$(awk '/define CUDART_VERSION/ {print int($3 / 1000); exit}' "$inc/cuda_runtime_api.h")
    for d in "${pip[@]}"; do
      [ -f "$d/lib/libcudart.so.$major" ] && { lib=$d/lib/libcudart.so.$major; break; }
    done
    [ -n "$lib" ] || for d in "$r/lib64" "$r/lib" "$r/targets/x86_64-linux/lib"; do
      for f in "$d/libcudart.so" $(ls -1 "$d"/libcudart.so.[0-9]* 2>/dev/null | sort -V -r); do
        [ -f "$f" ] && { lib=$f; break 2; }
      done
    done
    [ -n "$lib" ] && { echo "$inc $lib"; return 0; }
  done
  return 1
}
build_m4j() {  # build_m4j LOGFILE ENV...: pip-build mpi4jax from a fresh copy of the sdist into $SITE
  local log=$1; shift
  local src; src=$(mktemp -d)
  tar xzf "$WHL"/src/mpi4jax-*.tar.gz -C "$src" || return 1
  local dir; dir=$(echo "$src"/mpi4jax-*)
  printf '\n[build_ext]\nparallel = 4\n' >> "$dir/setup.cfg"  # its two extensions at once
  # CFLAGS=-g0: no debug information, less to compile
  env CFLAGS=-g0 "$@" MPI4JAX_BUILD_MPICC="$MPICC" "$PY" -m pip install --no-build-isolation --no-deps --no-index \
    --no-cache-dir --no-compile --upgrade --target "$SITE" "$dir" > "$log" 2>&1
}
if have_m4j && has_cuda; then
  say "mpi4jax already built with CUDA in $SITE"
else
  ls "$WHL"/src/mpi4jax-*.tar.gz > /dev/null || die "no mpi4jax sdist in $WHL/src"
  cuda_ok=0
  if [ "${MPI4JAX_CUDA:-1}" != 0 ] && found=$(find_cuda); then
    inc=${found% *}; cudart=${found#* }
    shim=$(mktemp -d)  # CUDA_PATH for mpi4jax's setup.py: include/ and lib64/libcudart.so
    mkdir "$shim/lib64"
    ln -s "$inc" "$shim/include"
    ln -s "$cudart" "$shim/lib64/libcudart.so"
    say "CUDA for mpi4jax: headers $inc, libcudart $cudart (nvcc on PATH: $(command -v nvcc || echo none))"
    if ! build_m4j "$SITE/mpi4jax-build-cuda.log" CUDA_PATH="$shim" CUDA_ROOT= \
         LDFLAGS="-Wl,-rpath,$(dirname "$cudart")"; then
      say "mpi4jax CUDA build FAILED; its errors (whole log: $SITE/mpi4jax-build-cuda.log):"
      grep -m 25 -E "error|Error|ERROR|fatal" "$SITE/mpi4jax-build-cuda.log"
    elif ! has_cuda; then
      say "mpi4jax built, but its CUDA extension does not load:"
      "$PY" -c "import jax, mpi4jax._src.xla_bridge.mpi_xla_bridge_cuda" 2>&1 | tail -n 3
    else
      cuda_ok=1
      say "mpi4jax built WITH its CUDA extension"
    fi
  else
    say "no CUDA headers + libcudart found (looked in nvidia pip packages, nvcc's toolkit, /usr/local/cuda*), or MPI4JAX_CUDA=0"
  fi
  if [ $cuda_ok = 0 ]; then
    echo "##########################################################################"
    echo "### WARNING: mpi4jax WITHOUT CUDA (CPU-only build): the 2-rank GPU parts ###"
    echo "### of gpu_check.sh will fail; the single-rank GPU parts still run.      ###"
    echo "##########################################################################"
    rm -rf "$SITE"/mpi4jax "$SITE"/mpi4jax-*.dist-info
    empty=$(mktemp -d)  # an existing CUDA_PATH without include/: setup.py then skips CUDA
    build_m4j "$SITE/mpi4jax-build-cpu.log" PATH="$(no_nvcc_path)" CUDA_PATH="$empty" CUDA_ROOT= \
      || { grep -m 25 -E "error|Error|ERROR|fatal" "$SITE/mpi4jax-build-cpu.log"; die "mpi4jax CPU-only build"; }
    say "mpi4jax built without CUDA"
  fi
fi

# 3. The stand-in venv that gpu_check.sh runs from ($VENV/bin: python, distnqs, mpirun, mpiexec, ...).
BIN=$REPO/$VENV/bin
mkdir -p "$BIN"
ENVLINE="export PYTHONPATH='$PYTHONPATH' LD_LIBRARY_PATH='$LD_LIBRARY_PATH' MPI4PY_LIBMPI='$MPI4PY_LIBMPI'"
printf '#!/bin/sh\n%s\nexec "%s" "$@"\n' "$ENVLINE" "$PY" > "$BIN/python"
printf '#!/bin/sh\n%s\nexec "%s" -m distnqs "$@"\n' "$ENVLINE" "$PY" > "$BIN/distnqs"
chmod +x "$BIN/python" "$BIN/distnqs"
ln -sf python "$BIN/python3"
# mpiexec (hydra) runs hydra_pmi_proxy from the folder it was called from: link those too
for t in mpirun mpiexec mpiexec.hydra hydra_pmi_proxy hydra_nameserver hydra_persist mpicc; do
  ln -sf "$SITE/bin/$t" "$BIN/$t"
done
say "stand-in venv $BIN: $(ls "$BIN" | tr '\n' ' ')"

# 4. Checks, then the GPU check.
"$BIN/python" -c "
import distnqs, jax, netket, mpi4py, mpi4jax, flax, optax, h5py
from mpi4py import MPI
print('setup: imports ok: distnqs', distnqs.__version__, 'netket', netket.__version__, 'jax', jax.__version__,
      'mpi4py', mpi4py.__version__, 'mpi4jax', mpi4jax.__version__, 'cuda_ext', mpi4jax.has_cuda_support(),
      'flax', flax.__version__, 'optax', optax.__version__, '|', MPI.Get_library_version().splitlines()[0])
" || die "imports"
mpi_check() { timeout 60 mpirun -np 2 "$BIN/python" -c "
from mpi4py import MPI
c = MPI.COMM_WORLD
s = c.allreduce(c.rank + 1)
assert s == 3, s
c.rank or print('setup: mpirun -np 2 ok: allreduce over', c.size, 'ranks')"; }
if ! mpi_check; then
  say "mpirun -np 2 failed; again with HYDRA_LAUNCHER=fork and a localhost host file"
  echo "localhost:64" > "$SITE/hosts"
  export HYDRA_LAUNCHER=fork HYDRA_HOST_FILE="$SITE/hosts"
  mpi_check || say "mpirun -np 2 still fails: the 2-rank parts of gpu_check.sh will fail"
fi
say "set-up done"
[ -n "${SETUP_ONLY:-}" ] && exit 0
exec 1>&3 2>&4 3>&- 4>&-  # gpu_check.sh keeps its own log
VENV=$VENV bash benchmarks/gpu_check.sh "$@"
