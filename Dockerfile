# protobench on a GPU node: docker build -t protobench . && docker run --gpus all -v $PWD/results:/app/results protobench run cifar100
# The official PyTorch CUDA runtime image brings torch and torchvision; pip keeps them (pyproject's ranges are open).
# torch 2.11.0 + CUDA 13.0 is the stack .ci/gpu-acceptance passed on (an H200, 2026-12-04); CUDA 13 needs an
# NVIDIA driver >= 580. On an older driver use pytorch/pytorch:2.11.0-cuda12.8-cudnn9-runtime (not run here).
FROM pytorch/pytorch:2.11.0-cuda13.0-cudnn9-runtime

WORKDIR /app
ENV PYTHONUNBUFFERED=1 \
    PROTOBENCH_SUITES=/app/suites \
    PROTOBENCH_DATA=/data \
    PROTOBENCH_CACHE=/cache
COPY pyproject.toml README.md ./
COPY protobench ./protobench
COPY suites ./suites
RUN pip install --no-cache-dir -e . && protobench --version
VOLUME ["/app/results", "/data", "/cache"]
ENTRYPOINT ["protobench"]
CMD ["suites"]
