#!/usr/bin/env bash
# The Batch AI quickstart (../shared/seeds/000_*), end to end on batchai's embedded default: a server in
# the background, the az commands with `az batchai`/`az storage`/`az group` replaced by `batchai ...`,
# the seed's job.json with only the storage account name filled in, and everything cleaned up at the end.
#
#   bash scripts/quickstart.sh [--epochs N] [--mnist DIR]
#
# --epochs: training epochs of the sample (default 2; the quickstart's full schedule is 40)
# --mnist:  directory with the MNIST IDX files (default ../shared/data/mnist; if it does not exist they
#           are downloaded from the usual MNIST mirrors)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
EPOCHS=2
MNIST="$ROOT/../shared/data/mnist"
while [ $# -gt 0 ]; do
    case "$1" in
        --epochs) EPOCHS="$2"; shift 2 ;;
        --mnist) MNIST="$2"; shift 2 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Setup: a virtual environment (.venv) with batchai and PyTorch for the sample (a CPU build; a minute or two the first time)"
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e .
export PATH="$ROOT/.venv/bin:$PATH"

export BATCHAI_HOME="$(mktemp -d -t batchai-quickstart-home.XXXXXX)"
WORK="$(mktemp -d -t batchai-quickstart-work.XXXXXX)"
PORT="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cleanup() {
    batchai server stop >/dev/null 2>&1 || true
    rm -rf "$BATCHAI_HOME" "$WORK"
}
trap cleanup EXIT

step "Start the batchai server (home $BATCHAI_HOME)"
batchai server start --detach --port "$PORT"

step "Training data and script"
cd "$WORK"
if [ -d "$MNIST" ]; then SOURCE=(--source "$MNIST"); else SOURCE=(); fi
python -m batchai.samples.mnist_data "${SOURCE[@]}" --dest .
sed "s/^MAX_EPOCHS = .*/MAX_EPOCHS = $EPOCHS/" "$ROOT/src/batchai/samples/ConvNet_MNIST.py" > ConvNet_MNIST.py
ACCOUNT="quickstart$(date +%s | tail -c 7)"
sed "s/<YOUR_STORAGE_ACCOUNT>/$ACCOUNT/g" "$ROOT/src/batchai/samples/quickstart-job.json" > job.json

step "Resource group, workspace, cluster"
batchai group create -n batchai.quickstart -l eastus -o table
batchai workspace create -g batchai.quickstart -n quickstart -o table
# (--generate-ssh-keys makes ~/.ssh/id_rsa if missing, as az did: here in a temporary home, not yours)
HOME="$WORK" batchai cluster create -n nc6 -g batchai.quickstart -w quickstart -s Standard_NC6 -i UbuntuDSVM -t 1 --generate-ssh-keys -o table

step "Storage account, shares and container; deploy script and data"
batchai storage account create -n "$ACCOUNT" --sku Standard_LRS -g batchai.quickstart -o table
batchai storage share create -n scripts --account-name "$ACCOUNT"
batchai storage share create -n logs --account-name "$ACCOUNT"
batchai storage directory create -n cntk -s scripts --account-name "$ACCOUNT"
batchai storage file upload -s scripts --source ConvNet_MNIST.py --path cntk --account-name "$ACCOUNT"
batchai storage container create -n data --account-name "$ACCOUNT"
batchai storage blob upload-batch -s . --pattern '*28x28_cntk*' --destination data --destination-path mnist_cntk --account-name "$ACCOUNT" -o table

step "Experiment and job"
batchai experiment create -g batchai.quickstart -w quickstart -n quickstart -o table
batchai job create -n cntk_python_1 -c nc6 -g batchai.quickstart -w quickstart -e quickstart -f job.json --storage-account-name "$ACCOUNT" -o table

step "Stream stderr.txt until the job ends"
batchai job file stream -j cntk_python_1 -g batchai.quickstart -w quickstart -e quickstart -f stderr.txt | tee stderr.txt

step "Model files"
batchai job file list -j cntk_python_1 -w quickstart -e quickstart -g batchai.quickstart -d MODEL -o table
step "jobOutputDirectoryPathSegment"
batchai job show -n cntk_python_1 -g batchai.quickstart -w quickstart -e quickstart --query jobOutputDirectoryPathSegment
STATE="$(batchai job show -n cntk_python_1 -g batchai.quickstart -w quickstart -e quickstart --query executionState -o tsv)"

step "Clean up"
batchai group delete -n batchai.quickstart -y

echo
if [ "$STATE" != "succeeded" ]; then
    echo "The job ended as $STATE." >&2
    exit 1
fi
echo "The job succeeded. Final error rate: $(grep -o 'errs = [0-9.]*%' stderr.txt | tail -1 | cut -d' ' -f3)"
