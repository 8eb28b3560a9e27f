# protobench on a GPU node: docker build -t protobench . && docker run --gpus all -v $PWD/results:/app/results protobench run cifar100
# The official PyTorch CUDA runtime image brings torch and torchvision; pip keeps them (pyproject's ranges are open).
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

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
