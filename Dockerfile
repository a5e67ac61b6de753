# sbert-repro in a container: `docker run ... IMAGE COMMAND [options]`, COMMAND any `sbert-repro` command
# (evaluate, finetune, index, search, ...); with no arguments the image prints `sbert-repro --help`.
#
# CPU (default): the CPU build of torch from PyTorch's own index, so the image does not carry CUDA.
#   docker build -t sbert-repro .
# GPU: a CUDA base image and torch from the index of one CUDA line, chosen by the GPU (run with --gpus all):
#   cu126, Volta (V100, sm_70) to Hopper (H100):
#   docker build -t sbert-repro:cuda --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
#   cu128, Turing (T4, sm_75) to Blackwell; its wheels have no Volta kernels:
#   docker build -t sbert-repro:cuda --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# Where pip's own configuration already serves the torch wanted (as on this project's machines):
#   --build-arg TORCH_INDEX_URL=
#
# Run (the named volume keeps the Hugging Face cache from one run to the next):
#   docker run --rm --gpus all -v sbert-hf-cache:/cache -v "$PWD/runs:/out" sbert-repro:cuda \
#     finetune --output-dir /out/paper-run
# Outside torchrun a run uses one GPU: the one --device names (e.g. cuda:1), else GPU 0. For several, torchrun, with
# --ipc=host (or a --shm-size of a few GB): NCCL and DataLoader workers share memory through /dev/shm, which a
# container gets only 64 MB of by default.
#   docker run --rm --gpus all --ipc=host -v sbert-hf-cache:/cache -v "$PWD/runs:/out" --entrypoint torchrun \
#     sbert-repro:cuda --nproc_per_node=4 /app/scripts/finetune.py --output-dir /out/ddp
#
# FAISS search runs on the CPU in both images, through faiss-cpu (the project's dependency). A faiss-gpu wheel is on
# PyPI, but the search code never puts an index on a GPU, so it would add its CUDA libraries and gain nothing; it also
# ships the same `faiss` module as faiss-cpu, and the two installed together overwrite each other.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# A virtual environment works the same on python:3.11-slim and on distribution Pythons (CUDA images)
# whose system pip refuses to install packages.
RUN (command -v python3 >/dev/null || (apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-pip && rm -rf /var/lib/apt/lists/*)) \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# torch alone from the index the build arguments name, without its dependencies: those come with the project's
# below, pinned by constraints.txt and from PyPI, which has every version (PyTorch's index mirrors only some).
# A layer of its own, so that a change to the project does not download torch again.
RUN pip install --no-deps ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY sbert_repro ./sbert_repro
COPY scripts ./scripts
# pip keeps the torch installed above (constraints.txt does not name it); pip check fails the build on a missing one.
RUN pip install -c constraints.txt . && pip check

# Not root, and uid 1000 (a host's usual first user, who then owns what a run writes to mounted folders): the user
# the base image already has with that uid (nvidia/cuda's Ubuntu images have `ubuntu`), else a new one, `sbert`.
# /cache is a volume so that downloaded models and datasets outlive the container; it is made and owned here,
# before VOLUME, because a build step's changes under a declared volume are discarded.
RUN (getent passwd 1000 >/dev/null || useradd --create-home --uid 1000 sbert) \
    && mkdir -p /out /cache/huggingface \
    && chown -R 1000:"$(id -g 1000)" /out /cache
USER 1000
ENV HF_HOME=/cache/huggingface
VOLUME ["/cache"]
WORKDIR /out

ENTRYPOINT ["sbert-repro"]
CMD ["--help"]
