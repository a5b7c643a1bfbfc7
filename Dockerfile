# One image for every Rekey process: `rekey serve <service>` and the mail sink.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REKEY_DATA_DIR=/data

WORKDIR /app

# Dependencies first, from pyproject alone, so a source change does not reinstall them:
# empty packages stand in for the sources, then the project itself is removed again.
COPY pyproject.toml README.md ./
RUN mkdir -p shared services rekey \
    && touch shared/__init__.py services/__init__.py rekey/__init__.py \
    && pip install . \
    && pip uninstall -y rekey \
    && rm -rf shared services rekey build *.egg-info

COPY shared ./shared
COPY services ./services
COPY rekey ./rekey
RUN pip install --no-deps . && rm -rf build *.egg-info

# Unprivileged at run time; /data exists and is the user's, so a named volume mounted
# there (mail, SQLite stores) starts out writable.
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin rekey \
    && mkdir -p /data \
    && chown rekey:rekey /data
USER rekey
VOLUME ["/data"]

ENTRYPOINT ["rekey"]
CMD ["--help"]
