# sbert-repro in a container: `docker run ... sbert-repro [finetune.py options]`.
#
# CPU (default): the CPU build of torch from PyTorch's own index, so the image does not carry CUDA.
#   docker build -t sbert-repro .
# GPU: a CUDA base image and a CUDA build of torch, run with --gpus all:
#   docker build -t sbert-repro:cuda --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# Where PyPI or a local wheel folder already serves the torch you want (as on this project's machines):
#   --build-arg TORCH_SPEC=torch==2.13.0 --build-arg TORCH_INDEX_URL=
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_SPEC=torch
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

# torch first and alone, from the index the build arguments name, so the project's own install keeps it.
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY sbert_repro ./sbert_repro
COPY scripts ./scripts
RUN pip install .

# Not root: the run writes only to the folders mounted for it (/out by convention).
RUN useradd --create-home --uid 1000 sbert && mkdir -p /out && chown sbert /out
USER sbert
ENV HF_HOME=/home/sbert/.cache/huggingface
WORKDIR /out

ENTRYPOINT ["python", "/app/scripts/finetune.py"]
CMD ["--help"]
