#!/usr/bin/env bash
# Copies the build dependencies a bare GPU machine lacks (it has CUDA, CMake, ninja and a
# compiler, but no Debian -dev packages) from this machine into .carry/ (git-ignored),
# mirroring the /usr layout so the packages' CMake config files, which locate headers and
# libraries relative to themselves, work unchanged:
#   .carry/usr/include/{eigen3,nlohmann,LBFGS*.h,LBFGSpp,boost (only what lethe includes),
#                       zlib.h,openssl}
#   .carry/usr/lib/x86_64-linux-gnu/{libboost_program_options.a,libz.a,libcrypto.a,cmake/Boost*}
#   .carry/usr/share/{eigen3,cmake/nlohmann_json}
#   .carry/usr/src/googletest            (sources: run.sh builds them there)
# With --prebuilt BUILD_DIR it also copies that CUDA build's binaries (stripped) into
# .carry/prebuilt/, which bench/gpu/run.sh uses when they load on the GPU machine (no build
# there). Configure that build for a CPU other than this one:
#   cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DLETHE_CUDA=ON \
#         -DLETHE_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=x86-64-v3
#   ninja -C build-cuda lethe lethe_kernels_tests lethe_bench_gpu
# Usage: bench/gpu/prepare_carry.sh [--prebuilt BUILD_DIR]   (from anywhere; writes <repo>/.carry)
set -euo pipefail

prebuilt_from=
if [ "${1:-}" = "--prebuilt" ]; then
  [ -n "${2:-}" ] || { echo "prepare_carry: --prebuilt needs a build folder" >&2; exit 1; }
  prebuilt_from=$(cd "$2" && pwd)
  grep -q "LETHE_HAVE_CUDA" "$prebuilt_from/build.ninja" 2>/dev/null ||
    { echo "prepare_carry: $2 is not a CUDA build of lethe" >&2; exit 1; }
fi

repo=$(cd "$(dirname "$0")/../.." && pwd)
carry=$repo/.carry/usr
arch=x86_64-linux-gnu
limit_mib=60

rm -rf "$repo/.carry"
mkdir -p "$carry/include" "$carry/lib/$arch/cmake" "$carry/share/cmake" "$carry/src"

need() { [ -e "$1" ] || { echo "prepare_carry: $1 is missing on this machine" >&2; exit 1; }; }
for p in /usr/include/eigen3 /usr/share/eigen3/cmake /usr/include/nlohmann \
         /usr/share/cmake/nlohmann_json /usr/include/LBFGS.h /usr/include/LBFGSpp \
         /usr/include/boost/program_options.hpp /usr/lib/$arch/libboost_program_options.a \
         /usr/lib/$arch/cmake/Boost-1.74.0 /usr/include/zlib.h /usr/lib/$arch/libz.a \
         /usr/include/openssl /usr/include/$arch/openssl /usr/lib/$arch/libcrypto.a \
         /usr/src/googletest; do
  need "$p"
done

# Header-only libraries and their CMake configs.
cp -a /usr/include/eigen3 /usr/include/nlohmann /usr/include/LBFGSpp "$carry/include/"
cp -a /usr/include/LBFGS*.h /usr/include/zlib.h /usr/include/zconf.h "$carry/include/"
mkdir -p "$carry/share/eigen3"
cp -a /usr/share/eigen3/cmake "$carry/share/eigen3/"
cp -a /usr/share/cmake/nlohmann_json "$carry/share/cmake/"

# OpenSSL (libcrypto, for hashing): Debian splits its headers between /usr/include and
# the multiarch folder; one folder here. Static, so nothing is needed at run time.
cp -a /usr/include/openssl "$carry/include/"
cp -a /usr/include/$arch/openssl/. "$carry/include/openssl/"
cp -a /usr/lib/$arch/libcrypto.a "$carry/lib/$arch/"

# Boost: all of it is 160 MiB, so only the headers that lethe's sources reach, found by
# the preprocessor, plus boost/config and boost/predef whole (they select headers by
# compiler and version, and the GPU machine's compiler may differ from this one's).
stub=$(mktemp --suffix=.cc)
trap 'rm -f "$stub"' EXIT
{ grep -rhoE --include='*.cc' --include='*.h' --include='*.cu' '#include <boost/[^>]+>' "$repo"/{common,engine,io,kernels,tools,tests,bench} \
  2>/dev/null || true; } | sort -u >"$stub"
echo '#include <boost/program_options.hpp>' >>"$stub"
g++ -std=c++20 -M "$stub" | tr ' ' '\n' | grep '^/usr/include/boost/' |
  sort -u | while read -r header; do
    mkdir -p "$carry/include/$(dirname "${header#/usr/include/}")"
    cp -a "$header" "$carry/include/${header#/usr/include/}"
  done
cp -a /usr/include/boost/config /usr/include/boost/predef "$carry/include/boost/"
cp -a /usr/include/boost/version.hpp "$carry/include/boost/"
# The static library only (no LD_LIBRARY_PATH needed there), with Boost's CMake configs.
cp -a /usr/lib/$arch/libboost_program_options.a /usr/lib/$arch/libz.a "$carry/lib/$arch/"
for d in Boost-1.74.0 boost_headers-1.74.0 boost_program_options-1.74.0; do
  cp -a /usr/lib/$arch/cmake/$d "$carry/lib/$arch/cmake/"
done
cp -a /usr/lib/$arch/cmake/BoostDetectToolset-1.74.0.cmake "$carry/lib/$arch/cmake/"
# Without the .so the shared variant must not be offered.
rm -f "$carry/lib/$arch/cmake/boost_program_options-1.74.0/libboost_program_options-variant-shared.cmake"

# GoogleTest sources (Debian's googletest package: googletest + googlemock).
cp -a /usr/src/googletest "$carry/src/"

if [ -n "$prebuilt_from" ]; then
  mkdir -p "$repo/.carry/prebuilt"
  for b in tools/lethe tests/kernels/lethe_kernels_tests bench/gpu/lethe_bench_gpu; do
    need "$prebuilt_from/$b"
    strip -o "$repo/.carry/prebuilt/$(basename "$b")" "$prebuilt_from/$b"
  done
  # The shared libraries the binaries take from Debian packages (Boost, zlib, libcrypto,
  # libgomp), which the GPU machine may lack; run.sh puts this folder on LD_LIBRARY_PATH.
  # The C/C++ runtime and CUDA's libraries are the machine's own.
  mkdir -p "$repo/.carry/prebuilt/lib"
  ldd "$repo/.carry/prebuilt/lethe" | awk '/=> \//{print $3}' |
    grep -E 'libboost|libz\.|libcrypto|libgomp' | while read -r lib; do
      cp -L "$lib" "$repo/.carry/prebuilt/lib/"
    done
  echo "built $(date -u +%F) from $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff \
--quiet || echo '+changes') by $(g++ --version | head -1), nvcc $(nvcc --version | \
grep -o 'release [0-9.]*')" >"$repo/.carry/prebuilt/BUILD_INFO"
fi

size_mib=$(du -sm "$repo/.carry" | cut -f1)
echo "prepare_carry: .carry is ${size_mib} MiB"
du -sm "$carry"/include/* "$carry"/lib "$carry"/src 2>/dev/null | sort -rn | head -8
if [ "$size_mib" -ge "$limit_mib" ]; then
  echo "prepare_carry: .carry is over ${limit_mib} MiB" >&2
  exit 1
fi
