# Helpers the staging scripts source (bench/gpu/stage.sh, bench/gpu/distill_1b.sh): what a binary built here
# needs on the GPU machine, and mamba_ssm's Triton SSD as plain python files.

# copy_shared_libs BINARY DEST_LIB: the shared libraries ldd resolves for BINARY, except glibc, libstdc++/libgcc,
# the CUDA driver and cuBLAS, and the torch wheel's own (torch/ and nvidia/ folders: the GPU machine has them).
copy_shared_libs() {
  mkdir -p "$2"
  ldd "$1" | awk '/=> \//{print $3}' |
    grep -vE 'libc\.so|libm\.so|libstdc\+\+|libgcc_s|libpthread|libdl\.so|librt\.so|libutil\.so|ld-linux|libcuda|libcublas|/torch/|/nvidia/' |
    xargs -r -I{} cp -L {} "$2"/
}

# stub_mamba_ssm SDIST_TAR_GZ DEST_PY: mamba_ssm's Triton op modules (and the utils they import) under
# DEST_PY/mamba_ssm, with a package stub that leaves out the compiled extension they do not need.
stub_mamba_ssm() {
  local t m
  t=$(mktemp -d)
  tar xzf "$1" -C "$t"
  m=$(echo "$t"/mamba_ssm-*/mamba_ssm)
  mkdir -p "$2"/mamba_ssm/ops/triton "$2"/mamba_ssm/utils
  cp "$m"/ops/__init__.py "$2"/mamba_ssm/ops/
  cp "$m"/ops/triton/*.py "$2"/mamba_ssm/ops/triton/
  cp "$m"/utils/{__init__,torch,determinism}.py "$2"/mamba_ssm/utils/
  cp "$m"/../LICENSE "$2"/mamba_ssm/ 2>/dev/null || true
  echo '__version__ = "stub"  # only the Triton op modules are carried' > "$2"/mamba_ssm/__init__.py
  rm -rf "$t"
}
