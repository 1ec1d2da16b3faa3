# A service image for a wrapper project: build from the directory holding aiges.toml and wrapper.py.
#   docker build -t my-service . && docker run -p 1888:1888 my-service
FROM python:3.11-slim
WORKDIR /srv
COPY . /srv/aiges-src
RUN pip install --no-cache-dir /srv/aiges-src && rm -rf /srv/aiges-src
COPY examples/demo /srv/wrapper
ENV AIGES_PLUGIN_MODE=python PYTHONPATH=/srv/wrapper
EXPOSE 1888
# `aiges -m 0` writes a default aiges.toml when none exists (HTTP on 0.0.0.0:1888)
CMD ["aiges", "-m", "0", "-c", "/srv/aiges.toml", "-s", "svcName"]
