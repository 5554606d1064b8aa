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

# recipes/llamba-1b-scale.yaml shrunk to the `tiny` teacher of make_random_llama.py (CPU tests of the GPU
# benches): a student that fits it, short sequences, f32, a few steps per stage.
TINY_DISTILL_SETS=(--set seq_len=64 --set student.n_qk_heads=4 --set student.n_v_heads=4 --set student.head_dim=16
  --set student.d_state=16 --set student.chunk_size=16 --set compute.stage1_head_chunk=2
  --set compute.dtype=f32 --set stages.matrix_orientation.batch_tokens=256
  --set stages.matrix_orientation.tokens=512 --set stages.hidden_state.batch_tokens=512
  --set stages.hidden_state.tokens=1024 --set stages.end_to_end.batch_tokens=512
  --set stages.end_to_end.tokens=1536 --set data.eval_tokens=256)

# subq_libpath DEV PYTHON: LD_LIBRARY_PATH for a carried libtorch `subq` on the run machine: the carried
# (Debian) libraries, then the machine's own torch and nvidia wheels. Only subq gets it: python there links
# its own zlib/OpenSSL.
subq_libpath() {
  local site nvlibs
  site="$("$2" -c 'import site; print(site.getsitepackages()[0])')"
  nvlibs="$(find "$site/nvidia" -maxdepth 3 -type d -name lib 2>/dev/null | tr '\n' ':')"
  echo "$1/lib:$site/torch/lib:$nvlibs${LD_LIBRARY_PATH:-}"
}
