"""Packaging for aiges (setup.py, as the design card asks)."""
from setuptools import find_packages, setup

setup(
    name="aiges",
    version="0.1.0",
    description="A Python model-serving engine compatible with iFlytek AIGES wrappers and clients",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # wrapper_template/ (what `aiges create` copies) and examples/mnist/ (what `aiges -mnist` writes)
    # live at the top level for people to read; installed, they are aiges.wrapper_template / aiges.mnist_demo
    packages=find_packages(include=["aiges", "aiges.*"]) + ["aiges.wrapper_template", "aiges.mnist_demo",
                                                            "aiges.c_template"],
    package_dir={"aiges.wrapper_template": "wrapper_template", "aiges.mnist_demo": "examples/mnist",
                 "aiges.c_template": "c_template"},
    package_data={"aiges": ["py.typed"], "aiges.tools": ["default.toml"],
                  "aiges.wrapper_template": ["*.md", "*.txt", "Dockerfile", ".dockerignore", "wrapper/*.py",
                                             "wrapper/test_data/*"],
                  "aiges.mnist_demo": ["*.md", "*.txt", "*.py", "wrapper/*.py", "wrapper/test_data/*"],
                  # `aiges create --lang c`: the engine skeleton and our copies of upstream's two headers
                  "aiges.c_template": ["*.md", "*.c", "*.py", "Makefile", "Dockerfile", ".dockerignore",
                                       "include/*.h", "test_data/*"]},
    include_package_data=True,
    install_requires=[
        "aiohttp>=3.9",
        "grpcio>=1.85.1",  # the generated code in aiges/wire/pb needs at least the grpcio-tools version below
        "grpcio-health-checking>=1.85.1",
        "protobuf>=7.35.1",  # the runtime must be at least the generated code's version (aiges/wire/pb)
        "toml>=0.10",  # TOML on Python 3.10 (3.11+ uses tomllib)
        "orjson>=3.8",  # the envelope codec is on the hot path
        "uvloop>=0.19; sys_platform != 'win32'",  # faster event loop for loader and plugin
        "prometheus-client>=0.17",  # /metrics
        "swagger-ui-bundle>=1.1",  # Swagger UI's static files, served offline
        "numpy>=1.23",
        "pillow>=9",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "grpcio-tools==1.85.1",  # pinned: tests regenerate aiges/wire/pb and compare (drift check)
            "catboost",
            "openapi-spec-validator>=0.7",  # tests validate /openapi.json
            "selenium>=4.10",  # the Swagger UI browser test (with Debian's chromium + chromium-driver)
            "schemathesis>=3.30",  # the bounded fuzz run of the HTTP surface against /openapi.json
            "kubernetes-validate>=1.28",  # deploy/k8s manifests checked offline against Kubernetes' schemas
        ],
        "dev": ["grpcio-tools==1.85.1", "ruff", "mypy"],
    },
    entry_points={"console_scripts": ["aiges=aiges.tools.cli:main"]},
)
