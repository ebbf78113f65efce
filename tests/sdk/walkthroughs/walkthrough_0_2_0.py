# ruff: noqa: UP030, UP032 - the seed's str.format calls are kept as they are
# mypy: ignore-errors
# (seed code for an SDK version of its own venv; the dev venv's azure-mgmt-batchai may be another)
"""Batch AI's first Python SDK quickstart ("Run a CNTK training job using the Azure Python SDK", seeds 003/004,
api-version 2017-09-01-preview: clusters and jobs directly in a resource group, no workspaces or experiments),
with azure-mgmt-batchai 0.2.0 and azure-mgmt-resource 10.x (msrest based), against a batchai server.

The seed's code, changed only where batchai differs, each change marked ``# batchai:``:
- the clients come from ``batchai.sdk`` (the CLI's configuration: $BATCHAI_ENDPOINT/$BATCHAI_TOKEN or the
  home's files) instead of ServicePrincipalCredentials and an Azure subscription;
- the file share is batchai's storage, through the ``batchai storage`` CLI, instead of azure.storage.file;
- the sample package is a stand-in (``sample_package.py``) that trains in a moment.
Lines marked ``# check:`` are added so that a test can tell the walkthrough worked (they wait with deadlines):
the job is waited for, its MODEL files are listed too and files are downloaded through their links, and the
resource group is deleted at the end.
Run: ``python walkthrough_0_2_0.py`` in a virtual environment with azure-mgmt-batchai==0.2.0,
azure-mgmt-resource==10.3.0 and batchai installed (``walkthrough_1_0_1.py`` is the same for 1.0.1).
"""

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import azure.mgmt.batchai.models as models
from azure.mgmt.resource import ResourceManagementClient
from sample_package import FILES, check_model, unpack

# batchai: the seed binds the name batchai to azure.mgmt.batchai; batchai's own package is imported by another name
from batchai import sdk

# credentials used for authentication
# batchai: none here; batchai.sdk reads the endpoint and token the batchai CLI uses.

# credentials used for storage
storage_account_name = "walkthrough020"
storage_account_key = "not-needed-by-batchai"  # batchai: accepted, never checked

# specify the credentials used to remote login your GPU node
admin_user_name = "demoUser"
admin_user_password = "demo-Passw0rd"

# check: how long the job may take
JOB_DEADLINE_SECONDS = 120


def batchai_cli(*args: str) -> None:
    """batchai: ``az storage`` becomes ``batchai storage`` (batchai's own storage, same server)."""
    subprocess.run([sys.executable, "-m", "batchai", *args, "-o", "none"], check=True)


def download(job, directory, name):
    """check: a file of a job's output directory, through the download link of list_output_files."""
    found = batchai_client.jobs.list_output_files(
        resource_group_name, job, models.JobsListOutputFilesOptions(directory)
    )
    url = next(f.download_url for f in found if f.name == name)
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


## Authenticate with Batch AI

# batchai: instead of ServicePrincipalCredentials(...) and batchai.BatchAIManagementClient(credentials=creds, ...)
batchai_client = sdk.client()
print(f"client: {type(batchai_client).__name__} {batchai_client.api_version}")  # check: which api-version

## Register the resource providers (the walkthrough's prerequisite, with the az CLI)

# batchai: `az provider register -n NS` becomes `batchai provider register -n NS` (always registered here)
batchai_cli("provider", "register", "-n", "Microsoft.BatchAI")
batchai_cli("provider", "register", "-n", "Microsoft.Batch")

## Create a resource group

resource_group_name = "myresourcegroup"

# batchai: instead of ResourceManagementClient(credentials=creds, subscription_id=subscription_id)
resource_management_client = sdk.make_client(ResourceManagementClient)
# check: Azure Resource Manager's SDK sees the provider registered
print(f"check: provider: {resource_management_client.providers.get('Microsoft.BatchAI').registration_state}")

resource = resource_management_client.resource_groups.create_or_update(resource_group_name, {"location": "eastus"})

## Prepare Azure file share

# batchai: instead of FileService(storage_account_name, storage_account_key) and service.create_share(...)
azure_file_share_name = "batchaiquickstart"
batchai_cli("storage", "account", "create", "-n", storage_account_name, "-g", resource_group_name)
batchai_cli("storage", "share", "create", "-n", azure_file_share_name, "--account-name", storage_account_name)

mnist_dataset_directory = "mnistcntksample"
# batchai: instead of service.create_directory(azure_file_share_name, mnist_dataset_directory, fail_on_exist=False)
batchai_cli(
    "storage", "directory", "create", "-n", mnist_dataset_directory,
    "-s", azure_file_share_name, "--account-name", storage_account_name,
)  # fmt: skip

sample_dir = Path(tempfile.mkdtemp())  # batchai: the unzipped sample package (a stand-in)
unpack(sample_dir)
for f in ["Train-28x28_cntk_text.txt", "Test-28x28_cntk_text.txt", "ConvNet_MNIST.py"]:
    assert f in FILES  # check: the stand-in has the seed's files
    # batchai: instead of service.create_file_from_path(azure_file_share_name, mnist_dataset_directory, f, f)
    batchai_cli(
        "storage", "file", "upload", "-s", azure_file_share_name, "--source", str(sample_dir / f),
        "--path", mnist_dataset_directory, "--account-name", storage_account_name,
    )  # fmt: skip
shutil.rmtree(sample_dir)  # batchai: uploaded, no longer needed

## Create GPU cluster

cluster_name = "mycluster"

relative_mount_point = "azurefileshare"

parameters = models.ClusterCreateParameters(
    # Location where the cluster will physically be deployed
    location="eastus",
    # VM size. Use NC or NV series for GPU
    vm_size="STANDARD_NC6",
    # Configure the ssh users
    user_account_settings=models.UserAccountSettings(
        admin_user_name=admin_user_name, admin_user_password=admin_user_password
    ),
    # Number of VMs in the cluster
    scale_settings=models.ScaleSettings(manual=models.ManualScaleSettings(target_node_count=1)),
    # Configure each node in the cluster
    node_setup=models.NodeSetup(
        # Mount shared volumes to the host
        mount_volumes=models.MountVolumes(
            azure_file_shares=[
                models.AzureFileShareReference(
                    account_name=storage_account_name,
                    credentials=models.AzureStorageCredentialsInfo(account_key=storage_account_key),
                    azure_file_url="https://{0}.file.core.windows.net/{1}".format(
                        storage_account_name, azure_file_share_name
                    ),
                    relative_mount_path=relative_mount_point,
                )
            ],
        ),
    ),
)
batchai_client.clusters.create(resource_group_name, cluster_name, parameters).result()

## Get cluster status

cluster = batchai_client.clusters.get(resource_group_name, cluster_name)
print(
    "Cluster state: {0} Target: {1}; Allocated: {2}; Idle: {3}; "
    "Unusable: {4}; Running: {5}; Preparing: {6}; leaving: {7}".format(
        cluster.allocation_state,
        cluster.scale_settings.manual.target_node_count,
        cluster.current_node_count,
        cluster.node_state_counts.idle_node_count,
        cluster.node_state_counts.unusable_node_count,
        cluster.node_state_counts.running_node_count,
        cluster.node_state_counts.preparing_node_count,
        cluster.node_state_counts.leaving_node_count,
    )
)

## Create training job

job_name = "myjob"

parameters = models.job_create_parameters.JobCreateParameters(
    # Location where the job will run
    # Ideally this should be co-located with the cluster.
    location="eastus",
    # The cluster this job will run on
    cluster=models.ResourceId(cluster.id),
    # The number of VMs in the cluster to use
    node_count=1,
    # Override the path where the std out and std err files will be written to.
    # In this case we will write these out to an Azure Files share
    std_out_err_path_prefix="$AZ_BATCHAI_MOUNT_ROOT/{0}".format(relative_mount_point),
    input_directories=[
        models.InputDirectory(
            id="SAMPLE", path="$AZ_BATCHAI_MOUNT_ROOT/{0}/{1}".format(relative_mount_point, mnist_dataset_directory)
        )
    ],
    # Specify directories where files will get written to
    output_directories=[
        models.OutputDirectory(
            id="MODEL", path_prefix="$AZ_BATCHAI_MOUNT_ROOT/{0}".format(relative_mount_point), path_suffix="Models"
        )
    ],
    # Container configuration
    container_settings=models.ContainerSettings(
        models.ImageSourceRegistry(image="microsoft/cntk:2.1-gpu-python3.5-cuda8.0-cudnn6.0")
    ),
    # Toolkit specific settings
    cntk_settings=models.CNTKsettings(
        python_script_file_path="$AZ_BATCHAI_INPUT_SAMPLE/ConvNet_MNIST.py",
        command_line_args="$AZ_BATCHAI_INPUT_SAMPLE $AZ_BATCHAI_OUTPUT_MODEL",
    ),
)

# Create the job
batchai_client.jobs.create(resource_group_name, job_name, parameters).result()

## Monitor job

job = batchai_client.jobs.get(resource_group_name, job_name)

print("Job state: {0} ".format(job.execution_state.name))

# check: wait (with a deadline) for the job to end, printing each state it passes through
deadline = time.monotonic() + JOB_DEADLINE_SECONDS
while job.execution_state.name not in ("succeeded", "failed"):
    if time.monotonic() > deadline:
        sys.exit(f"check: the job did not end within {JOB_DEADLINE_SECONDS}s")
    time.sleep(0.2)
    state = job.execution_state
    job = batchai_client.jobs.get(resource_group_name, job_name)
    if job.execution_state != state:
        print("Job state: {0} ".format(job.execution_state.name))
if job.execution_state.name != "succeeded":
    errors = [(e.code, e.message) for e in (job.execution_info.errors or [])] if job.execution_info else []
    sys.exit(f"check: the job failed: {errors}")
print(f"check: exit code {job.execution_info.exit_code}")

## List stdout and stderr output

files = batchai_client.jobs.list_output_files(
    resource_group_name, job_name, models.JobsListOutputFilesOptions("stdouterr")
)

for file in list(files):
    print("file: {0}, download url: {1}".format(file.name, file.download_url))

# check: the generated model files too, as the stdout and stderr ones are listed
files = batchai_client.jobs.list_output_files(resource_group_name, job_name, models.JobsListOutputFilesOptions("MODEL"))
for file in list(files):
    print("file: {0}, download url: {1}".format(file.name, file.download_url))
    print(f"check: {file.name}: {file.content_length} bytes, modified {file.last_modified.isoformat()}")

# check: the files download through their links (signed, no token): the model is what the stand-in trained,
# stderr holds its progress, and the execution log says where the job ran
print(f"check: model: {check_model(download(job_name, 'MODEL', 'ConvNet_MNIST_0.dnn'))}")
print(f"check: stderr: {download(job_name, 'stdouterr', 'stderr.txt').decode().splitlines()[1]}")
for line in download(job_name, "stdouterr", "execution.log").decode().splitlines():
    print(f"check: execution.log: {line}")

## Delete resources

batchai_client.jobs.delete(resource_group_name, job_name)

batchai_client.clusters.delete(resource_group_name, cluster_name)

# check: the job and the cluster are gone, then the group (the seed keeps it)
print(f"check: jobs left: {[j.name for j in batchai_client.jobs.list_by_resource_group(resource_group_name)]}")
print(f"check: clusters left: {[c.name for c in batchai_client.clusters.list_by_resource_group(resource_group_name)]}")
resource_management_client.resource_groups.delete(resource_group_name).result()
exists = resource_management_client.resource_groups.check_existence(resource_group_name)
print(f"check: group exists after delete: {exists}")
print("walkthrough done")
